"""The Tables kubectl prints (`osm.apiserver.tables`): columns, cells and ages, per kind.

Cells follow kube-apiserver's printers; a pod's STATUS is checked against statuses as our
kubelet writes them (`osm.runtime.pods.pod_status`) as well as the states only Kubernetes
reaches. ``golden/tables.txt`` shows every kind as ``kubectl get -o wide`` prints it
(``UPDATE_GOLDEN=1`` rewrites it).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from osm.apiserver import resources, tables
from osm.runtime import pods
from tests.unit import golden
from tests.unit.apiserver import printing
from tests.unit.model import model_examples as ex

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)
CREATED = "2025-06-01T11:55:00Z"  # 5m before NOW


def resource(kind: str) -> resources.Resource:
    """The kind as served at its first apiVersion."""
    return next(r for r in resources.RESOURCES if r.kind == kind)


def ago(**elapsed: float) -> str:
    moment = NOW - datetime.timedelta(**elapsed)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def one(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The Table of one object, and the cells of its row by column name."""
    result = tables.table(resource(kind), [obj], now=NOW, resource_version="7")
    names = [c["name"] for c in result["columnDefinitions"]]
    return dict(zip(names, result["rows"][0]["cells"], strict=True))


# -- ages --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "printed"),
    [
        (-5, "<invalid>"),
        (-1.5, "0s"),
        (0, "0s"),
        (1.9, "1s"),
        (119, "119s"),
        (120, "2m"),
        (124, "2m4s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 25 * 60 + 9, "3h25m"),
        (8 * 3600 - 1, "7h59m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 3599, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (8 * 86400 - 1, "7d23h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (735 * 86400, "2y5d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_ages_are_printed_as_kubectl_prints_them(seconds: float, printed: str) -> None:
    assert tables.human_duration(datetime.timedelta(seconds=seconds)) == printed


@pytest.mark.parametrize(
    ("timestamp", "age"),
    [(CREATED, "5m"), ("2025-06-01T13:55:00+02:00", "5m"), ("", "<unknown>"), ("May", "<unknown>")],
)
def test_an_age_reads_rfc3339_and_is_unknown_without_a_timestamp(timestamp: str, age: str) -> None:
    assert tables.since(timestamp, NOW) == age


# -- pods -------------------------------------------------------------------------------------
def pod(
    status: dict[str, Any] | None = None,
    *,
    containers: tuple[str, ...] = ("web",),
    init: tuple[str, ...] = (),
    **metadata: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "creationTimestamp": CREATED,
            **metadata,
        },
        "spec": {
            "containers": [{"name": n, "image": "shop/web:1.0"} for n in containers],
            "initContainers": [{"name": n, "image": "osm-init"} for n in init],
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def kubelet(
    phase: str,
    *,
    init: tuple[pods.ContainerStatus, ...] = (),
    containers: tuple[pods.ContainerStatus, ...] = (),
    initialized: bool = False,
    ready: bool = False,
    reason: str = "",
) -> dict[str, Any]:
    """A pod's status exactly as our kubelet writes it."""
    report = pods.PodReport(
        namespace="shop",
        name="web-1",
        labels={},
        pod_ip="10.1.0.7",
        phase=phase,
        ready=ready,
        host_ip="192.168.7.1",
        initialized=initialized,
        init_containers=init,
        containers=containers,
        reason=reason,
    )
    return pods.pod_status(report)


C = pods.ContainerStatus
INIT_DONE = C("osm-init", "terminated", exit_code=0, reason="Completed")
SIDECAR = ("web", "envoy")


@pytest.mark.parametrize(
    ("obj", "ready", "status", "restarts"),
    [
        pytest.param(pod(), "0/1", "Pending", "0", id="stored, no status yet"),
        pytest.param(
            pod(kubelet("Pending", init=(C("osm-init", "waiting", reason="ContainerCreating"),),
                        containers=(C("web", "waiting", reason="ContainerCreating"),)),
                init=("osm-init",)),
            "0/1", "Init:ContainerCreating", "0", id="kubelet: network not ready yet",
        ),
        pytest.param(
            pod(kubelet("Pending", init=(C("osm-init", "waiting", reason="PodInitializing"),),
                        containers=(C("web", "waiting", reason="PodInitializing"),)),
                init=("osm-init",)),
            "0/1", "Init:0/1", "0", id="kubelet: init container about to run",
        ),
        pytest.param(
            pod(kubelet("Pending", init=(C("osm-init", "running", started=True),),
                        containers=(C("web", "waiting", reason="PodInitializing"),)),
                init=("osm-init",)),
            "0/1", "Init:0/1", "0", id="kubelet: init container running",
        ),
        pytest.param(
            pod(kubelet("Running", init=(INIT_DONE,), initialized=True,
                        containers=(C("web", "waiting", reason="PodInitializing"),)),
                init=("osm-init",)),
            "0/1", "PodInitializing", "0", id="kubelet: initialized, containers starting",
        ),
        pytest.param(
            pod(kubelet("Running", init=(INIT_DONE,), initialized=True, ready=True,
                        containers=(C("web", "running", ready=True, started=True),
                                    C("envoy", "running", ready=True, started=True))),
                init=("osm-init",), containers=SIDECAR),
            "2/2", "Running", "0", id="kubelet: running and ready",
        ),
        pytest.param(
            pod(kubelet("Running", initialized=True,
                        containers=(C("web", "running", ready=False, started=True, restarts=1,
                                      last_exit_code=137, last_reason="Liveness"),
                                    C("envoy", "running", ready=True, started=True)))
                , containers=SIDECAR),
            "1/2", "Running", "1", id="kubelet: restarted by its liveness probe, not ready",
        ),
        pytest.param(
            pod(kubelet("Running", initialized=True,
                        containers=(C("web", "waiting", reason="CrashLoopBackOff", restarts=3,
                                      last_exit_code=1, last_reason="Error"),))),
            "0/1", "CrashLoopBackOff", "3", id="kubelet: crash loop",
        ),
        pytest.param(
            pod(kubelet("Failed", reason="InitContainerFailed",
                        init=(C("osm-init", "terminated", exit_code=2, reason="Error"),),
                        containers=(C("web", "waiting", reason="PodInitializing"),)),
                init=("osm-init",)),
            "0/1", "Init:Error", "0", id="kubelet: init container failed",
        ),
        pytest.param(
            pod(kubelet("Pending", reason="CreateContainerConfigError",
                        containers=(C("web", "waiting", reason="ContainerCreating"),))),
            "0/1", "ContainerCreating", "0", id="kubelet: waiting for a secret",
        ),
        pytest.param(
            pod(kubelet("Succeeded", initialized=True,
                        containers=(C("web", "terminated", exit_code=0, reason="Completed"),))),
            "0/1", "Completed", "0", id="kubelet: completed",
        ),
        pytest.param(
            pod(kubelet("Running", initialized=True, ready=True,
                        containers=(C("web", "terminated", exit_code=0, reason="Completed"),
                                    C("envoy", "running", ready=True, started=True))),
                containers=SIDECAR),
            "1/2", "Running", "0", id="one container completed, another runs: Ready",
        ),
        pytest.param(
            pod(kubelet("Running", initialized=True, ready=False,
                        containers=(C("web", "terminated", exit_code=0, reason="Completed"),
                                    C("envoy", "running", ready=True, started=True))),
                containers=SIDECAR),
            "1/2", "NotReady", "0", id="one container completed, another runs: not Ready",
        ),
        pytest.param(
            pod(kubelet("Running", initialized=True, ready=True,
                        containers=(C("web", "running", ready=True, started=True),)),
                deletionTimestamp=CREATED),
            "1/1", "Terminating", "0", id="deleted, still running",
        ),
        pytest.param(
            pod(kubelet("Succeeded", initialized=True,
                        containers=(C("web", "terminated", exit_code=0, reason="Completed"),)),
                deletionTimestamp=CREATED),
            "0/1", "Completed", "0", id="deleted after completing",
        ),
        pytest.param(
            pod({"phase": "Running", "containerStatuses": [
                {"name": "web", "restartCount": 0, "state": {"terminated": {"exitCode": 137}}}]}),
            "0/1", "ExitCode:137", "0", id="terminated without a reason",
        ),
        pytest.param(
            pod({"phase": "Running", "containerStatuses": [
                {"name": "web", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
            "0/1", "Signal:9", "0", id="killed by a signal",
        ),
        pytest.param(
            pod({"phase": "Pending", "initContainerStatuses": [
                {"name": "osm-init", "state": {"terminated": {"exitCode": 3}}}]},
                init=("osm-init",)),
            "0/1", "Init:ExitCode:3", "0", id="init container exited without a reason",
        ),
        pytest.param(
            pod({"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0}}},
                {"name": "b", "state": {"running": {}}}]}, init=("a", "b")),
            "0/1", "Init:1/2", "0", id="second of two init containers",
        ),
        pytest.param(
            pod({"phase": "Running", "containerStatuses": [
                {"name": "web", "ready": True, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1,
                                              "finishedAt": "2025-06-01T11:57:00Z"}}}]}),
            "1/1", "Running", "2 (3m ago)", id="restarts say when the last one was",
        ),
        pytest.param(
            pod({"phase": "Failed", "reason": "Evicted"}),
            "0/1", "Evicted", "0", id="the pod's own reason",
        ),
        pytest.param(
            pod({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            "0/1", "SchedulingGated", "0", id="scheduling gated",
        ),
    ],
)  # fmt: skip
def test_a_pods_ready_status_and_restarts(
    obj: dict[str, Any], ready: str, status: str, restarts: str
) -> None:
    cells = one("Pod", obj)
    assert (cells["Ready"], cells["Status"], cells["Restarts"]) == (ready, status, restarts)


def test_a_sidecar_init_container_counts_among_the_pods_containers() -> None:
    obj = pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [
                {"name": "proxy", "started": True, "ready": True, "restartCount": 1,
                 "state": {"running": {}}},
            ],
            "containerStatuses": [
                {"name": "web", "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        },
        init=("proxy",),
    )  # fmt: skip
    obj["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    cells = one("Pod", obj)
    assert (cells["Ready"], cells["Status"], cells["Restarts"]) == ("2/2", "Running", "1")


def test_a_pods_wide_columns() -> None:
    obj = pod(kubelet("Running", containers=(C("web", "running", ready=True, started=True),)))
    obj["spec"]["readinessGates"] = [{"conditionType": "Ready"}, {"conditionType": "Other"}]
    cells = one("Pod", obj)
    assert [cells[c] for c in ("IP", "Node", "Nominated Node", "Readiness Gates")] == [
        "10.1.0.7",
        "<none>",
        "<none>",
        "0/2",
    ]
    assert one("Pod", pod())["IP"] == "<none>"


def test_a_finished_pods_row_carries_kubernetes_completed_condition() -> None:
    finished = pod({"phase": "Succeeded"})
    table = tables.table(resource("Pod"), [finished, pod()], now=NOW, resource_version="")
    assert table["rows"][0]["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert "conditions" not in table["rows"][1]


# -- the other built-in kinds ------------------------------------------------------------------
def service(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = {"metadata": {"name": "web", "namespace": "shop", "creationTimestamp": CREATED}}
    return {**obj, "spec": spec, **({"status": status} if status else {})}


PORTS = [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            service({"clusterIP": "10.96.0.10", "ports": [{"port": 8080}],
                     "selector": {"version": "v1", "app": "web"}}),
            ["ClusterIP", "10.96.0.10", "<none>", "8080/TCP", "app=web,version=v1"],
            id="cluster IP, protocol defaulted, selector sorted",
        ),
        pytest.param(
            service({"type": "NodePort", "clusterIPs": ["10.96.0.11"], "clusterIP": "10.96.0.11",
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
            ["NodePort", "10.96.0.11", "<none>", "80:30080/TCP", "<none>"],
            id="node port",
        ),
        pytest.param(
            service({"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": PORTS}),
            ["LoadBalancer", "10.96.0.12", "<pending>", "80/TCP,53/UDP", "<none>"],
            id="load balancer, pending",
        ),
        pytest.param(
            service({"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": PORTS,
                     "externalIPs": ["1.2.3.4"]},
                    {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "5.6.7.8"}]}}),
            ["LoadBalancer", "10.96.0.12", "5.6.7.8,lb.example,1.2.3.4", "80/TCP,53/UDP",
             "<none>"],
            id="load balancer with addresses",
        ),
        pytest.param(
            service({"type": "ExternalName", "externalName": "db.example.com"}),
            ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"],
            id="external name",
        ),
        pytest.param(
            service({"clusterIP": "None", "ports": [{"port": 80}], "externalIPs": ["1.2.3.4"]}),
            ["ClusterIP", "None", "1.2.3.4", "80/TCP", "<none>"],
            id="headless with an external IP",
        ),
    ],
)  # fmt: skip
def test_a_services_cells(obj: dict[str, Any], expected: list[str]) -> None:
    cells = one("Service", obj)
    assert [cells[c] for c in ("Type", "Cluster-IP", "External-IP", "Port(s)", "Selector")] == (
        expected
    )


def deployment(**changes: Any) -> dict[str, Any]:
    obj = yaml.safe_load(ex.DEPLOYMENT_FULL)
    obj["metadata"]["creationTimestamp"] = CREATED
    obj["spec"].update(changes.pop("spec", {}))
    obj.update(changes)
    return obj


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(deployment(), ["0/3", 0, 0], id="no status yet"),
        pytest.param(
            deployment(status={"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}),
            ["2/3", 3, 2],
            id="rolling",
        ),
        pytest.param(deployment(spec={"replicas": None}), ["0/1", 0, 0], id="replicas defaulted"),
    ],
)
def test_a_deployments_replica_cells(obj: dict[str, Any], expected: list[Any]) -> None:
    cells = one("Deployment", obj)
    assert [cells["Ready"], cells["Up-to-date"], cells["Available"]] == expected


@pytest.mark.parametrize(
    ("selector", "printed"),
    [
        ({"matchLabels": {"tier": "front", "app": "web"}}, "app=web,tier=front"),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["b", "a"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "beta", "operator": "Exists"},
                ],
            },
            "app=web,beta,!canary,env notin (dev),zone in (a,b)",
        ),
        ({}, ""),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": []}]}, "<invalid>"),
    ],
)
def test_a_deployments_selector_prints_as_a_label_selector(
    selector: dict[str, Any], printed: str
) -> None:
    assert tables.format_selector(selector) == printed


def test_a_deployments_containers_and_images() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"] = [
        {"name": "web", "image": "shop/web:2.0"},
        {"name": "envoy", "image": "envoy:1.40"},
        {"name": "no-image"},
    ]
    cells = one("Deployment", obj)
    assert (cells["Containers"], cells["Images"]) == (
        "web,envoy,no-image",
        "shop/web:2.0,envoy:1.40,",
    )


def endpoints(*subsets: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "shop"}, "subsets": list(subsets)}


def addresses(*ips: str) -> list[dict[str, str]]:
    return [{"ip": ip} for ip in ips]


@pytest.mark.parametrize(
    ("obj", "printed"),
    [
        (endpoints(), "<none>"),
        (
            endpoints({"addresses": addresses("10.1.0.7"), "ports": [{"port": 8080}]}),
            "10.1.0.7:8080",
        ),
        (
            endpoints({"notReadyAddresses": addresses("10.1.0.7"), "ports": [{"port": 8080}]}),
            "",
        ),
        (endpoints({"addresses": addresses("fd00::7"), "ports": [{"port": 80}]}), "[fd00::7]:80"),
        (
            endpoints(
                {"addresses": addresses("10.1.0.7", "10.1.0.8"),
                 "ports": [{"port": 80}, {"port": 9090}]},
                {"addresses": addresses("10.1.0.9"), "ports": [{"port": 81}]},
            ),
            "10.1.0.7:80,10.1.0.8:80,10.1.0.7:9090 + 2 more...",
        ),
        (endpoints({"addresses": addresses("10.1.0.7", "10.1.0.8")}), "10.1.0.7,10.1.0.8"),
    ],
)  # fmt: skip
def test_endpoints_print_the_first_three_ready_addresses(obj: dict[str, Any], printed: str) -> None:
    assert one("Endpoints", obj)["Endpoints"] == printed


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        ("Namespace", {"metadata": {"name": "shop"}}, {"Status": "Active"}),
        ("Namespace", {"metadata": {"name": "shop"}, "status": {"phase": "Terminating"}},
         {"Status": "Terminating"}),
        ("Namespace", {"metadata": {"name": "shop", "deletionTimestamp": CREATED}},
         {"Status": "Terminating"}),
        ("Secret", yaml.safe_load(ex.SECRET), {"Type": "Opaque", "Data": 3}),
        ("Secret", {"metadata": {"name": "s"}, "type": "kubernetes.io/tls",
                    "data": {"tls.crt": "", "tls.key": ""}},
         {"Type": "kubernetes.io/tls", "Data": 2}),
        ("Secret", {"metadata": {"name": "s"}}, {"Type": "Opaque", "Data": 0}),
        ("ConfigMap", yaml.safe_load(ex.CONFIG_MAP), {"Data": 3}),
        ("ServiceAccount", yaml.safe_load(ex.SERVICE_ACCOUNT), {"Secrets": 0}),
        ("ServiceAccount", {"metadata": {"name": "a"}, "secrets": [{"name": "a-token"}]},
         {"Secrets": 1}),
    ],
)  # fmt: skip
def test_cells_of_the_small_kinds(kind: str, obj: dict[str, Any], expected: dict[str, Any]) -> None:
    cells = one(kind, obj)
    assert {name: cells[name] for name in expected} == expected


# -- the mesh's own kinds -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (ex.TRAFFIC_TARGET, {"Destination": "web", "Sources": "shoppers/client,shop/admin",
                             "Rules": "HTTPRouteGroup/web-api,HTTPRouteGroup/web-api,"
                                      "TCPRoute/web-port"}),
        (ex.HTTP_ROUTE_GROUP_LIST_HEADERS, {"Matches": "read-only,beta"}),
        (ex.TCP_ROUTE_PORTS, {"Ports": "8080,9090"}),
        (ex.TCP_ROUTE_ALL_PORTS, {"Ports": "<all>"}),
        (ex.TRAFFIC_SPLIT_V1ALPHA2, {"Service": "web", "Backends": "web-v1:90,web-v2:10",
                                     "Matches": "<all>"}),
        (ex.TRAFFIC_SPLIT_V1ALPHA4, {"Service": "web.shop.svc.cluster.local",
                                     "Backends": "web-v1:0,web-v2:1", "Matches": "web-api"}),
        (ex.MESH_CONFIG_EMPTY, {"Mode": "permissive", "Egress": "true",
                                "Cert-Validity": "24h0m0s"}),
        (ex.MESH_CONFIG_FULL, {"Mode": "smi", "Egress": "false", "Cert-Validity": "1h30m0s"}),
    ],
)  # fmt: skip
def test_cells_of_the_meshs_own_kinds(example: str, expected: dict[str, str]) -> None:
    obj = yaml.safe_load(example)
    cells = one(obj["kind"], obj)
    assert {name: cells[name] for name in expected} == expected


# -- the Table itself ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "columns", "wide"),
    [
        ("Pod", "NAME READY STATUS RESTARTS AGE", "IP NODE NOMINATED-NODE READINESS-GATES"),
        ("Deployment", "NAME READY UP-TO-DATE AVAILABLE AGE", "CONTAINERS IMAGES SELECTOR"),
        ("Service", "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE", "SELECTOR"),
        ("Namespace", "NAME STATUS AGE", ""),
        ("Endpoints", "NAME ENDPOINTS AGE", ""),
        ("Secret", "NAME TYPE DATA AGE", ""),
        ("ConfigMap", "NAME DATA AGE", ""),
        ("ServiceAccount", "NAME SECRETS AGE", ""),
        ("TrafficTarget", "NAME DESTINATION AGE", "SOURCES RULES"),
        ("HTTPRouteGroup", "NAME MATCHES AGE", ""),
        ("TCPRoute", "NAME PORTS AGE", ""),
        ("TrafficSplit", "NAME SERVICE AGE", "BACKENDS MATCHES"),
        ("MeshConfig", "NAME MODE EGRESS AGE", "CERT-VALIDITY"),
    ],
)
def test_the_columns_kubectl_users_know(kind: str, columns: str, wide: str) -> None:
    definitions = tables.table(resource(kind), [], now=NOW, resource_version="1")[
        "columnDefinitions"
    ]

    def names(priority: int) -> str:
        shown = [d["name"] for d in definitions if d["priority"] == priority]
        return " ".join(name.upper().replace(" ", "-") for name in shown)

    assert (names(0), names(1)) == (columns, wide)
    assert definitions[0]["format"] == "name"
    assert all(d["description"] and d["type"] in ("string", "integer") for d in definitions)


def test_every_served_kind_has_its_own_columns() -> None:
    assert {r.kind for r in resources.RESOURCES} == set(tables.COLUMNS)


def test_a_table_is_a_meta_v1_table_whose_rows_carry_the_objects_metadata() -> None:
    obj = pod(labels={"app": "web"})
    table = tables.table(resource("Pod"), [obj], now=NOW, resource_version="42")
    assert (table["kind"], table["apiVersion"], table["metadata"]) == (
        "Table",
        "meta.k8s.io/v1",
        {"resourceVersion": "42"},
    )
    assert table["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }
    table["rows"][0]["object"]["metadata"]["labels"]["app"] = "changed"
    assert obj["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"metadata": None, "spec": "x", "status": []},
        {"metadata": {"name": 5}, "spec": {"containers": "x", "ports": [None, 3]}},
        {"spec": {"backends": [{"weight": "1"}], "matches": {"ports": ["a"]}},
         "status": {"containerStatuses": [{"state": {"waiting": None}}]}},
    ],
)  # fmt: skip
def test_an_unexpected_stored_object_prints_rather_than_fails(broken: dict[str, Any]) -> None:
    for kind in tables.COLUMNS:
        table = tables.table(resource(kind), [broken], now=NOW, resource_version="1")
        assert len(table["rows"][0]["cells"]) == len(table["columnDefinitions"])


# -- every kind as kubectl prints it ---------------------------------------------------------------
def _examples() -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for name, text in ex.VALID.items():
        obj = yaml.safe_load(text)
        obj["metadata"]["creationTimestamp"] = ago(hours=3, minutes=25)
        obj["metadata"]["name"] = name.replace(" ", "-")
        by_kind.setdefault(obj["kind"], []).append(obj)
    running = pod(
        kubelet("Running", init=(INIT_DONE,), initialized=True, ready=True,
                containers=(C("web", "running", ready=True, started=True),
                            C("envoy", "running", ready=True, started=True))),
        init=("osm-init",), containers=SIDECAR, name="bookstore-v1-5d8f7c9b4-x2x7q",
    )  # fmt: skip
    by_kind["Pod"] += [running, pod(name="web-new", creationTimestamp=ago(seconds=4))]
    return by_kind


def test_every_kind_prints_as_in_the_golden_file() -> None:
    sections = []
    for kind, objects in _examples().items():
        table = tables.table(resource(kind), objects, now=NOW, resource_version="1")
        sections.append(
            f"$ kubectl get {kind.lower()} -o wide\n" + printing.kubectl_get(table, wide=True)
        )
    golden.compare(GOLDEN / "tables.txt", "\n".join(sections))
