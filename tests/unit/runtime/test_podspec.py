"""What a kubelet derives from a Pod, rule by rule (`osm.runtime.podspec`): environment,
argv, user, working directory and mounts of each container, the files of each volume,
and the objects it must wait for; then the pods OSM's injector makes.

Each row is a pod (YAML, read by the model) with what the plan says of it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from osm.base import wellknown
from osm.base.identity import DataPlane
from osm.injector import patch, secret
from osm.model import core, kinds
from osm.runtime import podspec
from osm.runtime.podspec import (
    CannotRun,
    ContainerPlan,
    MissingObject,
    MountPlan,
    VolumeContent,
    VolumeFile,
)
from tests.unit.injector import injector_support as injector

POD_IP = "10.233.0.7"
HOST_IP = "10.233.0.1"
NODE = "local"
BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/"}
HEAD = (
    "apiVersion: v1\nkind: Pod\n"
    "metadata:\n  name: web-1\n  namespace: shop\n  uid: 0b7e-uid\n"
    "  labels: {app: web}\n  annotations: {team: books}\n"
)


def _secret(name: str, data: dict[str, bytes]) -> core.Secret:
    encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "shop"},
        "data": encoded,
    }
    resource = kinds.decode(manifest)
    assert isinstance(resource, core.Secret)
    return resource


def _config_map(name: str, data: dict[str, str], binary: dict[str, bytes]) -> core.ConfigMap:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop"},
        "data": data,
        "binaryData": {key: base64.b64encode(value).decode() for key, value in binary.items()},
    }
    resource = kinds.decode(manifest)
    assert isinstance(resource, core.ConfigMap)
    return resource


SECRETS = {"web-secrets": _secret("web-secrets", {"user": b"admin", "token": b"s3cr3t$(A)"})}
CONFIG_MAPS = {
    "web-config": _config_map(
        "web-config", {"mode": "fast", "web.yaml": "port: 8080\n"}, {"logo.png": b"\x89PNG"}
    )
}


def pod(spec: str) -> core.Pod:
    resource = kinds.decode(injector.yaml.safe_load(HEAD + f"spec: {spec}"))
    assert isinstance(resource, core.Pod)
    return resource


def one(container: str, extra: str = "") -> core.Pod:
    """A pod of one container (`extra`: more pod fields, e.g. ``volumes: [...]``)."""
    return pod(f"{{containers: [{container}]{', ' + extra if extra else ''}}}")


def app(fields: str = "", extra: str = "") -> core.Pod:
    """A pod of one container ``web`` running ``run``, with `fields` added."""
    return one(f"{{name: web, command: [run]{', ' + fields if fields else ''}}}", extra)


def plans(the_pod: core.Pod, base_env: dict[str, str] = BASE_ENV) -> tuple[ContainerPlan, ...]:
    return podspec.container_plans(
        the_pod,
        pod_ip=POD_IP,
        host_ip=HOST_IP,
        node_name=NODE,
        secrets=SECRETS,
        config_maps=CONFIG_MAPS,
        base_env=base_env,
    )


def env(the_pod: core.Pod) -> list[tuple[str, str]]:
    """The first container's environment after the base, in order."""
    return [item for item in plans(the_pod)[0].env.items() if item[0] not in BASE_ENV]


def row(
    the_pod: Callable[[], core.Pod], get: Callable[[Any], object], expected: object, id: str
) -> Any:
    return pytest.param(the_pod, get, expected, id=id)


ENV_ROWS = [
    row(
        lambda: app("env: [{name: A, value: x}, {name: B, value: y}]"),
        lambda p: list(plans(p)[0].env.items()),
        [("PATH", "/usr/bin:/bin"), ("HOME", "/"), ("A", "x"), ("B", "y")],
        "the base environment comes first, then env in order",
    ),
    row(
        lambda: app(
            "envFrom: [{configMapRef: {name: web-config}}], "
            "env: [{name: mode, value: mine}, {name: HOME, value: /home}]"
        ),
        lambda p: list(plans(p)[0].env.items()),
        [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home"),
            ("logo.png", "\udc89PNG"),
            ("mode", "mine"),
            ("web.yaml", "port: 8080\n"),
        ],
        "env overrides envFrom, which overrides the base",
    ),
    row(
        lambda: app(
            "envFrom: [{secretRef: {name: web-secrets}, prefix: SECRET_}, "
            "{configMapRef: {name: web-config}}]"
        ),
        env,
        [
            ("SECRET_token", "s3cr3t$(A)"),
            ("SECRET_user", "admin"),
            ("logo.png", "\udc89PNG"),
            ("mode", "fast"),
            ("web.yaml", "port: 8080\n"),
        ],
        "envFrom sources in order, keys sorted, with their prefix, values as they are",
    ),
    row(
        lambda: app("env: [{name: A, value: x}, {name: B, value: $(A)-$(C)}, {name: C, value: y}]"),
        env,
        [("A", "x"), ("B", "x-$(C)"), ("C", "y")],
        "a value refers to the variables before it only",
    ),
    row(
        lambda: app(
            "envFrom: [{configMapRef: {name: web-config}}], "
            "env: [{name: URL, value: '$(HOME)$(mode)'}]"
        ),
        lambda p: plans(p)[0].env["URL"],
        "/fast",
        "a value refers to the base and envFrom variables",
    ),
    row(
        lambda: app("env: [{name: A, value: x}, {name: B, value: $$(A) $(A) $ $(}]"),
        lambda p: plans(p)[0].env["B"],
        "$(A) x $ $(",
        "$$ escapes, and a lone $ or an unclosed $( stays",
    ),
    row(
        lambda: app(
            "env: [{name: A, value: x}, "
            "{name: T, valueFrom: {secretKeyRef: {name: web-secrets, key: token}}}]"
        ),
        lambda p: plans(p)[0].env["T"],
        "s3cr3t$(A)",
        "a valueFrom value is not expanded",
    ),
    row(
        lambda: app(
            "env: [{name: T, valueFrom: {secretKeyRef: {name: web-secrets, key: user}}}, "
            "{name: M, valueFrom: {configMapKeyRef: {name: web-config, key: mode}}}]"
        ),
        env,
        [("T", "admin"), ("M", "fast")],
        "secretKeyRef and configMapKeyRef take one key",
    ),
    row(
        lambda: app(
            "env: [{name: A, valueFrom: {secretKeyRef: {name: nope, key: k, optional: true}}}, "
            "{name: B, valueFrom: {secretKeyRef: {name: web-secrets, key: k, optional: true}}}, "
            "{name: C, valueFrom: {configMapKeyRef: {name: web-config, key: k, optional: true}}}]"
            ", envFrom: [{secretRef: {name: nope, optional: true}}]"
        ),
        env,
        [],
        "an optional missing object or key sets no variable",
    ),
]

FIELDS = {
    "metadata.name": "web-1",
    "metadata.namespace": "shop",
    "metadata.uid": "0b7e-uid",
    "metadata.labels['app']": "web",
    "metadata.labels['missing']": "",
    "metadata.annotations['team']": "books",
    "spec.nodeName": NODE,
    "spec.serviceAccountName": "default",
    "status.hostIP": HOST_IP,
    "status.hostIPs": HOST_IP,
    "status.podIP": POD_IP,
    "status.podIPs": POD_IP,
}


@pytest.mark.parametrize(("field_path", "value"), list(FIELDS.items()))
def test_a_field_ref_reads_the_pod(field_path: str, value: str) -> None:
    the_pod = app(f'env: [{{name: F, valueFrom: {{fieldRef: {{fieldPath: "{field_path}"}}}}}}]')
    assert plans(the_pod)[0].env["F"] == value


def _refusal(build: Callable[[], Any]) -> tuple[object, ...]:
    """What was raised: the MissingObject's fields or the CannotRun's path and message."""
    with pytest.raises(podspec.PodSpecError) as caught:
        build()
    error = caught.value
    if isinstance(error, MissingObject):
        return ("missing", error.kind, error.namespace, error.name, error.key, error.path)
    assert isinstance(error, CannotRun)
    return ("cannot run", error.path, str(error))


C0 = "spec.containers[0]"
REFUSALS = [
    row(
        lambda: app("env: [{name: T, valueFrom: {secretKeyRef: {name: nope, key: k}}}]"),
        plans,
        ("missing", "Secret", "shop", "nope", None, f"{C0}.env[0].valueFrom.secretKeyRef"),
        "a missing Secret is waited for",
    ),
    row(
        lambda: app("env: [{name: T, valueFrom: {configMapKeyRef: {name: web-config, key: k}}}]"),
        plans,
        (
            "missing",
            "ConfigMap",
            "shop",
            "web-config",
            "k",
            f"{C0}.env[0].valueFrom.configMapKeyRef",
        ),
        "a missing key is waited for",
    ),
    row(
        lambda: app("envFrom: [{configMapRef: {name: nope}}]"),
        plans,
        ("missing", "ConfigMap", "shop", "nope", None, f"{C0}.envFrom[0].configMapRef"),
        "a missing envFrom source is waited for",
    ),
    row(
        lambda: one("{name: web, image: nginx}"),
        plans,
        (
            "cannot run",
            f"{C0}.command",
            f'{C0}.command: container "web" has no command; local mode runs commands, not images',
        ),
        "a container without a command cannot run",
    ),
    row(
        lambda: pod("{initContainers: [{name: init}], containers: [{name: web, command: [run]}]}"),
        plans,
        (
            "cannot run",
            "spec.initContainers[0].command",
            'spec.initContainers[0].command: container "init" has no command; local mode runs '
            "commands, not images",
        ),
        "an init container without a command cannot run",
    ),
    row(
        lambda: app("securityContext: {runAsUser: 0, runAsNonRoot: true}"),
        plans,
        (
            "cannot run",
            f"{C0}.securityContext.runAsUser",
            f"{C0}.securityContext.runAsUser: is 0 (root), but runAsNonRoot is true",
        ),
        "runAsNonRoot refuses a container's root",
    ),
    row(
        lambda: app("securityContext: {runAsNonRoot: true}", "securityContext: {runAsUser: 0}"),
        plans,
        (
            "cannot run",
            "spec.securityContext.runAsUser",
            "spec.securityContext.runAsUser: is 0 (root), but runAsNonRoot is true",
        ),
        "runAsNonRoot refuses the pod's root",
    ),
    row(
        lambda: app("env: [{name: T, valueFrom: {secretKeyRef: {name: nul, key: k}}}]"),
        lambda p: podspec.container_plans(
            p,
            pod_ip=POD_IP,
            host_ip=HOST_IP,
            node_name=NODE,
            secrets={"nul": _secret("nul", {"k": b"a\0b"})},
            config_maps={},
            base_env={},
        ),
        ("cannot run", C0, f"{C0}: the value of T holds a NUL byte, which no process can take"),
        "a NUL byte cannot be in an environment",
    ),
    row(
        lambda: app("", "volumes: [{name: v, secret: {secretName: nope}}]"),
        lambda p: podspec.volume_contents(p, SECRETS, CONFIG_MAPS),
        ("missing", "Secret", "shop", "nope", None, "spec.volumes[0].secret"),
        "a missing Secret volume is waited for",
    ),
    row(
        lambda: app(
            "",
            "volumes: [{name: v, configMap: {name: web-config, "
            "items: [{key: mode, path: m}, {key: nope, path: n}]}}]",
        ),
        lambda p: podspec.volume_contents(p, SECRETS, CONFIG_MAPS),
        (
            "missing",
            "ConfigMap",
            "shop",
            "web-config",
            "nope",
            "spec.volumes[0].configMap.items[1]",
        ),
        "a missing item key is waited for",
    ),
]


@pytest.mark.parametrize(("the_pod", "get", "expected"), ENV_ROWS)
def test_environment(
    the_pod: Callable[[], core.Pod], get: Callable[[Any], object], expected: object
) -> None:
    assert get(the_pod()) == expected


@pytest.mark.parametrize(("the_pod", "get", "expected"), REFUSALS)
def test_refusals(
    the_pod: Callable[[], core.Pod], get: Callable[[Any], object], expected: object
) -> None:
    built = the_pod()
    assert _refusal(lambda: get(built)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("--port=$(PORT)", "--port=8080", id="a defined variable is replaced"),
        pytest.param("$(MISSING) stays", "$(MISSING) stays", id="an undefined one stays"),
        pytest.param("$$(PORT) is escaped", "$(PORT) is escaped", id="$$ escapes"),
        pytest.param("$(NAME)-$(PORT)", "books-8080", id="several in one value"),
        pytest.param("$(my.var-1)", "dotted", id="any name Kubernetes allows"),
        pytest.param("cost: $5 $(", "cost: $5 $(", id="a $ before anything else stays"),
        pytest.param("$()", "$()", id="an empty reference stays"),
    ],
)
def test_kubernetes_variable_expansion(text: str, expected: str) -> None:
    variables = {"PORT": "8080", "NAME": "books", "my.var-1": "dotted"}
    assert podspec.expand(text, variables) == expected


ARGV_AND_USER_ROWS = [
    row(
        lambda: one(
            "{name: web, command: [python3, $(PROG)], args: [--port, $(PORT), $(LATER)], "
            "env: [{name: PROG, value: web.py}, {name: PORT, value: '8080'}, "
            "{name: LATER, value: $(PORT)}]}"
        ),
        lambda p: plans(p)[0].argv,
        ("python3", "web.py", "--port", "8080", "8080"),
        "command then args, expanded against the whole environment",
    ),
    row(
        lambda: app(),
        lambda p: (plans(p)[0].uid, plans(p)[0].gid),
        (podspec.APP_UID, podspec.APP_GID),
        "a container runs as the unprivileged app user unless told otherwise",
    ),
    row(
        lambda: app("", "securityContext: {runAsUser: 1000, runAsGroup: 3000}"),
        lambda p: (plans(p)[0].uid, plans(p)[0].gid),
        (1000, 3000),
        "the pod's securityContext sets its containers' user",
    ),
    row(
        lambda: app(
            "securityContext: {runAsUser: 2000}",
            "securityContext: {runAsUser: 1000, runAsGroup: 3000}",
        ),
        lambda p: (plans(p)[0].uid, plans(p)[0].gid),
        (2000, 3000),
        "the container's securityContext overrides the pod's, field by field",
    ),
    row(
        lambda: app("securityContext: {runAsUser: 0, runAsGroup: 0}"),
        lambda p: (plans(p)[0].uid, plans(p)[0].gid),
        (0, 0),
        "root only when the spec says so",
    ),
    row(
        lambda: app("securityContext: {runAsNonRoot: true}"),
        lambda p: plans(p)[0].uid,
        podspec.APP_UID,
        "runAsNonRoot accepts the app user",
    ),
    row(
        lambda: pod(
            "{initContainers: [{name: a, command: [a]}, {name: b, command: [b]}], "
            "containers: [{name: c, command: [c]}, {name: d, command: [d]}]}"
        ),
        lambda p: [(plan.name, plan.init) for plan in plans(p)],
        [("a", True), ("b", True), ("c", False), ("d", False)],
        "init containers first, in order, then the containers",
    ),
    row(
        lambda: app(),
        lambda p: plans(p)[0].working_dir,
        "/",
        "the working directory is / by default",
    ),
    row(
        lambda: app("workingDir: srv/app/"),
        lambda p: plans(p)[0].working_dir,
        "/srv/app",
        "a relative working directory is taken from /",
    ),
    row(
        lambda: app(
            "volumeMounts: [{name: s, mountPath: /s}, {name: c, mountPath: /c, readOnly: false}, "
            "{name: e, mountPath: /e}, {name: r, mountPath: /r, readOnly: true, subPath: sub}]",
            "volumes: [{name: s, secret: {secretName: web-secrets}}, "
            "{name: c, configMap: {name: web-config}}, {name: e}, {name: r}]",
        ),
        lambda p: plans(p)[0].mounts,
        (
            MountPlan("s", "/s", True, ""),
            MountPlan("c", "/c", True, ""),
            MountPlan("e", "/e", False, ""),
            MountPlan("r", "/r", True, "sub"),
        ),
        "Secret and ConfigMap volumes are mounted read-only, others as the mount says",
    ),
]


@pytest.mark.parametrize(("the_pod", "get", "expected"), ARGV_AND_USER_ROWS)
def test_argv_user_and_mounts(
    the_pod: Callable[[], core.Pod], get: Callable[[Any], object], expected: object
) -> None:
    assert get(the_pod()) == expected


def contents(the_pod: core.Pod) -> tuple[VolumeContent, ...]:
    return podspec.volume_contents(the_pod, SECRETS, CONFIG_MAPS)


VOLUME_ROWS = [
    row(
        lambda: app("", "volumes: [{name: v, secret: {secretName: web-secrets}}]"),
        contents,
        (
            VolumeContent(
                "v",
                (VolumeFile("token", b"s3cr3t$(A)", 0o644), VolumeFile("user", b"admin", 0o644)),
                "Memory",
            ),
        ),
        "a Secret volume has every key as a 0644 file, in memory",
    ),
    row(
        lambda: app(
            "",
            "volumes: [{name: v, secret: {secretName: web-secrets, defaultMode: 0400, "
            "items: [{key: user, path: creds/user, mode: 0600}, {key: token, path: t}]}}]",
        ),
        contents,
        (
            VolumeContent(
                "v",
                (VolumeFile("creds/user", b"admin", 0o600), VolumeFile("t", b"s3cr3t$(A)", 0o400)),
                "Memory",
            ),
        ),
        "items select and rename keys; an item's mode overrides the default",
    ),
    row(
        lambda: app("", "volumes: [{name: v, configMap: {name: web-config, defaultMode: 420}}]"),
        contents,
        (
            VolumeContent(
                "v",
                (
                    VolumeFile("logo.png", b"\x89PNG", 0o644),
                    VolumeFile("mode", b"fast", 0o644),
                    VolumeFile("web.yaml", b"port: 8080\n", 0o644),
                ),
                "",
            ),
        ),
        "a ConfigMap volume has its text and its binary data as files",
    ),
    row(
        lambda: app(
            "",
            "volumes: [{name: a, secret: {secretName: nope, optional: true}}, "
            "{name: b, configMap: {name: web-config, optional: true, "
            "items: [{key: nope, path: n}, {key: mode, path: m}]}}]",
        ),
        contents,
        (
            VolumeContent("a", (), "Memory"),
            VolumeContent("b", (VolumeFile("m", b"fast", 0o644),), ""),
        ),
        "an optional volume leaves out what is missing",
    ),
    row(
        lambda: app("", "volumes: [{name: a, emptyDir: {medium: Memory}}, {name: b}]"),
        contents,
        (VolumeContent("a", (), "Memory"), VolumeContent("b", (), "")),
        "an emptyDir starts empty, on its medium",
    ),
]


@pytest.mark.parametrize(("the_pod", "get", "expected"), VOLUME_ROWS)
def test_volume_contents(
    the_pod: Callable[[], core.Pod], get: Callable[[Any], object], expected: object
) -> None:
    assert get(the_pod()) == expected


def test_one_container_is_planned_as_among_all() -> None:
    the_pod = pod(
        "{initContainers: [{name: init, command: [i]}], "
        "containers: [{name: web, command: [w], env: [{name: A, value: x}]}]}"
    )
    common: dict[str, Any] = {
        "pod_ip": POD_IP,
        "host_ip": HOST_IP,
        "node_name": NODE,
        "secrets": SECRETS,
        "config_maps": CONFIG_MAPS,
        "base_env": BASE_ENV,
    }
    assert podspec.container_plan(the_pod, "web", **common) == plans(the_pod)[1]
    with pytest.raises(KeyError, match='no container "nope"'):
        podspec.container_plan(the_pod, "nope", **common)


def test_the_planned_environment_is_read_only() -> None:
    plan = plans(app("env: [{name: A, value: x}]"))[0]
    with pytest.raises(TypeError):
        plan.env["A"] = "y"  # type: ignore[index]


# -- the pods OSM's injector makes -----------------------------------------------------------
def _injected(plane: DataPlane) -> tuple[core.Pod, patch.Injection]:
    the_namespace = injector.namespace(annotations={wellknown.DATA_PLANE_ANNOTATION: plane.value})
    app_container = injector.container("bookstore", command=["python3", "-m", "bookstore"])
    app_container["livenessProbe"] = {"tcpSocket": {"port": 14001}}
    injection = injector.run(injector.pod(containers=[app_container]), the_namespace)
    manifest = injection.pod
    manifest["metadata"]["uid"] = "0b7e-uid"  # as the API server gives every pod
    resource = kinds.decode(manifest)
    assert isinstance(resource, core.Pod)
    return resource, injection


def _bootstrap_secret(injection: patch.Injection) -> core.Secret:
    assert injection.secret is not None
    resource = kinds.decode(injection.secret)
    assert isinstance(resource, core.Secret)
    return resource


def _injected_plans(plane: DataPlane) -> dict[str, ContainerPlan]:
    the_pod, injection = _injected(plane)
    bootstrap = _bootstrap_secret(injection)
    planned = podspec.container_plans(
        the_pod,
        pod_ip=POD_IP,
        host_ip=HOST_IP,
        node_name=NODE,
        secrets={bootstrap.name: bootstrap},
        config_maps={},
        base_env=BASE_ENV,
    )
    return {plan.name: plan for plan in planned}


SIDECAR_ARGV = {
    DataPlane.ENVOY: (
        "envoy",
        "--log-level", "error",
        "--config-path", "/etc/envoy/bootstrap.yaml",
        "--service-cluster", "bookstore.bookstore",
    ),
    DataPlane.PYTHON: (
        "python", "-m", "osm.proxy",
        "--bootstrap", "/etc/envoy/bootstrap.json",
        "--log-level", "error",
    ),
}  # fmt: skip
SIDECAR_NAME = {
    DataPlane.ENVOY: wellknown.ENVOY_CONTAINER_NAME,
    DataPlane.PYTHON: wellknown.PYTHON_SIDECAR_CONTAINER_NAME,
}


@pytest.mark.parametrize("plane", list(DataPlane))
def test_the_injected_sidecar_runs_as_the_proxy_with_its_pod_in_env(plane: DataPlane) -> None:
    sidecar = _injected_plans(plane)[SIDECAR_NAME[plane]]
    assert sidecar.init is False
    assert sidecar.argv == SIDECAR_ARGV[plane]
    assert (sidecar.uid, sidecar.gid) == (wellknown.PROXY_UID, podspec.APP_GID)
    assert dict(sidecar.env) == {
        **BASE_ENV,
        "POD_UID": "0b7e-uid",
        "POD_NAME": "bookstore-v1",
        "POD_NAMESPACE": "bookstore",
        "POD_IP": POD_IP,
        "SERVICE_ACCOUNT": "bookstore",
    }
    assert sidecar.mounts == (
        MountPlan(wellknown.BOOTSTRAP_VOLUME_NAME, wellknown.BOOTSTRAP_MOUNT_PATH, True, ""),
    )


@pytest.mark.parametrize("plane", list(DataPlane))
def test_the_injected_init_container_runs_first_as_root(plane: DataPlane) -> None:
    planned = _injected_plans(plane)
    assert [(name, plan.init) for name, plan in planned.items()] == [
        (wellknown.INIT_CONTAINER_NAME, True),
        ("bookstore", False),
        (wellknown.HEALTHCHECK_CONTAINER_NAME, False),  # for its tcpSocket probe
        (SIDECAR_NAME[plane], False),
    ]
    init = planned[wellknown.INIT_CONTAINER_NAME]
    assert (init.uid, init.gid) == (0, podspec.APP_GID)
    assert init.argv[:2] == ("/bin/sh", "-c")
    assert "iptables-restore" in init.argv[2]
    assert init.env["POD_IP"] == POD_IP
    assert init.container.security_context.capabilities_add == ("NET_ADMIN",)


@pytest.mark.parametrize("plane", list(DataPlane))
def test_the_injected_app_keeps_its_command_and_gets_the_rewritten_probe(plane: DataPlane) -> None:
    bookstore = _injected_plans(plane)["bookstore"]
    assert bookstore.argv == ("python3", "-m", "bookstore")
    assert (bookstore.uid, bookstore.gid) == (podspec.APP_UID, podspec.APP_GID)
    probe = bookstore.container.liveness_probe
    assert probe is not None
    assert (probe.kind, probe.port, probe.http_headers) == (
        "httpGet",
        wellknown.HEALTHCHECK_PORT,
        ((wellknown.ORIGINAL_TCP_PORT_HEADER, "14001"),),
    )


@pytest.mark.parametrize("plane", list(DataPlane))
def test_the_injected_bootstrap_volume_holds_the_secrets_files(plane: DataPlane) -> None:
    the_pod, injection = _injected(plane)
    bootstrap = _bootstrap_secret(injection)
    (volume,) = podspec.volume_contents(the_pod, {bootstrap.name: bootstrap}, {})
    assert volume.name == wellknown.BOOTSTRAP_VOLUME_NAME
    assert {f.path: (f.data, f.mode) for f in volume.files} == {
        name: (data, 0o644) for name, data in injector.secret_files(injection.secret or {}).items()
    }
    assert secret.bootstrap_path(plane).rpartition("/")[2] in {f.path for f in volume.files}


@pytest.mark.parametrize("plane", list(DataPlane))
def test_the_injected_pod_waits_for_its_bootstrap_secret(plane: DataPlane) -> None:
    the_pod, _ = _injected(plane)
    with pytest.raises(MissingObject) as caught:
        podspec.volume_contents(the_pod, {}, {})
    assert (caught.value.kind, caught.value.name, caught.value.path) == (
        "Secret",
        secret.secret_name(injector.PROXY_UUID),
        "spec.volumes[0].secret",
    )
