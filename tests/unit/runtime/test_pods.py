"""The runtime's pure decisions: which pods to start and remove, hosts, Pod/Endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from osm.model import kinds
from osm.model.core import Deployment, HostAlias, Pod, Service
from osm.runtime import pods


def deployment(name: str = "web", replicas: int = 2, image: str = "v1") -> Deployment:
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "command": ["python3", image],
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }
    resource = kinds.decode(manifest)
    assert isinstance(resource, Deployment)
    return resource


def service(name: str = "web", ip: str = "10.234.0.1", namespace: str = "shop") -> Service:
    resource = kinds.decode(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "clusterIP": ip,
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        }
    )
    assert isinstance(resource, Service)
    return resource


def state(name: str, template: str, ready: bool = True, created: float = 0.0) -> pods.PodState:
    return pods.PodState("shop", name, "web", template, ready, created)


def test_a_new_deployment_starts_its_replicas() -> None:
    web = deployment()
    decided = pods.plan([web], [])
    assert decided.start == (pods.NewPod("shop", "web", pods.template_hash(web)),) * 2
    assert decided.remove == ()


def test_scaling_down_removes_unready_then_newest_pods_first() -> None:
    web = deployment(replicas=1)
    current = pods.template_hash(web)
    old_ready = state("a", current, True, 1.0)
    new_ready = state("b", current, True, 2.0)
    unready = state("c", current, False, 0.5)
    decided = pods.plan([web], [old_ready, new_ready, unready])
    assert decided.start == ()
    assert {p.name for p in decided.remove} == {"b", "c"}


def test_a_changed_template_rolls_new_pods_first_then_removes_old_ones() -> None:
    before, after = deployment(image="v1"), deployment(image="v2")
    old = [state("a", pods.template_hash(before)), state("b", pods.template_hash(before))]
    first = pods.plan([after], old)
    assert len(first.start) == 2 and first.remove == ()
    new_hash = pods.template_hash(after)
    starting = [state("c", new_hash, ready=False), state("d", new_hash, ready=True)]
    assert pods.plan([after], old + starting).remove == ()  # not all new ones ready
    ready = [state("c", new_hash), state("d", new_hash)]
    assert {p.name for p in pods.plan([after], old + ready).remove} == {"a", "b"}


def test_pods_of_a_deleted_deployment_are_removed() -> None:
    decided = pods.plan([], [state("a", "x")])
    assert [p.name for p in decided.remove] == ["a"]


def test_names_fit_their_limits() -> None:
    name = pods.pod_name("x" * 80, "0123456789", "abcde")
    assert len(name) <= 63 and name.endswith("-0123456789-abcde")
    assert pods.netns_name("osm", "shop", "web-1") == "osm-shop-web-1"
    long = pods.netns_name("osm", "n" * 40, "p" * 40)
    assert len(long) <= 63 and long.startswith("osm-")


def test_hosts_have_short_names_only_in_the_services_own_namespace() -> None:
    services = [service(), service("db", "10.234.0.2", "other"), service("headless", "None")]
    entries = pods.hosts_entries(services, "shop")
    assert [(e.ip, e.names[0]) for e in entries] == [
        ("10.234.0.2", "db.other"),
        ("10.234.0.1", "web"),
    ]


def test_pods_find_the_controller_by_its_service_name() -> None:
    entries = pods.hosts_entries([service()], "shop", controller_ip="10.233.0.1")
    assert entries[0].ip == "10.233.0.1"
    assert "osm-controller.osm-system.svc.cluster.local" in entries[0].names
    assert "osm-controller" not in entries[0].names  # short names only within osm-system


def test_a_pods_host_aliases_come_last_in_its_order() -> None:
    aliases = [HostAlias("10.233.9.9", ("outside.test",)), HostAlias("10.233.9.8", ("b", "c"))]
    entries = pods.hosts_entries([service()], "shop", "10.233.0.1", aliases)
    assert [(e.ip, e.names) for e in entries[-2:]] == [
        ("10.233.9.9", ("outside.test",)),
        ("10.233.9.8", ("b", "c")),
    ]
    assert entries[0].ip == "10.233.0.1"


def report(name: str, ip: str, ready: bool) -> pods.PodReport:
    web = deployment()
    return pods.PodReport(
        namespace="shop",
        name=name,
        labels={"app": "web"},
        pod_ip=ip,
        phase="Running",
        ready=ready,
        host_ip="10.233.0.1",
        initialized=True,
        init_containers=(
            pods.ContainerStatus("osm-init", "terminated", reason="Completed", exit_code=0),
        ),
        containers=(
            pods.ContainerStatus(
                "app", "running", ready, True, 2, last_exit_code=1, last_reason="Error"
            ),
        ),
        containers_spec=web.template.spec.containers,
    )


def test_endpoints_list_ready_and_unready_addresses_with_target_ports() -> None:
    obj = pods.endpoints_object(
        service(), [report("a", "10.233.0.2", True), report("b", "10.233.0.3", False)]
    )
    assert obj is not None
    (subset,) = obj["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.233.0.2"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.233.0.3"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "appProtocol": "http"}]
    assert kinds.decode(obj).kind == "Endpoints"


def test_a_pods_status_reads_back_with_ip_readiness_and_restarts() -> None:
    web = deployment()
    manifest = pods.pod_manifest(web, "h", "web-h-abcde")
    obj = pods.with_status(manifest, pods.pod_status(report("web-h-abcde", "10.233.0.2", True)))
    pod = kinds.decode(obj)
    assert isinstance(pod, Pod)
    assert pod.pod_ip == "10.233.0.2" and pod.ready and pod.phase == "Running"
    status = obj["status"]
    assert [c["type"] for c in status["conditions"] if c["status"] == "True"] == [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
    ]
    (app,) = status["containerStatuses"]
    assert app["restartCount"] == 2 and app["state"] == {"running": {}}
    assert app["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error"}}
    (init,) = status["initContainerStatuses"]
    assert init["state"] == {"terminated": {"exitCode": 0, "reason": "Completed"}}
    assert manifest.get("status") is None  # a copy: the stored manifest is not changed


def test_a_deployments_pod_carries_its_template_and_owner() -> None:
    web = deployment()
    manifest = pods.pod_manifest(web, "h", "web-h-abcde")
    assert manifest["spec"] == web.manifest["spec"]["template"]["spec"]
    assert manifest["metadata"]["labels"] == {"app": "web", pods.TEMPLATE_HASH_LABEL: "h"}
    assert manifest["metadata"]["annotations"] == {pods.DEPLOYMENT_ANNOTATION: "web"}
    (owner,) = manifest["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Deployment", "web", True)
    pod = kinds.decode({**manifest, "metadata": {**manifest["metadata"], "uid": "u1"}})
    assert isinstance(pod, Pod)
    (owned,) = pods.owned_pods([pod], ready={})
    assert (owned.deployment, owned.template_hash, owned.ready) == ("web", "h", False)
    (owned,) = pods.owned_pods([pod], ready={("shop", "web-h-abcde"): True})
    assert owned.ready  # what the kubelet knows wins over the stored status


# -- a Deployment's status, as Kubernetes' deployment controller writes it ------------------
NOW, LATER = "2026-12-06T10:00:00Z", "2026-12-06T10:05:00Z"


def states(web: Deployment, *ready: bool, stale: int = 0) -> list[pods.PodState]:
    current = pods.template_hash(web)
    made = [pods.PodState("shop", f"web-{i}", "web", current, r) for i, r in enumerate(ready)]
    made += [pods.PodState("shop", f"old-{i}", "web", "0ld", True) for i in range(stale)]
    return made


@pytest.mark.parametrize(
    ("ready", "stale", "refusal", "counts", "available", "progressing", "failure"),
    [
        ((True, True), 0, "", (2, 2, 2), "True", "NewReplicaSetAvailable", None),
        ((True, False), 0, "", (2, 2, 1), "False", "ReplicaSetUpdated", None),  # 25% of 2 is 0
        ((False, False), 0, "", (2, 2, 0), "False", "ReplicaSetUpdated", None),
        ((True,), 1, "", (2, 1, 2), "True", "ReplicaSetUpdated", None),
        ((), 0, "pods refused: spec.x", (0, 0, 0), "False", "ReplicaSetUpdated", "FailedCreate"),
    ],
)
def test_deployment_status_counts_and_conditions(
    ready: tuple[bool, ...],
    stale: int,
    refusal: str,
    counts: tuple[int, int, int],
    available: str,
    progressing: str,
    failure: str | None,
) -> None:
    web = deployment()
    status = pods.deployment_status(web, states(web, *ready, stale=stale), refusal, NOW)
    found = (
        status.get("replicas", 0),
        status.get("updatedReplicas", 0),
        status.get("readyReplicas", 0),
    )
    assert found == counts
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Available"]["status"] == available
    assert by_type["Progressing"]["reason"] == progressing
    assert by_type.get("ReplicaFailure", {}).get("reason") == failure
    if failure:
        assert by_type["ReplicaFailure"]["message"] == refusal


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    web = deployment()
    first = pods.deployment_status(web, states(web, True, True), "", NOW)
    stored = kinds.decode({**web.manifest, "status": first})
    assert isinstance(stored, Deployment)
    again = pods.deployment_status(stored, states(stored, True, True), "", LATER)
    assert again == first  # nothing changed: no write
    down = pods.deployment_status(stored, states(stored, False, False), "", LATER)
    available = next(c for c in down["conditions"] if c["type"] == "Available")
    assert (available["status"], available["lastTransitionTime"]) == ("False", LATER)


def test_a_headless_service_resolves_to_its_ready_endpoints_and_nothing_without() -> None:
    services = [service("jaeger", "None", "osm-system"), service("idle", "None", "osm-system")]
    ready = {("osm-system", "jaeger"): ["10.233.0.7", "10.233.0.9"]}
    entries = pods.hosts_entries(services, "bookstore", headless=ready)
    assert [(e.ip, e.names) for e in entries] == [
        (ip, ("jaeger.osm-system", "jaeger.osm-system.svc", "jaeger.osm-system.svc.cluster.local"))
        for ip in ("10.233.0.7", "10.233.0.9")
    ]


@pytest.mark.parametrize(
    ("subsets", "ips"),
    [
        ([], []),
        ([{"notReadyAddresses": [{"ip": "10.0.0.2"}]}], []),
        (
            [
                {"addresses": [{"ip": "10.0.0.3"}, {"ip": "10.0.0.1"}]},
                {"addresses": [{"ip": "10.0.0.1"}], "notReadyAddresses": [{"ip": "10.0.0.4"}]},
            ],
            ["10.0.0.1", "10.0.0.3"],
        ),
    ],
    ids=["no subsets", "only not ready", "ready ones, sorted, once"],
)
def test_ready_addresses_are_an_endpoints_ready_ips(subsets: list[Any], ips: list[str]) -> None:
    assert pods.ready_addresses({"subsets": subsets}) == ips
