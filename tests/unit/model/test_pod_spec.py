"""A pod's spec as the local runtime runs it: init containers, env (valueFrom, envFrom),
volumes and mounts, security contexts, probes; and the pods OSM's injector makes.

Valid rows are (manifest, the part looked at, its value); invalid rows are (manifest,
field path, fragment of the message), each manifest holding one mistake that must give
exactly one error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from osm.base import wellknown
from osm.base.identity import DataPlane
from osm.injector import secret
from osm.model import core, kinds
from osm.model.core import (
    ConfigMapKeyRef,
    ConfigMapVolume,
    EmptyDirVolume,
    EnvFromSource,
    EnvVar,
    FieldRef,
    KeyToPath,
    PodSecurityContext,
    Probe,
    SecretKeyRef,
    SecretVolume,
    SecurityContext,
    Volume,
    VolumeMount,
)
from tests.unit.injector import injector_support as injector
from tests.unit.model import model_examples as ex

Getter = Callable[[Any], object]

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\n"


def pod(spec: str) -> str:
    return POD + f"spec: {spec}"


def with_container(container: str, extra: str = "") -> str:
    """A pod of one container; `extra` adds pod fields (``volumes: [...]``)."""
    return pod(f"{{containers: [{container}]{', ' + extra if extra else ''}}}")


def with_env(variable: str) -> str:
    return with_container(f"{{name: web, env: [{variable}]}}")


def with_value_from(source: str) -> str:
    return with_env(f"{{name: A, valueFrom: {source}}}")


def with_volume(volume: str) -> str:
    return with_container("{name: web}", f"volumes: [{volume}]")


def with_probe(field: str, probe: str) -> str:
    return with_container(f"{{name: web, {field}: {probe}}}")


def first(resource: Any) -> core.Container:
    return resource.spec.containers[0]


def row(manifest: str, get: Getter, expected: object, id: str) -> Any:
    return pytest.param(manifest, get, expected, id=id)


VALID = [
    # -- the full example, part by part ---------------------------------------------------
    row(
        ex.POD_FULL,
        lambda r: (
            r.spec.restart_policy,
            r.spec.termination_grace_period_seconds,
            r.spec.host_network,
            r.spec.node_name,
            r.spec.security_context,
        ),
        ("OnFailure", 5, False, "node-1", PodSecurityContext(1000, 3000, True)),
        "the pod's restart policy, grace period, host network, node and security context",
    ),
    row(
        ex.POD_FULL,
        lambda r: first(r).env,
        (
            EnvVar("POD_IP", "", FieldRef("status.podIP")),
            EnvVar("APP", "", FieldRef("metadata.labels['app']")),
            EnvVar("TOKEN", "", SecretKeyRef("web-secrets", "token", optional=False)),
            EnvVar("MODE", "", ConfigMapKeyRef("web-config", "mode", optional=True)),
            EnvVar("URL", "http://$(POD_IP):8080", None),
        ),
        "env takes a value or a fieldRef, secretKeyRef or configMapKeyRef, in order",
    ),
    row(
        ex.POD_FULL,
        lambda r: first(r).env_from,
        (
            EnvFromSource("ConfigMap", "web-config", optional=False, prefix=""),
            EnvFromSource("Secret", "web-secrets", optional=True, prefix="SECRET_"),
        ),
        "envFrom takes every key of a ConfigMap or Secret, with a prefix",
    ),
    row(
        ex.POD_FULL,
        lambda r: first(r).volume_mounts,
        (
            VolumeMount("config", "/etc/web", read_only=True, sub_path=""),
            VolumeMount("certs", "/etc/certs/tls.crt", read_only=False, sub_path="tls.crt"),
            VolumeMount("work", "/work", read_only=False, sub_path=""),
        ),
        "volume mounts are read-write unless readOnly, and may mount a subPath",
    ),
    row(
        ex.POD_FULL,
        lambda r: r.spec.volumes,
        (
            Volume(
                "config",
                ConfigMapVolume(
                    "web-config",
                    (KeyToPath("web.yaml", "conf/web.yaml", 0o400), KeyToPath("mode", "mode")),
                    default_mode=0o440,
                    optional=False,
                ),
            ),
            Volume("certs", SecretVolume("web-certs", (), default_mode=0o644, optional=True)),
            Volume("work", EmptyDirVolume("")),
            Volume("scratch", EmptyDirVolume("Memory")),
            Volume("defaulted", EmptyDirVolume("")),
        ),
        "volumes: YAML octal and JSON decimal modes, and no source means emptyDir",
    ),
    row(
        ex.POD_FULL,
        lambda r: r.spec.init_containers[0].security_context,
        SecurityContext(
            run_as_user=0,
            run_as_group=None,
            run_as_non_root=False,
            privileged=True,
            capabilities_add=("NET_ADMIN",),
            capabilities_drop=("ALL",),
        ),
        "an init container's security context, root by its own word",
    ),
    row(
        ex.POD_FULL,
        lambda r: (first(r).working_dir, first(r).security_context),
        ("/work", SecurityContext(None, None, None, False, (), ())),
        "a container without a security context leaves every field unset",
    ),
    row(
        ex.POD_FULL,
        lambda r: (first(r).liveness_probe, first(r).readiness_probe, first(r).startup_probe),
        (
            Probe(
                "httpGet",
                port=8080,
                path="/live",
                host="127.0.0.1",
                http_headers=(("X-Probe", "live"),),
            ),
            Probe("tcpSocket", port=8080, success_threshold=2),
            Probe("grpc", port=9090, service="web", failure_threshold=30),
        ),
        "liveness, readiness and startup probes, with host, headers and grpc",
    ),
    # -- defaults -------------------------------------------------------------------------
    row(
        with_container("{name: web}"),
        lambda r: r.spec,
        core.PodSpec(
            (core.Container("web"),),
            service_account_name="default",
            init_containers=(),
            volumes=(),
            security_context=PodSecurityContext(None, None, None),
            host_network=False,
            restart_policy="Always",
            termination_grace_period_seconds=30,
            node_name="",
        ),
        "a pod restarts Always, has 30s to stop and no volumes or init containers",
    ),
    row(
        with_volume("{name: v, secret: {secretName: s}}"),
        lambda r: r.spec.volumes[0].source,
        SecretVolume("s", items=(), default_mode=0o644, optional=False),
        "a secret volume's files are 0644 and the Secret must exist",
    ),
    row(
        with_volume("{name: v, emptyDir: null, configMap: {name: c}}"),
        lambda r: r.spec.volumes[0].source,
        ConfigMapVolume("c", items=(), default_mode=0o644, optional=False),
        "a null source is no source",
    ),
    row(
        with_env("{name: A, value: '', valueFrom: {fieldRef: {fieldPath: metadata.uid}}}"),
        lambda r: first(r).env,
        (EnvVar("A", "", FieldRef("metadata.uid")),),
        "an empty value may stand beside valueFrom",
    ),
    row(
        with_value_from("{fieldRef: {fieldPath: \"metadata.annotations['Example.com/Mode']\"}}"),
        lambda r: first(r).env[0].value_from,
        FieldRef("metadata.annotations['Example.com/Mode']"),
        "an annotation key is checked in lower case",
    ),
    row(
        with_env("{name: my.var-1, value: x}"),
        lambda r: first(r).env[0].name,
        "my.var-1",
        "a variable name is any printable ASCII but =",
    ),
    row(
        pod(
            "{initContainers: [{name: a}, {name: b}], containers: [{name: c}], "
            "volumes: [{name: v}]}"
        ),
        lambda r: [c.name for c in r.spec.init_containers],
        ["a", "b"],
        "init containers keep their order",
    ),
    row(
        with_container(
            "{name: web}",
            "hostAliases: [{ip: 10.233.9.9, hostnames: [outside.test, o]}, {ip: '::1'}]",
        ),
        lambda r: r.spec.host_aliases,
        (core.HostAlias("10.233.9.9", ("outside.test", "o")), core.HostAlias("::1", ())),
        "host aliases keep their order, IPv4 or IPv6, hostnames optional",
    ),
]


@pytest.mark.parametrize(("manifest", "get", "expected"), VALID)
def test_a_valid_pod_parses_to(manifest: str, get: Getter, expected: object) -> None:
    assert get(ex.parse_valid(manifest)) == expected


@pytest.mark.parametrize(
    "field_path",
    [
        *core.ENV_FIELD_PATHS,
        "metadata.labels['app']",
        "metadata.annotations['example.com/x']",
    ],
)
def test_every_downward_api_path_for_env_is_valid(field_path: str) -> None:
    ex.parse_valid(with_value_from(f'{{fieldRef: {{fieldPath: "{field_path}"}}}}'))


def bad(manifest: str, path: str, fragment: str, id: str) -> Any:
    return pytest.param(manifest, path, fragment, id=id)


C0 = "spec.containers[0]"
V0 = "spec.volumes[0]"
INVALID = [
    # -- env ------------------------------------------------------------------------------
    bad(
        with_env("{name: A=B, value: x}"),
        f"{C0}.env[0].name",
        'is not a valid variable name: use printable ASCII characters but "="',
        "a variable name has no =",
    ),
    bad(
        with_env("{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}"),
        f"{C0}.env[0].valueFrom",
        "may not be given with a non-empty value",
        "a variable has a value or valueFrom",
    ),
    bad(
        with_value_from("{}"),
        f"{C0}.env[0].valueFrom",
        "needs exactly one of fieldRef, secretKeyRef, configMapKeyRef or resourceFieldRef",
        "valueFrom needs a source",
    ),
    bad(
        with_value_from("{fieldRef: {fieldPath: metadata.name}, secretKeyRef: {name: s, key: k}}"),
        f"{C0}.env[0].valueFrom",
        "needs exactly one of fieldRef, secretKeyRef, configMapKeyRef or resourceFieldRef (found "
        "fieldRef, secretKeyRef)",
        "valueFrom has one source",
    ),
    bad(
        with_value_from("{resourceFieldRef: {resource: limits.gpu}}"),
        f"{C0}.env[0].valueFrom.resourceFieldRef.resource",
        '"limits.gpu" is not a resource an env var can take',
        "a resourceFieldRef names a resource of the downward API",
    ),
    bad(
        with_value_from("{resourceFieldRef: {resource: limits.cpu, divisor: 1Mi}}"),
        f"{C0}.env[0].valueFrom.resourceFieldRef.divisor",
        "1Mi is not a divisor of limits.cpu; valid: 1m, 1",
        "a resourceFieldRef's divisor is one of its resource's units",
    ),
    bad(
        with_value_from("{fieldRef: {fieldPath: status.phase}}"),
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        '"status.phase" is not a field an env var can take; valid: metadata.name, '
        "metadata.namespace, metadata.uid, spec.nodeName, spec.serviceAccountName, "
        "status.hostIP, status.hostIPs, status.podIP, status.podIPs, metadata.labels['<key>'], "
        "metadata.annotations['<key>']",
        "a fieldRef names a field of the downward API for env",
    ),
    bad(
        with_value_from("{fieldRef: {fieldPath: metadata.nmae}}"),
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        'is not a field an env var can take (did you mean "metadata.name"?)',
        "a misspelled fieldPath gets a suggestion",
    ),
    bad(
        with_value_from("{fieldRef: {fieldPath: metadata.labels}}"),
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        "is not a field an env var can take",
        "all labels are for volumes, not env",
    ),
    bad(
        with_value_from("{fieldRef: {fieldPath: \"metadata.labels['no good']\"}}"),
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        '"no good" is not a valid label key',
        "a label key in a fieldRef is checked",
    ),
    bad(
        with_value_from("{fieldRef: {apiVersion: v2, fieldPath: metadata.name}}"),
        f"{C0}.env[0].valueFrom.fieldRef.apiVersion",
        'valid values: "v1"',
        "a fieldRef's apiVersion is v1",
    ),
    bad(
        with_value_from("{fieldRef: {}}"),
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        "required field is missing",
        "a fieldRef needs a fieldPath",
    ),
    bad(
        with_value_from("{secretKeyRef: {key: token}}"),
        f"{C0}.env[0].valueFrom.secretKeyRef.name",
        "required field is missing",
        "a secretKeyRef names its Secret",
    ),
    bad(
        with_value_from("{secretKeyRef: {name: s, key: a/b}}"),
        f"{C0}.env[0].valueFrom.secretKeyRef.key",
        '"a/b" is not a valid key',
        "a secretKeyRef key is a data key",
    ),
    bad(
        with_value_from("{configMapKeyRef: {name: Web, key: k}}"),
        f"{C0}.env[0].valueFrom.configMapKeyRef.name",
        '"Web" is not a valid name',
        "a configMapKeyRef names a ConfigMap by its DNS name",
    ),
    bad(
        with_value_from("{configMapKeyRef: {name: c, key: k, optional: maybe}}"),
        f"{C0}.env[0].valueFrom.configMapKeyRef.optional",
        "must be true or false",
        "optional is a boolean",
    ),
    # -- envFrom --------------------------------------------------------------------------
    bad(
        with_container("{name: web, envFrom: [{configMapRef: {name: c}, secretRef: {name: s}}]}"),
        f"{C0}.envFrom[0]",
        "an envFrom entry needs exactly one of configMapRef or secretRef",
        "an envFrom entry has one source",
    ),
    bad(
        with_container("{name: web, envFrom: [{prefix: A=, secretRef: {name: s}}]}"),
        f"{C0}.envFrom[0].prefix",
        "is not a valid variable name",
        "an envFrom prefix starts variable names",
    ),
    bad(
        with_container("{name: web, envFrom: [{secretRef: {optional: true}}]}"),
        f"{C0}.envFrom[0].secretRef.name",
        "required field is missing",
        "an envFrom source is named",
    ),
    # -- volume mounts --------------------------------------------------------------------
    bad(
        with_container(
            "{name: web, volumeMounts: [{name: confg, mountPath: /c}]}",
            "volumes: [{name: config}, {name: data}]",
        ),
        f"{C0}.volumeMounts[0].name",
        'the pod has no volume named "confg" (did you mean "config"?); its volumes: config, data',
        "a mount names a volume of the pod",
    ),
    bad(
        with_container(
            "{name: web, volumeMounts: [{name: v, mountPath: etc/v}]}", "volumes: [{name: v}]"
        ),
        f"{C0}.volumeMounts[0].mountPath",
        '"etc/v" is not an absolute path',
        "a mount path is absolute",
    ),
    bad(
        with_container(
            "{name: web, volumeMounts: [{name: v, mountPath: /a}, {name: v, mountPath: /a/}]}",
            "volumes: [{name: v}]",
        ),
        f"{C0}.volumeMounts[1].mountPath",
        '"/a/" is mounted already (volumeMounts[0])',
        "a container mounts one volume at a path",
    ),
    bad(
        with_container(
            "{name: web, volumeMounts: [{name: v, mountPath: /v, subPath: a/../../etc}]}",
            "volumes: [{name: v}]",
        ),
        f"{C0}.volumeMounts[0].subPath",
        'must not contain ".."',
        "a subPath stays inside its volume",
    ),
    bad(
        with_container(
            "{name: web, volumeMounts: [{name: v, mountPath: /v, subPath: /etc}]}",
            "volumes: [{name: v}]",
        ),
        f"{C0}.volumeMounts[0].subPath",
        '"/etc" must be a relative path',
        "a subPath is relative",
    ),
    bad(
        with_container(
            "{name: web, volumeMounts: [{name: v, mountPath: /v, subPathExpr: $(POD)}]}",
            "volumes: [{name: v}]",
        ),
        f"{C0}.volumeMounts[0].subPathExpr",
        "is not supported; use subPath",
        "subPathExpr is refused",
    ),
    bad(
        with_container(
            "{name: web, volumeMounts: [{name: v_1, mountPath: /v}]}", "volumes: [{name: v_1}]"
        ),
        f"{V0}.name",
        '"v_1" is not a valid name',
        "a badly named volume is reported once, not again at its mounts",
    ),
    # -- security contexts ----------------------------------------------------------------
    bad(
        with_container("{name: web, securityContext: {runAsUser: -1}}"),
        f"{C0}.securityContext.runAsUser",
        "-1 is out of range; expected an integer from 0 to 2147483647",
        "a user id is not negative",
    ),
    bad(
        with_container("{name: web, securityContext: {runAsGroup: 2147483648}}"),
        f"{C0}.securityContext.runAsGroup",
        "2147483648 is out of range",
        "a group id fits an int32",
    ),
    bad(
        with_container("{name: web, securityContext: {privileged: yes please}}"),
        f"{C0}.securityContext.privileged",
        "must be true or false",
        "privileged is a boolean",
    ),
    bad(
        with_container("{name: web, securityContext: {capabilities: {add: [1]}}}"),
        f"{C0}.securityContext.capabilities.add[0]",
        "must be a string",
        "capabilities are names",
    ),
    bad(
        pod('{securityContext: {runAsUser: "0"}, containers: [{name: web}]}'),
        "spec.securityContext.runAsUser",
        "must be an integer from 0 to 2147483647, not a string",
        "the pod's user id is a number",
    ),
    bad(
        pod("{securityContext: {runAsNonRoot: 1}, containers: [{name: web}]}"),
        "spec.securityContext.runAsNonRoot",
        "must be true or false",
        "runAsNonRoot is a boolean",
    ),
    # -- probes ---------------------------------------------------------------------------
    bad(
        with_probe("startupProbe", "{grpc: {port: grpc}}"),
        f"{C0}.startupProbe.grpc.port",
        "must be an integer from 1 to 65535, not a string",
        "a grpc probe's port is a number",
    ),
    bad(
        with_probe("livenessProbe", "{grpc: {}}"),
        f"{C0}.livenessProbe.grpc.port",
        "required field is missing",
        "a grpc probe needs a port",
    ),
    bad(
        with_probe(
            "livenessProbe", "{httpGet: {port: 80, httpHeaders: [{name: X Probe, value: a}]}}"
        ),
        f"{C0}.livenessProbe.httpGet.httpHeaders[0].name",
        '"X Probe" is not a valid HTTP header name',
        "a probe header name is a token",
    ),
    bad(
        with_probe("livenessProbe", "{httpGet: {port: 80, httpHeaders: [{value: a}]}}"),
        f"{C0}.livenessProbe.httpGet.httpHeaders[0].name",
        "required field is missing",
        "a probe header has a name",
    ),
    bad(
        with_probe("livenessProbe", "{tcpSocket: {port: 80}, successThreshold: 2}"),
        f"{C0}.livenessProbe.successThreshold",
        "must be 1 for a livenessProbe",
        "a liveness probe succeeds once",
    ),
    bad(
        with_probe("startupProbe", "{exec: {command: [x]}, grpc: {port: 1}}"),
        f"{C0}.startupProbe",
        "a probe needs exactly one of httpGet, tcpSocket, exec or grpc",
        "a startup probe has one handler",
    ),
    # -- containers -----------------------------------------------------------------------
    bad(
        pod(
            "{initContainers: [{name: init, readinessProbe: {exec: {command: [x]}}}], "
            "containers: [{name: web}]}"
        ),
        "spec.initContainers[0].readinessProbe",
        "an init container runs to completion and takes no probes",
        "an init container has no probes",
    ),
    bad(
        pod("{initContainers: [{name: init, restartPolicy: Always}], containers: [{name: web}]}"),
        "spec.initContainers[0].restartPolicy",
        "a container's own restartPolicy (a sidecar init container) is not supported",
        "native sidecar containers are refused",
    ),
    bad(
        pod("{initContainers: [{name: web}], containers: [{name: web}]}"),
        f"{C0}.name",
        'duplicate container name "web"; names are unique across containers and initContainers',
        "container names are unique across init containers and containers",
    ),
    bad(
        pod("{initContainers: [{}], containers: [{name: web}]}"),
        "spec.initContainers[0].name",
        "required field is missing",
        "an init container needs a name",
    ),
    # -- volumes --------------------------------------------------------------------------
    bad(
        with_container("{name: web}", "volumes: [{name: v}, {name: v, emptyDir: {}}]"),
        "spec.volumes[1].name",
        'duplicate volume name "v"',
        "volume names are unique",
    ),
    bad(
        with_volume("{name: v, hostPath: {path: /var}}"),
        f"{V0}.hostPath",
        '"hostPath" is not a supported volume source; supported: secret, configMap, emptyDir',
        "a hostPath volume is refused, naming what is supported",
    ),
    bad(
        with_volume("{name: v, emptydir: {}}"),
        f"{V0}.emptydir",
        'is not a supported volume source (did you mean "emptyDir"?)',
        "a misspelled source gets a suggestion",
    ),
    bad(
        with_volume("{name: v, secret: {secretName: s}, configMap: {name: c}}"),
        f"{V0}.configMap",
        "a volume has exactly one source, and this one has secret",
        "a volume has one source",
    ),
    bad(
        with_volume("{name: v, secret: {}}"),
        f"{V0}.secret.secretName",
        "required field is missing",
        "a secret volume names its Secret",
    ),
    bad(
        with_volume("{name: v, configMap: {optional: true}}"),
        f"{V0}.configMap.name",
        "required field is missing",
        "a configMap volume names its ConfigMap",
    ),
    bad(
        with_volume("{name: v, secret: {secretName: s, defaultMode: 512}}"),
        f"{V0}.secret.defaultMode",
        "512 is out of range; expected a file mode from 0 to 0777 (decimal 511)",
        "a mode is at most 0777",
    ),
    bad(
        with_volume('{name: v, secret: {secretName: s, defaultMode: "0644"}}'),
        f"{V0}.secret.defaultMode",
        "must be a file mode from 0 to 0777 (decimal 511), e.g. 0644 (JSON: 420), not a string",
        "a mode is a number",
    ),
    bad(
        with_volume("{name: v, configMap: {name: c, items: [{key: k, path: p, mode: -1}]}}"),
        f"{V0}.configMap.items[0].mode",
        "-1 is out of range",
        "an item's mode is not negative",
    ),
    bad(
        with_volume("{name: v, configMap: {name: c, items: [{key: k, path: /etc/p}]}}"),
        f"{V0}.configMap.items[0].path",
        '"/etc/p" must be a relative path',
        "an item's path is relative",
    ),
    bad(
        with_volume("{name: v, configMap: {name: c, items: [{key: k, path: a/../../p}]}}"),
        f"{V0}.configMap.items[0].path",
        'must not contain ".."',
        "an item's path stays inside the volume",
    ),
    bad(
        with_volume("{name: v, configMap: {name: c, items: [{key: k, path: ..data}]}}"),
        f"{V0}.configMap.items[0].path",
        'must not start with ".."',
        "an item's path leaves ..data to the volume",
    ),
    bad(
        with_volume(
            "{name: v, secret: {secretName: s, items: [{key: a, path: p}, {key: b, path: p}]}}"
        ),
        f"{V0}.secret.items[1].path",
        '"p" is written by an earlier item',
        "two items write different files",
    ),
    bad(
        with_volume("{name: v, secret: {secretName: s, items: [{key: a b, path: p}]}}"),
        f"{V0}.secret.items[0].key",
        '"a b" is not a valid key',
        "an item's key is a data key",
    ),
    bad(
        with_volume("{name: v, secret: {secretName: s, items: [{key: a}]}}"),
        f"{V0}.secret.items[0].path",
        "required field is missing",
        "an item has a path",
    ),
    bad(
        with_volume("{name: v, emptyDir: {medium: HugePages}}"),
        f"{V0}.emptyDir.medium",
        '"HugePages" is not valid; valid values: "", "Memory"',
        "an emptyDir is on disk or in memory",
    ),
    # -- the pod --------------------------------------------------------------------------
    bad(
        pod("{restartPolicy: Sometimes, containers: [{name: web}]}"),
        "spec.restartPolicy",
        'valid values: "Always", "OnFailure", "Never"',
        "a restart policy is Always, OnFailure or Never",
    ),
    bad(
        pod("{terminationGracePeriodSeconds: -1, containers: [{name: web}]}"),
        "spec.terminationGracePeriodSeconds",
        "-1 is out of range",
        "a grace period is not negative",
    ),
    bad(
        pod('{hostNetwork: "true", containers: [{name: web}]}'),
        "spec.hostNetwork",
        "must be true or false, not a string",
        "hostNetwork is a boolean",
    ),
    bad(
        pod("{nodeName: Node_1, containers: [{name: web}]}"),
        "spec.nodeName",
        '"Node_1" is not a valid name',
        "a node name is a DNS subdomain",
    ),
    bad(
        with_container("{name: web}", "hostAliases: [{ip: 10.233.9, hostnames: [a]}]"),
        "spec.hostAliases[0].ip",
        '"10.233.9" is not an IP address',
        "a host alias's ip is an address",
    ),
    bad(
        with_container("{name: web}", "hostAliases: [{hostnames: [a]}]"),
        "spec.hostAliases[0].ip",
        "required field is missing",
        "a host alias has an ip",
    ),
    bad(
        with_container("{name: web}", "hostAliases: [{ip: 10.0.0.1, hostnames: [a, B_1]}]"),
        "spec.hostAliases[0].hostnames[1]",
        '"B_1" is not a valid name',
        "a host alias's hostnames are DNS subdomains",
    ),
    bad(
        ex.DEPLOYMENT_MINIMAL.replace("containers:", "restartPolicy: Never\n      containers:"),
        "spec.template.spec.restartPolicy",
        '"Never" is not valid in a Deployment, whose pods always restart',
        "a Deployment's pods restart Always",
    ),
]


@pytest.mark.parametrize(("manifest", "path", "fragment"), INVALID)
def test_an_invalid_pod_gives_one_error(manifest: str, path: str, fragment: str) -> None:
    resource, problems = ex.parse(manifest)
    assert resource is None
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.path, fragment in p.message) for p in errors] == [(path, True)], "\n".join(
        f"{p.path!r}: {p.message}" for p in errors
    )


def test_every_mistake_of_a_container_is_reported_at_once() -> None:
    _, problems = ex.parse(
        with_container(
            "{name: web, env: [{name: A, valueFrom: {resourceFieldRef: {}}}], "
            "volumeMounts: [{name: missing, mountPath: rel}], securityContext: {runAsUser: -1}}"
        )
    )
    assert sorted(p.path for p in problems) == [
        f"{C0}.env[0].valueFrom.resourceFieldRef.resource",
        f"{C0}.securityContext.runAsUser",
        f"{C0}.volumeMounts[0].mountPath",
        f"{C0}.volumeMounts[0].name",
    ]


# -- the pods OSM's injector makes ---------------------------------------------------------
def _envoy_pod() -> injector.patch.Injection:
    """The bookstore with a probe of each kind the injector rewrites or keeps."""
    return injector.run(
        injector.pod(
            labels={"app": "bookstore"},
            containers=[
                injector.container(
                    "bookstore",
                    livenessProbe={"httpGet": {"path": "/liveness", "port": "web"}},
                    readinessProbe={"tcpSocket": {"port": 14001}, "periodSeconds": 5},
                    startupProbe={"grpc": {"port": 14001}},
                )
            ],
        )
    )


def _python_pod() -> injector.patch.Injection:
    return injector.run(
        injector.pod(
            "bookbuyer-7c9f",
            ns="bookbuyer",
            containers=[
                injector.container("bookbuyer", readinessProbe={"httpGet": {"port": 14001}})
            ],
        ),
        injector.namespace(
            "bookbuyer", annotations={wellknown.DATA_PLANE_ANNOTATION: DataPlane.PYTHON.value}
        ),
    )


INJECTIONS = {
    "envoy": (_envoy_pod, wellknown.ENVOY_CONTAINER_NAME),
    "python": (_python_pod, wellknown.PYTHON_SIDECAR_CONTAINER_NAME),
}


def _injected(case: str) -> tuple[core.Pod, injector.patch.Injection, core.Container]:
    build, sidecar_name = INJECTIONS[case]
    injection = build()
    resource, problems = kinds.parse(injection.pod)
    assert problems == [], "\n".join(str(p) for p in problems)
    assert isinstance(resource, core.Pod)
    (sidecar,) = (c for c in resource.spec.containers if c.name == sidecar_name)
    return resource, injection, sidecar


@pytest.mark.parametrize("case", list(INJECTIONS))
def test_the_injected_sidecar_reads_its_pod_through_the_downward_api(case: str) -> None:
    _, _, sidecar = _injected(case)
    assert sidecar.env == (
        EnvVar("POD_UID", "", FieldRef("metadata.uid")),
        EnvVar("POD_NAME", "", FieldRef("metadata.name")),
        EnvVar("POD_NAMESPACE", "", FieldRef("metadata.namespace")),
        EnvVar("POD_IP", "", FieldRef("status.podIP")),
        EnvVar("SERVICE_ACCOUNT", "", FieldRef("spec.serviceAccountName")),
    )
    assert sidecar.security_context == SecurityContext(run_as_user=wellknown.PROXY_UID)
    assert sidecar.volume_mounts == (
        VolumeMount(wellknown.BOOTSTRAP_VOLUME_NAME, wellknown.BOOTSTRAP_MOUNT_PATH, True, ""),
    )


@pytest.mark.parametrize("case", list(INJECTIONS))
def test_the_injected_pod_mounts_its_bootstrap_secret(case: str) -> None:
    resource, injection, _ = _injected(case)
    assert resource.spec.volumes == (
        Volume(
            wellknown.BOOTSTRAP_VOLUME_NAME,
            SecretVolume(secret.secret_name(injector.PROXY_UUID), (), 0o644, False),
        ),
    )
    assert injection.secret is not None
    bootstrap = kinds.decode(injection.secret)
    assert isinstance(bootstrap, core.Secret)
    assert bootstrap.name == secret.secret_name(injector.PROXY_UUID)
    assert dict(bootstrap.data) == injector.secret_files(injection.secret)


@pytest.mark.parametrize("case", list(INJECTIONS))
def test_the_injected_init_container_runs_as_root_with_net_admin(case: str) -> None:
    resource, _, _ = _injected(case)
    (init,) = resource.spec.init_containers
    assert init.name == wellknown.INIT_CONTAINER_NAME
    assert init.command == ("/bin/sh",)
    assert init.env == (EnvVar("POD_IP", "", FieldRef("status.podIP")),)
    assert init.security_context == SecurityContext(
        run_as_user=0,
        run_as_group=None,
        run_as_non_root=False,
        privileged=False,
        capabilities_add=("NET_ADMIN",),
        capabilities_drop=(),
    )


def test_the_injected_probes_are_httpget_with_headers_and_grpc_stays() -> None:
    resource, _, _ = _injected("envoy")
    app = resource.spec.containers[0]
    assert app.liveness_probe == Probe(
        "httpGet", port=wellknown.LIVENESS_PROBE_PORT, path=wellknown.LIVENESS_PROBE_PATH
    )
    assert app.readiness_probe == Probe(
        "httpGet",
        port=wellknown.HEALTHCHECK_PORT,
        path=wellknown.HEALTHCHECK_PATH,
        period_seconds=5,
        http_headers=((wellknown.ORIGINAL_TCP_PORT_HEADER, "14001"),),
    )
    assert app.startup_probe == Probe("grpc", port=14001)


@pytest.mark.parametrize("case", list(INJECTIONS))
def test_the_injected_pod_survives_a_round_trip(case: str) -> None:
    resource, _, _ = _injected(case)
    assert kinds.decode(resource.to_dict()) == resource
