"""The kubelet's automount, rule by rule (`osm.runtime.podspec`): which pods get the
service account token volume, where each container sees it, its files, and the
``kubernetes`` Service's variables every container starts with.
"""

from __future__ import annotations

from typing import Any

import pytest

from osm.base import wellknown
from osm.model import core, kinds
from osm.runtime import podspec
from osm.runtime.podspec import SERVICE_ACCOUNT_PATH, MountPlan, VolumeFile

CONTAINER = {"name": "app", "command": ["run"]}


def pod(spec: dict[str, Any] | None = None, **containers: Any) -> core.Pod:
    """A pod in ``shop`` with one container ``app`` (plus `spec`'s fields)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"containers": [{**CONTAINER, **containers}], **(spec or {})},
    }
    resource = kinds.decode(manifest)
    assert isinstance(resource, core.Pod)
    return resource


AUTOMOUNT_ROWS = [
    # (pod's automountServiceAccountToken, the ServiceAccount's, mounted?)
    (None, None, True),
    (None, True, True),
    (None, False, False),
    (True, False, True),
    (False, None, False),
    (False, True, False),
]


@pytest.mark.parametrize(("own", "accounts", "mounted"), AUTOMOUNT_ROWS)
def test_the_pods_setting_wins_over_its_service_accounts(
    own: bool | None, accounts: bool | None, mounted: bool
) -> None:
    spec = {} if own is None else {"automountServiceAccountToken": own}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
    if accounts is not None:
        account["automountServiceAccountToken"] = accounts
    assert podspec.automounts_token(pod(spec), account) is mounted


def test_an_unknown_service_account_does_not_turn_the_automount_off() -> None:
    assert podspec.automounts_token(pod(), None) is True


def plan_mounts(the_pod: core.Pod, token_volume: str | None) -> tuple[MountPlan, ...]:
    (plan,) = podspec.container_plans(
        the_pod,
        pod_ip="10.233.0.7",
        host_ip="10.233.0.1",
        node_name="local",
        secrets={},
        config_maps={},
        base_env={},
        token_volume=token_volume,
    )
    return plan.mounts


TOKEN_MOUNT = MountPlan("kube-api-access", SERVICE_ACCOUNT_PATH, read_only=True)
OWN_MOUNT_ROWS = [
    # (the pod, the volume name, the container's mounts)
    (pod(), None, ()),
    (pod(), "kube-api-access", (TOKEN_MOUNT,)),
    (
        pod(
            {"volumes": [{"name": "cache", "emptyDir": {}}]},
            volumeMounts=[{"name": "cache", "mountPath": "/cache"}],
        ),
        "kube-api-access",
        (MountPlan("cache", "/cache", read_only=False), TOKEN_MOUNT),
    ),
    # A container that mounts something at the path itself keeps it (as kube's admission).
    (
        pod(
            {"volumes": [{"name": "mine", "emptyDir": {}}]},
            volumeMounts=[{"name": "mine", "mountPath": SERVICE_ACCOUNT_PATH}],
        ),
        "kube-api-access",
        (MountPlan("mine", SERVICE_ACCOUNT_PATH, read_only=False),),
    ),
]


@pytest.mark.parametrize(("the_pod", "volume", "expected"), OWN_MOUNT_ROWS)
def test_every_container_sees_the_token_volume_read_only(
    the_pod: core.Pod, volume: str | None, expected: tuple[MountPlan, ...]
) -> None:
    assert plan_mounts(the_pod, volume) == expected


def test_init_containers_get_the_token_too() -> None:
    the_pod = pod({"initContainers": [{"name": "setup", "command": ["prepare"]}]})
    plans = podspec.container_plans(
        the_pod,
        pod_ip="10.233.0.7",
        host_ip="10.233.0.1",
        node_name="local",
        secrets={},
        config_maps={},
        base_env={},
        token_volume="kube-api-access",
    )
    assert [(p.name, p.mounts) for p in plans] == [
        ("setup", (TOKEN_MOUNT,)),
        ("app", (TOKEN_MOUNT,)),
    ]


@pytest.mark.parametrize(
    ("volumes", "name"),
    [
        ([], "kube-api-access"),
        (["kube-api-access"], "kube-api-access-1"),
        (["kube-api-access", "kube-api-access-1"], "kube-api-access-2"),
    ],
)
def test_the_token_volume_takes_a_name_no_volume_of_the_pod_has(
    volumes: list[str], name: str
) -> None:
    the_pod = pod({"volumes": [{"name": v, "emptyDir": {}} for v in volumes]})
    assert podspec.token_volume_name(the_pod) == name


def test_the_token_volume_holds_what_an_in_cluster_client_reads() -> None:
    files = podspec.token_files("eyJ.token", b"-----BEGIN CERTIFICATE-----\n", "shop")
    assert files == (
        VolumeFile("ca.crt", b"-----BEGIN CERTIFICATE-----\n", 0o644),
        VolumeFile("namespace", b"shop", 0o644),
        VolumeFile("token", b"eyJ.token", 0o644),
    )


def test_the_kubernetes_services_variables_name_the_relay() -> None:
    port = wellknown.API_SERVICE_PORT
    assert podspec.api_env("10.233.0.1", port) == {
        "KUBERNETES_SERVICE_HOST": "10.233.0.1",
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://10.233.0.1:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://10.233.0.1:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": "10.233.0.1",
    }


def test_a_containers_env_overrides_the_kubernetes_variables() -> None:
    env = [{"name": "KUBERNETES_SERVICE_HOST", "value": "elsewhere"}]
    (plan,) = podspec.container_plans(
        pod(env=env),
        pod_ip="10.233.0.7",
        host_ip="10.233.0.1",
        node_name="local",
        secrets={},
        config_maps={},
        base_env=podspec.api_env("10.233.0.1", wellknown.API_SERVICE_PORT),
    )
    assert plan.env["KUBERNETES_SERVICE_HOST"] == "elsewhere"
    assert plan.env["KUBERNETES_SERVICE_PORT"] == str(wellknown.API_SERVICE_PORT)
