"""What a kubelet derives from a stored Pod before it runs anything: each volume's files
and each container's argv, environment, user, working directory and mounts.

One idea: the rules by which Kubernetes turns a pod spec into processes are pure
functions of the Pod and what the kubelet knows (its IP, the node, the Secrets and
ConfigMaps of the pod's namespace, the base environment it gives every container), so
they live here, apart from the kubelet's I/O, and are tested as a table. No I/O, no clock.

The rules, as Kubernetes has them:

- environment: ``base_env`` (what the kubelet gives: PATH, ...), then each ``envFrom``
  source's keys (prefixed, sorted) in order, then each ``env`` entry in order, later names
  overriding earlier ones. An ``env`` value has its ``$(VAR)`` references expanded
  against the variables before it (an undefined one stays as written, ``$$`` escapes a
  ``$``); ``valueFrom`` and envFrom values are taken as they are.
- argv: ``command`` then ``args``, each expanded against the whole environment. A
  container without ``command`` cannot run: local mode runs commands, not images.
- user: the container's securityContext runAsUser/runAsGroup, else the pod's, else the
  unprivileged app user (`APP_UID`/`APP_GID`); so a container runs as root only when a
  spec says runAsUser 0 (as OSM's osm-init does). runAsNonRoot with UID 0 cannot run.
- volumes: a Secret's or ConfigMap's keys as files (``items`` select and rename keys;
  an item's mode overrides the volume's ``defaultMode``); emptyDir starts empty. Secret
  and ConfigMap volumes are mounted read-only whatever the mount says.
- a missing Secret or ConfigMap, or a missing key of one, that a spec needs and does not
  mark ``optional`` is `MissingObject`: the kubelet waits for it and tries again, as
  Kubernetes does (CreateContainerConfigError, or a volume that cannot mount); an
  optional one is left out (no variable, no file).
- a ``resourceFieldRef`` is a limit or request of a container in units of its divisor,
  rounded up; an unset limit is the node's capacity (``node_capacity``, which the
  kubelet measures), an unset request the limit, else 0.

- the service account (the kubelet's automount, which Kubernetes' ServiceAccount
  admission plugin writes into the spec; here the kubelet adds it when it runs the pod):
  unless the pod's ``automountServiceAccountToken`` is false (or, the pod's unset, its
  ServiceAccount's), every container that does not mount something there itself gets the
  read-only volume `token_volume_name` (``token``, ``ca.crt``, ``namespace``:
  `token_files`) at `SERVICE_ACCOUNT_PATH`; every container's environment starts with the
  ``kubernetes`` Service's variables (`api_env`), before ``envFrom`` and ``env``.

`container_plans` gives init containers first (``init=True``), in order, then the
containers.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeVar

from osm.model.core import (
    ConfigMap,
    ConfigMapKeyRef,
    ConfigMapVolume,
    Container,
    EmptyDirVolume,
    EnvFromSource,
    FieldRef,
    KeyToPath,
    Pod,
    ResourceFieldRef,
    Secret,
    SecretKeyRef,
    SecretVolume,
    Volume,
    split_field_path,
)

T = TypeVar("T")

APP_UID = 65534  # nobody
APP_GID = 65534  # nogroup
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where in-cluster clients read their token, CA and namespace."""
TOKEN_VOLUME = "kube-api-access"
TOKEN_FILE_MODE = 0o644
"""Kubernetes' projected volume default: containers of any user read the token."""


class PodSpecError(Exception):
    """The pod cannot be run as its spec says (yet)."""


class MissingObject(PodSpecError):
    """A Secret or ConfigMap (or one of its keys) that the spec needs at `path` is not
    there. Not the spec's fault: the kubelet waits for it and tries again."""

    def __init__(self, kind: str, namespace: str, name: str, key: str | None, path: str) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.key = key
        self.path = path
        what = f"{kind} {namespace}/{name}"
        missing = f'{what} has no key "{key}"' if key is not None else f"{what} not found"
        super().__init__(f"{missing} (needed by {path})")


class CannotRun(PodSpecError):
    """The spec asks for what the local runtime cannot do, at `path`; trying again will
    not help until the spec changes."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True, slots=True)
class VolumeFile:
    """One file of a volume: `path` relative to the volume's root (may contain ``/``)."""

    path: str
    data: bytes
    mode: int


@dataclass(frozen=True, slots=True)
class VolumeContent:
    """A volume as the kubelet creates it: its files (none for an emptyDir) and the
    medium it lives on (``Memory``: a tmpfs, as Kubernetes keeps Secrets)."""

    name: str
    files: tuple[VolumeFile, ...] = ()
    medium: str = ""


@dataclass(frozen=True, slots=True)
class MountPlan:
    """The pod's volume `volume` (or `sub_path` inside it) at `mount_path`."""

    volume: str
    mount_path: str
    read_only: bool
    sub_path: str = ""


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    """How to run one container: `argv` in `working_dir` as `uid`/`gid` with `env`
    (ordered, read-only) and `mounts`. `container` is the model's object, for its ports,
    probes and capabilities."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    uid: int
    gid: int
    working_dir: str
    mounts: tuple[MountPlan, ...]
    init: bool
    container: Container


# -- $(VAR) expansion ----------------------------------------------------------------------
_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, undefined ones
    kept as written, ``$$`` escapes a ``$``, a ``$`` before anything else stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def argv(container: Container, env: Mapping[str, str], path: str) -> tuple[str, ...]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; `path` locates the container
    (``spec.containers[0]``) in the error for a container without a command."""
    if not container.command:
        raise CannotRun(
            f"{path}.command",
            f'container "{container.name}" has no command; local mode runs commands, not images',
        )
    return tuple(expand(part, env) for part in (*container.command, *container.args))


# -- volumes ---------------------------------------------------------------------------------
def volume_contents(
    pod: Pod, secrets: Mapping[str, Secret], config_maps: Mapping[str, ConfigMap]
) -> tuple[VolumeContent, ...]:
    """Every volume of the pod with its files, in the spec's order. `secrets` and
    `config_maps` are those of the pod's namespace, by name. Raises `MissingObject`."""
    return tuple(
        _volume_content(pod, volume, f"spec.volumes[{index}]", secrets, config_maps)
        for index, volume in enumerate(pod.spec.volumes)
    )


def _volume_content(
    pod: Pod,
    volume: Volume,
    path: str,
    secrets: Mapping[str, Secret],
    config_maps: Mapping[str, ConfigMap],
) -> VolumeContent:
    source = volume.source
    if isinstance(source, EmptyDirVolume):
        return VolumeContent(volume.name, (), source.medium)
    if isinstance(source, SecretVolume):
        secret = secrets.get(source.secret_name)
        data = None if secret is None else secret.data
        where = ("Secret", source.secret_name, f"{path}.secret")
        medium = "Memory"
    else:
        config_map = config_maps.get(source.name)
        data = None if config_map is None else config_map.files()
        where = ("ConfigMap", source.name, f"{path}.configMap")
        medium = ""
    kind, name, source_path = where
    if data is None:
        if source.optional:
            return VolumeContent(volume.name, (), medium)
        raise MissingObject(kind, pod.namespace, name, None, source_path)
    items = source.items or tuple(KeyToPath(key, key) for key in sorted(data))
    files: list[VolumeFile] = []
    for index, item in enumerate(items):
        if item.key not in data:
            if source.optional:
                continue
            raise MissingObject(
                kind, pod.namespace, name, item.key, f"{source_path}.items[{index}]"
            )
        mode = source.default_mode if item.mode is None else item.mode
        files.append(VolumeFile(item.path, data[item.key], mode))
    return VolumeContent(volume.name, tuple(files), medium)


# -- the service account -------------------------------------------------------------------
def automounts_token(pod: Pod, account: Mapping[str, Any] | None) -> bool:
    """Whether the kubelet mounts the service account token: the pod's
    ``automountServiceAccountToken`` if set, else its ServiceAccount's (``account``, the
    stored object, None when unknown), else true."""
    own = (pod.manifest.get("spec") or {}).get("automountServiceAccountToken")
    if isinstance(own, bool):
        return own
    shared = (account or {}).get("automountServiceAccountToken")
    return shared if isinstance(shared, bool) else True


def token_volume_name(pod: Pod) -> str:
    """The name of the token volume: `TOKEN_VOLUME`, suffixed until no volume of the pod
    has it."""
    taken = {volume.name for volume in pod.spec.volumes}
    name, count = TOKEN_VOLUME, 0
    while name in taken:
        count += 1
        name = f"{TOKEN_VOLUME}-{count}"
    return name


def token_files(token: str, ca_pem: bytes, namespace: str) -> tuple[VolumeFile, ...]:
    """The token volume's files, as an in-cluster client reads them."""
    return (
        VolumeFile("ca.crt", ca_pem, TOKEN_FILE_MODE),
        VolumeFile("namespace", namespace.encode(), TOKEN_FILE_MODE),
        VolumeFile("token", token.encode(), TOKEN_FILE_MODE),
    )


def api_env(host: str, port: int) -> dict[str, str]:
    """The variables the kubelet gives every container for the ``kubernetes`` Service of
    the default namespace (its one port, named ``https``), as for any Service."""
    address = f"tcp://{host}:{port}"
    prefix = f"KUBERNETES_PORT_{port}_TCP"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": address,
        prefix: address,
        f"{prefix}_PROTO": "tcp",
        f"{prefix}_PORT": str(port),
        f"{prefix}_ADDR": host,
    }


# -- containers ------------------------------------------------------------------------------
def container_plans(
    pod: Pod,
    *,
    pod_ip: str,
    host_ip: str,
    node_name: str,
    secrets: Mapping[str, Secret],
    config_maps: Mapping[str, ConfigMap],
    base_env: Mapping[str, str],
    token_volume: str | None = None,
    node_capacity: Mapping[str, Fraction] | None = None,
) -> tuple[ContainerPlan, ...]:
    """The plan of every container: init containers first, in order, then the
    containers. Raises `MissingObject` or `CannotRun` for the first container that
    cannot be planned (see `container_plan` to plan one at a time)."""
    names = [c.name for c in (*pod.spec.init_containers, *pod.spec.containers)]
    return tuple(
        container_plan(
            pod,
            name,
            pod_ip=pod_ip,
            host_ip=host_ip,
            node_name=node_name,
            secrets=secrets,
            config_maps=config_maps,
            base_env=base_env,
            token_volume=token_volume,
            node_capacity=node_capacity,
        )
        for name in names
    )


def container_plan(
    pod: Pod,
    name: str,
    *,
    pod_ip: str,
    host_ip: str,
    node_name: str,
    secrets: Mapping[str, Secret],
    config_maps: Mapping[str, ConfigMap],
    base_env: Mapping[str, str],
    token_volume: str | None = None,
    node_capacity: Mapping[str, Fraction] | None = None,
) -> ContainerPlan:
    """The plan of the (init) container `name`, as `container_plans` makes it; a
    kubelet that starts containers one after the other plans each when it gets there.
    `node_name` answers ``spec.nodeName`` (the kubelet's node runs the pod);
    `token_volume` names the service account volume, if the pod gets one."""
    container, path, init = _find(pod, name)
    env: dict[str, str] = dict(base_env)
    for index, source in enumerate(container.env_from):
        values = _env_from(pod, source, f"{path}.envFrom[{index}]", secrets, config_maps)
        env.update((source.prefix + key, values[key]) for key in sorted(values))
    for index, variable in enumerate(container.env):
        where = f"{path}.env[{index}]"
        value_from = variable.value_from
        if value_from is None:
            env[variable.name] = expand(variable.value, env)
            continue
        if isinstance(value_from, FieldRef):
            env[variable.name] = _field(pod, value_from, pod_ip, host_ip, node_name)
            continue
        if isinstance(value_from, ResourceFieldRef):
            where = f"{where}.valueFrom.resourceFieldRef"
            env[variable.name] = _resource(pod, container, value_from, where, node_capacity or {})
            continue
        value = _key(pod, value_from, f"{where}.valueFrom", secrets, config_maps)
        if value is not None:
            env[variable.name] = value
    for key, value in env.items():
        if "\0" in value:
            raise CannotRun(path, f"the value of {key} holds a NUL byte, which no process can take")
    uid, gid = _user(pod, container, path)
    working_dir = posixpath.normpath(posixpath.join("/", container.working_dir or "/"))
    return ContainerPlan(
        name=container.name,
        argv=argv(container, env, path),
        env=MappingProxyType(env),
        uid=uid,
        gid=gid,
        working_dir=working_dir,
        mounts=_mounts(pod, container, path, token_volume),
        init=init,
        container=container,
    )


def _find(pod: Pod, name: str) -> tuple[Container, str, bool]:
    for key, containers, init in (
        ("initContainers", pod.spec.init_containers, True),
        ("containers", pod.spec.containers, False),
    ):
        for index, container in enumerate(containers):
            if container.name == name:
                return container, f"spec.{key}[{index}]", init
    raise KeyError(f'pod {pod.namespace}/{pod.name} has no container "{name}"')


def _text(data: bytes) -> str:
    """A Secret's bytes as an environment value (bytes that are not UTF-8 survive into
    the process environment unchanged)."""
    return data.decode("utf-8", "surrogateescape")


def _env_from(
    pod: Pod,
    source: EnvFromSource,
    path: str,
    secrets: Mapping[str, Secret],
    config_maps: Mapping[str, ConfigMap],
) -> Mapping[str, str]:
    if source.kind == "Secret":
        secret = secrets.get(source.name)
        found = None if secret is None else {k: _text(v) for k, v in secret.data.items()}
        where = f"{path}.secretRef"
    else:
        config_map = config_maps.get(source.name)
        found = None if config_map is None else {k: _text(v) for k, v in config_map.files().items()}
        where = f"{path}.configMapRef"
    if found is not None:
        return found
    if source.optional:
        return {}
    raise MissingObject(source.kind, pod.namespace, source.name, None, where)


def _key(
    pod: Pod,
    ref: SecretKeyRef | ConfigMapKeyRef,
    path: str,
    secrets: Mapping[str, Secret],
    config_maps: Mapping[str, ConfigMap],
) -> str | None:
    """The value `ref` names; None when it is optional and missing."""
    if isinstance(ref, SecretKeyRef):
        secret = secrets.get(ref.name)
        data = None if secret is None else secret.data
        where = f"{path}.secretKeyRef"
    else:
        config_map = config_maps.get(ref.name)
        data = None if config_map is None else config_map.files()
        where = f"{path}.configMapKeyRef"
    if data is not None and ref.key in data:
        return _text(data[ref.key])
    if ref.optional:
        return None
    key = None if data is None else ref.key
    raise MissingObject(ref.KIND, pod.namespace, ref.name, key, where)


def _field(pod: Pod, ref: FieldRef, pod_ip: str, host_ip: str, node_name: str) -> str:
    """The downward API for env (the model allows only these paths)."""
    head, key = split_field_path(ref.field_path)
    if key is not None:
        found = pod.metadata.labels if head == "metadata.labels" else pod.metadata.annotations
        return found.get(key, "")
    values = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    return values[head]


def _resource(
    pod: Pod,
    container: Container,
    ref: ResourceFieldRef,
    path: str,
    capacity: Mapping[str, Fraction],
) -> str:
    """The downward API's answer for a resource: ``ceil(value / divisor)``, where bytes
    are whole bytes first (as the kubelet computes it)."""
    if ref.container_name:
        everyone = (*pod.spec.init_containers, *pod.spec.containers)
        named = [c for c in everyone if c.name == ref.container_name]
        if not named:
            missing = f'the pod has no container "{ref.container_name}"'
            raise CannotRun(f"{path}.containerName", missing)
        container = named[0]
    kind, _, name = ref.resource.partition(".")
    limits, requests = container.resources.limits, container.resources.requests
    value: Fraction | None
    if kind == "limits":
        value = limits.get(name) or capacity.get(name)  # a limit of 0 is none
    else:
        value = requests.get(name, limits.get(name, Fraction(0)))
    if value is None:
        raise CannotRun(path, f"the node's {name} is not known: give the container limits.{name}")
    if name != "cpu":
        value = Fraction(math.ceil(value))
    return str(math.ceil(value / ref.divisor))


def _user(pod: Pod, container: Container, path: str) -> tuple[int, int]:
    own, shared = container.security_context, pod.spec.security_context
    uid = _first(own.run_as_user, shared.run_as_user, APP_UID)
    gid = _first(own.run_as_group, shared.run_as_group, APP_GID)
    if uid == 0 and _first(own.run_as_non_root, shared.run_as_non_root, False):
        where = (
            f"{path}.securityContext.runAsUser"
            if own.run_as_user is not None
            else "spec.securityContext.runAsUser"
        )
        raise CannotRun(where, "is 0 (root), but runAsNonRoot is true")
    return uid, gid


def _first(own: T | None, shared: T | None, default: T) -> T:
    """The container's setting, else the pod's, else the default."""
    if own is not None:
        return own
    return default if shared is None else shared


def _mounts(
    pod: Pod, container: Container, path: str, token_volume: str | None
) -> tuple[MountPlan, ...]:
    mounts: list[MountPlan] = []
    for index, mount in enumerate(container.volume_mounts):
        volume = pod.spec.volume(mount.name)
        if volume is None:  # the model refuses such a pod; a Pod built in code may not
            raise CannotRun(
                f"{path}.volumeMounts[{index}].name", f'the pod has no volume "{mount.name}"'
            )
        api_data = isinstance(volume.source, SecretVolume | ConfigMapVolume)
        mounts.append(
            MountPlan(mount.name, mount.mount_path, mount.read_only or api_data, mount.sub_path)
        )
    if token_volume is not None and all(m.mount_path != SERVICE_ACCOUNT_PATH for m in mounts):
        mounts.append(MountPlan(token_volume, SERVICE_ACCOUNT_PATH, read_only=True))
    return tuple(mounts)
