"""The machine's kubectl against local mode's real API server, with default flags.

What a user of local mode does with kubectl, and what they read: the server is
`osm.apiserver.local.start` over a SQLite store with the controller's admission chain (the
sidecar injector, then the model's validation); kubectl gets only ``--kubeconfig`` (the
admin's, written by the server). Every assertion is on kubectl's exit code, stdout and
stderr as printed; tables are compared cell by cell with AGE cells written ``<age>``. The
demo is the bookstore's manifests (``demo/bookstore/manifests``, namespaces enrolled for
injection) plus one Pod, which admission injects.

A test marked ``xfail(strict=True)`` shows a server bug or gap by its exact symptom (the
reason says what kubectl printed); it fails loudly once the server is fixed.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from osm.apiserver import auth
from osm.base import wellknown
from tests.kubectl_harness import Cluster, Kubectl, ages_hidden, cluster, columns, needs_kubectl

pytestmark = [
    needs_kubectl,
    pytest.mark.timeout(120),
]

DEMO = Path(__file__).resolve().parents[2] / "demo" / "bookstore" / "manifests"
MONITORED_BY = wellknown.MONITORED_BY_LABEL
NAME_LABEL = wellknown.NAMESPACE_NAME_LABEL
INJECTION = wellknown.SIDECAR_INJECTION_ANNOTATION
POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: bookstore-v1-0
  namespace: bookstore
  labels: {app: bookstore, version: v1}
spec:
  serviceAccountName: bookstore
  containers:
  - name: bookstore
    image: bookstore:v1
    command: [python3, -m, osm.demo.bookstore, bookstore]
    ports: [{name: http, containerPort: 14001}]
"""
CREATED = [
    "namespace/bookstore created",
    "namespace/bookbuyer created",
    "namespace/bookthief created",
    "namespace/bookwarehouse created",
    "serviceaccount/bookstore created",
    "service/bookstore created",
    "service/bookstore-v1 created",
    "service/bookstore-v2 created",
    "deployment.apps/bookstore-v1 created",
    "deployment.apps/bookstore-v2 created",
    "serviceaccount/bookbuyer created",
    "deployment.apps/bookbuyer created",
    "serviceaccount/bookthief created",
    "deployment.apps/bookthief created",
    "serviceaccount/bookwarehouse created",
    "service/bookwarehouse created",
    "deployment.apps/bookwarehouse created",
    "trafficsplit.split.smi-spec.io/bookstore-split created",
    "httproutegroup.specs.smi-spec.io/bookstore-service-routes created",
    "traffictarget.access.smi-spec.io/bookbuyer-access-bookstore created",
    "httproutegroup.specs.smi-spec.io/bookwarehouse-service-routes created",
    "traffictarget.access.smi-spec.io/bookstore-access-bookwarehouse created",
    "namespace/osm-system created",
    "meshconfig.config.openservicemesh.io/osm-mesh-config created",
]
EVERY_KIND = "ns,sa,svc,deploy,po,secret,ts,htr,tt,mc"


def cells(text: str) -> list[list[str]]:
    """A table as kubectl printed it (or as written in a test), cell by cell."""
    return columns(ages_hidden(text))


READ_ONLY = pytest.mark.asyncio(loop_scope="module")
"""A test that only reads runs in the module's event loop, where `shared` serves."""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """The demo and its Pod's logs, one server for every `READ_ONLY` test (which must
    change nothing)."""
    async with cluster(tmp_path_factory.mktemp("shared")) as running:
        await _apply_demo(running)
        _write_logs(running)
        yield running


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path) as running:
        yield running


@pytest.fixture
async def demo(local: Cluster) -> Cluster:
    """The bookstore demo applied, and one Pod of bookstore-v1 (injected): a test's own."""
    await _apply_demo(local)
    return local


async def _apply_demo(local: Cluster) -> None:
    (await local.run(f"apply -f {DEMO}")).ok()
    (await local.run("apply -f -", stdin=POD)).ok()


def _write_logs(local: Cluster) -> None:
    """The demo Pod's logs of its app and its sidecar (none yet of its init container)."""
    local.write_log("bookstore", "bookstore-v1-0", "bookstore", "one\ntwo\nthree\n")
    local.write_log("bookstore", "bookstore-v1-0", "envoy", "[info] envoy started\n")


async def resource_versions(local: Cluster) -> dict[str, str]:
    """Every object's resourceVersion, by ``kind/namespace/name``."""
    listed = json.loads((await local.run(f"get {EVERY_KIND} -A -o json")).ok())
    versions = {}
    for obj in listed["items"]:
        metadata = obj["metadata"]
        key = f"{obj['kind']}/{metadata.get('namespace', '')}/{metadata['name']}"
        versions[key] = metadata["resourceVersion"]
    return versions


# -- apply --------------------------------------------------------------------------------
async def test_apply_of_the_demo_creates_every_object_in_file_order(local: Cluster) -> None:
    run = await local.run(f"apply -f {DEMO}")
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == CREATED


async def test_a_pod_applied_in_an_enrolled_namespace_gets_its_sidecar_and_secret(
    local: Cluster,
) -> None:
    (await local.run(f"apply -f {DEMO / '00-namespaces.yaml'}")).ok()

    assert (await local.run("apply -f -", stdin=POD)).ok() == "pod/bookstore-v1-0 created\n"

    pod = json.loads((await local.run("get pod bookstore-v1-0 -n bookstore -o json")).ok())
    assert [c["name"] for c in pod["spec"]["containers"]] == ["bookstore", "envoy"]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["osm-init"]
    proxy_uuid = pod["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
    secrets = (await local.run("get secrets -n bookstore -o name")).ok()
    assert secrets == f"secret/envoy-bootstrap-config-{proxy_uuid}\n"
    assert cells((await local.run("get pods -n bookstore")).ok()) == [
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ["bookstore-v1-0", "0/2", "Pending", "0", "<age>"],
    ]


Change = Callable[[str], str]


def _replace(old: str, new: str) -> Change:
    def change(text: str) -> str:
        assert old in text, f"the demo no longer has {old!r}"
        return text.replace(old, new)

    return change


CONTAINER = "      - name: bookstore\n"
REAPPLIES = [
    pytest.param(
        "10-bookstore.yaml",
        _replace("replicas: 1", "replicas: 3"),
        ["deployment.apps/bookstore-v1", "deployment.apps/bookstore-v2"],
        "get deploy bookstore-v1 -n bookstore -o jsonpath={.spec.replicas}",
        "3",
        id="deployment replicas",
    ),
    pytest.param(
        "10-bookstore.yaml",
        _replace(CONTAINER, CONTAINER + "        image: bookstore:v2\n"),
        ["deployment.apps/bookstore-v1", "deployment.apps/bookstore-v2"],
        "get deploy bookstore-v1 -n bookstore -o 'jsonpath="
        "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].command}'",
        'bookstore:v2 ["python3","-m","osm.demo.bookstore","bookstore"]',
        id="deployment image",
    ),
    pytest.param(
        "40-policy.yaml",
        _replace(
            "weight: 50}\n  - {service: bookstore-v2, weight: 50}",
            "weight: 90}\n  - {service: bookstore-v2, weight: 10}",
        ),
        ["trafficsplit.split.smi-spec.io/bookstore-split"],
        "get ts bookstore-split -n bookstore -o jsonpath={.spec.backends[*].weight}",
        "90 10",
        id="trafficsplit weights",
    ),
]


@pytest.mark.parametrize(("file", "change", "configured", "get", "shown"), REAPPLIES)
async def test_a_reapply_with_a_change_configures_what_changed_and_nothing_else(
    demo: Cluster,
    tmp_path: Path,
    file: str,
    change: Change,
    configured: list[str],
    get: str,
    shown: str,
) -> None:
    before = await resource_versions(demo)
    path = tmp_path / file
    path.write_text(change((DEMO / file).read_text()))

    run = await demo.run(f"apply -f {path}")

    assert (run.code, run.err) == (0, "")
    outcome = dict(line.rsplit(" ", 1) for line in run.out.splitlines())
    assert {name for name, verb in outcome.items() if verb == "configured"} == set(configured)
    assert {verb for name, verb in outcome.items() if name not in configured} == {"unchanged"}
    assert (await demo.run(get)).ok() == shown
    after = await resource_versions(demo)
    assert len([key for key, rv in before.items() if after[key] != rv]) == len(configured)


async def test_an_unchanged_file_applied_again_is_unchanged_with_the_same_versions(
    demo: Cluster,
) -> None:
    before = await resource_versions(demo)
    rv = demo.store.resource_version

    run = await demo.run(f"apply -f {DEMO}")

    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [line.replace(" created", " unchanged") for line in CREATED]
    assert await resource_versions(demo) == before
    assert demo.store.resource_version == rv


# -- get ----------------------------------------------------------------------------------
GETS = [
    pytest.param(
        "get ts -n bookstore",
        """
        NAME              SERVICE     AGE
        bookstore-split   bookstore   <age>
        """,
        id="table",
    ),
    pytest.param(
        "get ts -n bookstore -o wide",
        """
        NAME              SERVICE     AGE     BACKENDS                          MATCHES
        bookstore-split   bookstore   <age>   bookstore-v1:50,bookstore-v2:50   <all>
        """,
        id="wide, custom kind",
    ),
    pytest.param(
        "get po -n bookstore -o wide",
        """
        NAME            READY  STATUS   RESTARTS  AGE    IP      NODE    NOMINATED NODE  READINESS GATES
        bookstore-v1-0  0/2    Pending  0         <age>  <none>  <none>  <none>          <none>
        """,  # noqa: E501
        id="wide, pods",
    ),
    pytest.param(
        "get svc -A",
        """
        NAMESPACE       NAME            TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)     AGE
        bookstore       bookstore       ClusterIP   10.234.0.1   <none>        14001/TCP   <age>
        bookstore       bookstore-v1    ClusterIP   10.234.0.2   <none>        14001/TCP   <age>
        bookstore       bookstore-v2    ClusterIP   10.234.0.3   <none>        14001/TCP   <age>
        bookwarehouse   bookwarehouse   ClusterIP   10.234.0.4   <none>        14001/TCP   <age>
        """,
        id="all namespaces",
    ),
    pytest.param(
        "get tt -A -o wide",
        """
        NAMESPACE      NAME                            DESTINATION    AGE    SOURCES              RULES
        bookstore      bookbuyer-access-bookstore      bookstore      <age>  bookbuyer/bookbuyer  HTTPRouteGroup/bookstore-service-routes
        bookwarehouse  bookstore-access-bookwarehouse  bookwarehouse  <age>  bookstore/bookstore  HTTPRouteGroup/bookwarehouse-service-routes
        """,  # noqa: E501
        id="wide, all namespaces",
    ),
    pytest.param(
        "get svc -A -l app=bookstore,version!=v9 -o name",
        """
        service/bookstore
        service/bookstore-v1
        service/bookstore-v2
        """,
        id="label selector",
    ),
    pytest.param(  # kube-apiserver labels every Namespace with its name
        f"get ns -l {MONITORED_BY}=osm --show-labels",
        f"""
        NAME            STATUS   AGE     LABELS
        bookbuyer       Active   <age>   {NAME_LABEL}=bookbuyer,{MONITORED_BY}=osm
        bookstore       Active   <age>   {NAME_LABEL}=bookstore,{MONITORED_BY}=osm
        bookthief       Active   <age>   {NAME_LABEL}=bookthief,{MONITORED_BY}=osm
        bookwarehouse   Active   <age>   {NAME_LABEL}=bookwarehouse,{MONITORED_BY}=osm
        """,
        id="show labels",
    ),
    pytest.param(
        "get sa,svc,ts -n bookstore -o name",
        """
        serviceaccount/bookstore
        service/bookstore
        service/bookstore-v1
        service/bookstore-v2
        trafficsplit.split.smi-spec.io/bookstore-split
        """,
        id="name",
    ),
    pytest.param(
        "get mc -n osm-system",
        """
        NAME              MODE         EGRESS   AGE
        osm-mesh-config   permissive   false    <age>
        """,
        id="meshconfig",
    ),
    pytest.param(
        "get ts bookstore-split -n bookstore -o jsonpath={.spec.backends[*].service}",
        "bookstore-v1 bookstore-v2",
        id="jsonpath",
    ),
]


@pytest.mark.parametrize(("command", "printed"), GETS)
@READ_ONLY
async def test_get_prints(shared: Cluster, command: str, printed: str) -> None:
    run = await shared.run(command)
    assert (run.code, run.err) == (0, "")
    assert cells(run.out) == cells(printed)


@pytest.mark.parametrize("output", ["yaml", "json"])
@READ_ONLY
async def test_get_one_object_as_yaml_or_json_is_the_stored_object(
    shared: Cluster, output: str
) -> None:
    obj = yaml.safe_load(
        (await shared.run(f"get ts bookstore-split -n bookstore -o {output}")).ok()
    )
    manifest = next(
        doc
        for doc in yaml.safe_load_all((DEMO / "40-policy.yaml").read_text())
        if doc["kind"] == "TrafficSplit"
    )
    # served at the preferred version, which kubectl asks for
    assert (obj["apiVersion"], obj["kind"]) == ("split.smi-spec.io/v1alpha4", "TrafficSplit")
    assert obj["spec"] == manifest["spec"]
    metadata = obj["metadata"]
    assert (metadata["name"], metadata["namespace"], metadata["generation"]) == (
        "bookstore-split",
        "bookstore",
        1,
    )
    assert metadata["uid"] and metadata["creationTimestamp"] and metadata["resourceVersion"]
    applied = metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(applied)["spec"] == manifest["spec"]


@pytest.mark.parametrize("output", ["yaml", "json"])
@READ_ONLY
async def test_get_a_collection_as_yaml_or_json_is_a_list(shared: Cluster, output: str) -> None:
    listed = yaml.safe_load((await shared.run(f"get deploy -A -o {output}")).ok())
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in listed["items"]] == [
        ("bookbuyer", "bookbuyer"),
        ("bookstore", "bookstore-v1"),
        ("bookstore", "bookstore-v2"),
        ("bookthief", "bookthief"),
        ("bookwarehouse", "bookwarehouse"),
    ]
    assert {d["kind"] for d in listed["items"]} == {"Deployment"}


@READ_ONLY
async def test_get_of_a_missing_object_is_not_found(shared: Cluster) -> None:
    run = await shared.run("get ts nope -n bookstore")
    assert (run.code, run.out, run.err) == (
        1,
        "",
        'Error from server (NotFound): trafficsplits.split.smi-spec.io "nope" not found\n',
    )


# -- get -w -------------------------------------------------------------------------------
WATCHES = [
    pytest.param(
        "get ts -n bookstore -o wide -w",
        'patch ts bookstore-split -n bookstore --type merge -p \'{"spec":{"backends":['
        '{"service":"bookstore-v1","weight":90},{"service":"bookstore-v2","weight":10}]}}\'',
        "bookstore-split  bookstore  <age>  bookstore-v1:90,bookstore-v2:10  <all>",
        id="modified",
    ),
    pytest.param(
        "get pods -n bookstore -w",
        "run reader -n bookstore --image reader:v1",
        "reader  0/2  Pending  0  <age>",
        id="added",
    ),
    pytest.param(
        "get htr -n bookstore -w --output-watch-events",
        "delete htr bookstore-service-routes -n bookstore",
        "DELETED  bookstore-service-routes  books-bought,buy-a-book  <age>",
        id="deleted",
    ),
]


@pytest.mark.parametrize(("watch", "change", "row"), WATCHES)
async def test_get_w_prints_a_row_per_change(
    demo: Cluster, watch: str, change: str, row: str
) -> None:
    watching = await demo.start(watch)
    try:
        await watching.line()  # the header
        await watching.line()  # the object as it is
        (await demo.run(change)).ok()
        assert cells(await watching.line()) == cells(row)
    finally:
        stopped = await watching.stop()
    assert stopped.err == ""


# -- delete -------------------------------------------------------------------------------
async def test_delete_f_of_files_that_list_the_namespaces_first_deletes_everything(
    demo: Cluster,
) -> None:
    (await demo.run("delete pod bookstore-v1-0 -n bookstore")).ok()

    run = await demo.run(f"delete -f {DEMO}")

    assert (run.code, run.err) == (0, "")
    deleted = [line.replace("/", ' "', 1).replace(" created", '" deleted') for line in CREATED]
    assert run.out.splitlines() == deleted
    assert (await demo.run(f"get {EVERY_KIND} -A")).err == "No resources found\n"


async def test_delete_f_deletes_every_object_of_a_file(demo: Cluster) -> None:
    run = await demo.run(f"delete -f {DEMO / '40-policy.yaml'}")
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [
        'trafficsplit.split.smi-spec.io "bookstore-split" deleted',
        'httproutegroup.specs.smi-spec.io "bookstore-service-routes" deleted',
        'traffictarget.access.smi-spec.io "bookbuyer-access-bookstore" deleted',
        'httproutegroup.specs.smi-spec.io "bookwarehouse-service-routes" deleted',
        'traffictarget.access.smi-spec.io "bookstore-access-bookwarehouse" deleted',
    ]
    run = await demo.run("get ts,htr,tt -A")
    assert (run.code, run.out, run.err) == (0, "", "No resources found\n")


async def test_a_deleted_pod_takes_its_bootstrap_secret_along(demo: Cluster) -> None:
    run = await demo.run("delete pod bookstore-v1-0 -n bookstore")
    assert run.ok() == 'pod "bookstore-v1-0" deleted\n'
    run = await demo.run("get secrets -n bookstore")
    assert (run.code, run.err) == (0, "No resources found in bookstore namespace.\n")


async def test_a_deleted_namespace_goes_terminating_then_is_gone_with_its_content(
    demo: Cluster,
) -> None:
    watching = await demo.start("get ns bookstore -w --output-watch-events")
    try:
        assert cells(await watching.line()) == [["EVENT", "NAME", "STATUS", "AGE"]]
        assert cells(await watching.line()) == [["ADDED", "bookstore", "Active", "<age>"]]
        run = await demo.run("delete namespace bookstore")
        assert run.ok() == 'namespace "bookstore" deleted\n'
        seen = [cells(await watching.line())[0] for _ in range(2)]
    finally:
        await watching.stop()
    assert seen == [
        ["MODIFIED", "bookstore", "Terminating", "<age>"],
        ["DELETED", "bookstore", "Terminating", "<age>"],
    ]
    run = await demo.run("get ns bookstore")
    assert run.err == 'Error from server (NotFound): namespaces "bookstore" not found\n'
    run = await demo.run("get po,svc,ts,secrets,sa -n bookstore")
    assert (run.code, run.err) == (0, "No resources found in bookstore namespace.\n")


# -- label, annotate ----------------------------------------------------------------------
METADATA_CHANGES = [
    pytest.param(
        "label ns bookstore team=books",
        "namespace/bookstore labeled",
        "get ns bookstore -o jsonpath={.metadata.labels.team}",
        "books",
        id="label",
    ),
    pytest.param(
        f"label ns bookstore {MONITORED_BY}-",
        "namespace/bookstore unlabeled",
        f"get ns -l {MONITORED_BY} -o name",
        "namespace/bookbuyer\nnamespace/bookthief\nnamespace/bookwarehouse\n",
        id="remove a label",
    ),
    pytest.param(
        "label ts bookstore-split -n bookstore tier=edge",
        "trafficsplit.split.smi-spec.io/bookstore-split labeled",
        "get ts -n bookstore -l tier=edge -o name",
        "trafficsplit.split.smi-spec.io/bookstore-split\n",
        id="label a custom kind",
    ),
    pytest.param(
        f"annotate ns bookstore {INJECTION}=disabled --overwrite",
        "namespace/bookstore annotated",
        "get ns bookstore -o jsonpath={.metadata.annotations."
        + INJECTION.replace(".", "\\\\.")
        + "}",
        "disabled",
        id="annotate",
    ),
    pytest.param(
        "annotate deploy bookstore-v1 -n bookstore owner=books",
        "deployment.apps/bookstore-v1 annotated",
        "get deploy bookstore-v1 -n bookstore -o jsonpath={.metadata.annotations.owner}",
        "books",
        id="annotate a deployment",
    ),
]


@pytest.mark.parametrize(("command", "printed", "get", "shown"), METADATA_CHANGES)
async def test_label_and_annotate(
    demo: Cluster, command: str, printed: str, get: str, shown: str
) -> None:
    run = await demo.run(command)
    assert (run.code, run.out, run.err) == (0, printed + "\n", "")
    assert (await demo.run(get)).ok() == shown


async def test_label_without_overwrite_keeps_the_value(demo: Cluster) -> None:
    run = await demo.run(f"label ns bookstore {MONITORED_BY}=another-mesh")
    assert (run.code, run.err) == (
        1,
        f"error: '{MONITORED_BY}' already has a value (osm), and --overwrite is false\n",
    )


# -- patch --------------------------------------------------------------------------------
PATCHES = [
    pytest.param(
        "patch ts bookstore-split --type merge "
        """-p '{"spec":{"backends":[{"service":"bookstore-v1","weight":1}]}}'""",
        "trafficsplit.split.smi-spec.io/bookstore-split patched",
        "get ts bookstore-split -o jsonpath={.spec.backends}",
        '[{"service":"bookstore-v1","weight":1}]',
        id="merge",
    ),
    pytest.param(
        """patch deploy bookstore-v1 --type json -p '["""
        """{"op":"replace","path":"/spec/replicas","value":4},"""
        """{"op":"add","path":"/metadata/labels","value":{"tier":"web"}}]'""",
        "deployment.apps/bookstore-v1 patched",
        "get deploy bookstore-v1 -o 'jsonpath={.spec.replicas} {.metadata.labels}'",
        '4 {"tier":"web"}',
        id="json",
    ),
    pytest.param(
        "patch deploy bookstore-v1 --type strategic -p "
        """'{"spec":{"template":{"spec":{"containers":[{"name":"bookstore","image":"b:v3"}]}}}}'""",
        "deployment.apps/bookstore-v1 patched",
        "get deploy bookstore-v1 -o 'jsonpath={.spec.template.spec.containers[0].image} "
        "{.spec.template.spec.containers[0].env[0].value}'",
        "b:v3 bookstore-v1",
        id="strategic",
    ),
    pytest.param(
        "patch pod bookstore-v1-0 -p "  # kubectl's default type: strategic
        """'{"spec":{"containers":[{"name":"bookstore","image":"bookstore:v2"}]}}'""",
        "pod/bookstore-v1-0 patched",
        "get pod bookstore-v1-0 -o "
        "'jsonpath={.spec.containers[*].name}={.spec.containers[0].image}'",
        "bookstore envoy=bookstore:v2",
        id="strategic by default, a pod's image",
    ),
]


@pytest.mark.parametrize(("command", "printed", "get", "shown"), PATCHES)
async def test_patch(demo: Cluster, command: str, printed: str, get: str, shown: str) -> None:
    run = await demo.run(command + " -n bookstore")
    assert (run.code, run.out, run.err) == (0, printed + "\n", "")
    assert (await demo.run(get + " -n bookstore")).ok() == shown


async def test_a_strategic_patch_of_a_custom_kind_is_an_unsupported_media_type(
    demo: Cluster,
) -> None:
    run = await demo.run("""patch ts bookstore-split -n bookstore -p '{"spec":{"service":"x"}}'""")
    assert (run.code, run.out) == (1, "")
    # kubectl turns the 415 into its own words, followed by the server's message.
    assert run.err.startswith(
        "error: application/strategic-merge-patch+json is not supported by "
        "split.smi-spec.io/v1alpha4, Kind=TrafficSplit: strategic merge patch is not supported"
    )


async def test_a_patch_that_makes_an_object_invalid_is_refused_with_the_field(
    demo: Cluster,
) -> None:
    rv = demo.store.resource_version
    run = await demo.run(
        "patch ts bookstore-split -n bookstore --type json "
        """-p '[{"op":"replace","path":"/spec/backends/0/weight","value":-1}]'"""
    )
    assert (run.code, run.out, run.err) == (
        1,
        "",
        'The TrafficSplit "bookstore-split" is invalid: spec.backends[0].weight: -1 is out of '
        "range; expected an integer from 0 to 2147483647\n",
    )
    assert demo.store.resource_version == rv


# -- logs ---------------------------------------------------------------------------------
@pytest.fixture
async def logged(demo: Cluster) -> Cluster:
    """The demo with its Pod's logs: a test's own."""
    _write_logs(demo)
    return demo


DEFAULTED = 'Defaulted container "bookstore" out of: bookstore, envoy, osm-init (init)\n'
LOGS = [
    pytest.param("", 0, "one\ntwo\nthree\n", DEFAULTED, id="the first container"),
    pytest.param("--tail 2", 0, "two\nthree\n", DEFAULTED, id="tail"),
    pytest.param("-c envoy", 0, "[info] envoy started\n", "", id="a container"),
    pytest.param(
        "-c osm-init",
        1,
        "",
        'Error from server (BadRequest): container "osm-init" in pod "bookstore-v1-0" is '
        "waiting to start: ContainerCreating\n",
        id="a container without a log yet",
    ),
    pytest.param(
        "-c nope",
        1,
        "",
        "error: container nope is not valid for pod bookstore-v1-0\n",
        id="no such container",
    ),
]


@pytest.mark.parametrize(("flags", "code", "out", "err"), LOGS)
@READ_ONLY
async def test_logs(shared: Cluster, flags: str, code: int, out: str, err: str) -> None:
    run = await shared.run(f"logs bookstore-v1-0 -n bookstore {flags}")
    assert (run.code, run.out, run.err) == (code, out, err)


@READ_ONLY
async def test_logs_without_a_container_of_a_multi_container_pod_say_which_there_are(
    shared: Cluster,
) -> None:
    """kubectl 1.32 always names a container; older kubectls (Debian's 1.20) do not, and
    print the server's answer: asked here as they ask it."""
    run = await shared.run("get --raw /api/v1/namespaces/bookstore/pods/bookstore-v1-0/log")
    assert (run.code, run.out, run.err) == (
        1,
        "",
        "Error from server (BadRequest): a container name must be specified for pod "
        "bookstore-v1-0, choose one of: [bookstore envoy] or one of the init containers: "
        "[osm-init]\n",
    )


async def test_logs_f_follows_what_the_kubelet_appends(logged: Cluster) -> None:
    watching = await logged.start("logs -f bookstore-v1-0 -n bookstore -c bookstore")
    try:
        assert [await watching.line() for _ in range(3)] == ["one", "two", "three"]
        path = logged.state_dir / "logs" / "bookstore" / "bookstore-v1-0" / "bookstore.log"
        with path.open("a") as log:
            log.write("four\n")
        assert await watching.line() == "four"
    finally:
        await watching.stop()


# -- discovery and schemas ----------------------------------------------------------------
API_RESOURCES = """
    NAME              SHORTNAMES   APIVERSION                           NAMESPACED   KIND
    namespaces        ns           v1                                   false        Namespace
    pods              po           v1                                   true         Pod
    services          svc          v1                                   true         Service
    traffictargets    tt           access.smi-spec.io/v1alpha3          true         TrafficTarget
    deployments       deploy       apps/v1                              true         Deployment
    meshconfigs       mc           config.openservicemesh.io/v1alpha2   true         MeshConfig
    httproutegroups   htr          specs.smi-spec.io/v1alpha4           true         HTTPRouteGroup
    tcproutes         tr           specs.smi-spec.io/v1alpha4           true         TCPRoute
    trafficsplits     ts           split.smi-spec.io/v1alpha4           true         TrafficSplit
"""


@READ_ONLY
async def test_api_resources_lists_our_kinds_with_their_short_names(shared: Cluster) -> None:
    run = await shared.run("api-resources")
    assert (run.code, run.err) == (0, "")
    printed = cells(run.out)
    expected = cells(API_RESOURCES)
    assert printed[0] == expected[0]
    assert [row for row in printed if row in expected[1:]] == expected[1:]


@READ_ONLY
async def test_short_names_name_the_same_objects(shared: Cluster) -> None:
    long = (await shared.run("get trafficsplits.split.smi-spec.io,serviceaccounts -A -o name")).ok()
    assert (await shared.run("get ts,sa -A -o name")).ok() == long


@READ_ONLY
async def test_explain_a_custom_kinds_field(shared: Cluster) -> None:
    run = await shared.run("explain trafficsplit.spec")
    assert (run.code, run.err) == (0, "")
    assert run.out.startswith(
        "GROUP:      split.smi-spec.io\nKIND:       TrafficSplit\nVERSION:    v1alpha4\n"
    )
    fields = [
        line.split()
        for line in run.out.splitlines()
        if line.startswith("  ") and not line.startswith("    ")  # not the descriptions
    ]
    assert fields == [
        ["backends", "<[]Object>", "-required-"],
        ["matches", "<[]Object>"],
        ["service", "<string>", "-required-"],
    ]


# -- errors -------------------------------------------------------------------------------
BAD = """\
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: bad-split, namespace: bookstore}
spec:
  backends: [{service: bookstore-v1, weight: -5}, {service: bookstore-v1, weight: 1}]
---
apiVersion: v1
kind: Service
metadata: {name: bad-service, namespace: bookstore}
spec:
  ports: [{name: http, port: 0}, {name: grpc, port: 80, protocol: SCTPX}]
---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: bad-target, namespace: bookstore}
spec:
  destination: {kind: ServiceAccount, name: bookstore, namespace: bookstore}
  sources: [{kind: ServiceAccount, name: bookbuyer, namespace: bookbuyer}]
  rules: [{kind: HTTPRouteGroup, name: routes, matchs: [buy]}]
"""


async def test_apply_of_a_bad_file_prints_every_problem_with_its_field_and_stores_nothing(
    demo: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    rv = demo.store.resource_version

    run = await demo.run(f"apply -f {path}")

    assert (run.code, run.out) == (1, "")
    where = f'error when creating "{path}": '
    assert run.err.splitlines() == [
        f"Error from server (Invalid): {where}"
        'TrafficSplit.split.smi-spec.io "bad-split" is invalid: '
        "spec.service: required field is missing (expected a string); "
        "spec.backends[0].weight: -5 is out of range; expected an integer from 0 to 2147483647; "
        'spec.backends[1].service: duplicate backend "bookstore-v1"; list each service once',
        f"Error from server (Invalid): {where}"
        'Service "bad-service" is invalid: '
        "spec.ports[0].port: 0 is out of range; expected an integer from 1 to 65535; "
        'spec.ports[1].protocol: "SCTPX" is not valid (did you mean "SCTP"?); valid values: '
        '"TCP", "UDP", "SCTP"',
        f"Error from server (BadRequest): {where}"
        "TrafficTarget in version 'v1alpha3' cannot be handled as a TrafficTarget: "
        'strict decoding error: unknown field "spec.rules[0].matchs"',
    ]
    assert demo.store.resource_version == rv


async def test_create_of_an_existing_object_is_already_exists(demo: Cluster) -> None:
    path = DEMO / "40-policy.yaml"
    run = await demo.run(f"create -f {path}")
    assert (run.code, run.out) == (1, "")
    where = f'Error from server (AlreadyExists): error when creating "{path}": '
    assert run.err.splitlines() == [
        where + 'trafficsplits.split.smi-spec.io "bookstore-split" already exists',
        where + 'httproutegroups.specs.smi-spec.io "bookstore-service-routes" already exists',
        where + 'traffictargets.access.smi-spec.io "bookbuyer-access-bookstore" already exists',
        where + 'httproutegroups.specs.smi-spec.io "bookwarehouse-service-routes" already exists',
        where + 'traffictargets.access.smi-spec.io "bookstore-access-bookwarehouse" already exists',
    ]


async def test_creating_in_a_missing_namespace_is_not_found(local: Cluster) -> None:
    run = await local.run("apply -f -", stdin=POD)
    assert (run.code, run.out, run.err) == (
        1,
        "",
        'Error from server (NotFound): error when creating "STDIN": namespaces "bookstore" '
        "not found\n",
    )


# -- imperative commands ------------------------------------------------------------------
PROTOBUF = pytest.mark.xfail(
    strict=True,
    reason="server: kubectl 1.32's typed clients send built-in kinds as "
    "application/vnd.kubernetes.protobuf (and do not fall back to JSON on a 415); the server "
    "answers `Error from server (BadRequest): the request body is not valid "
    "application/vnd.kubernetes.protobuf: Expecting value: line 1 column 1 (char 0)`",
)
IMPERATIVE = [
    pytest.param("run reader --image reader:v1", "pod/reader created", id="run"),
    pytest.param(
        "expose deploy bookstore-v1 --port 80 --name front", "service/front exposed", id="expose"
    ),
    pytest.param(
        "set image deploy/bookstore-v1 bookstore=bookstore:v3",
        "deployment.apps/bookstore-v1 image updated",
        id="set image",
    ),
    pytest.param(
        "create serviceaccount reader",
        "serviceaccount/reader created",
        id="create serviceaccount",
        marks=PROTOBUF,
    ),
    pytest.param(
        "create configmap settings --from-literal=a=b",
        "configmap/settings created",
        id="create configmap",
        marks=PROTOBUF,
    ),
    pytest.param(
        "create secret generic token --from-literal=a=b",
        "secret/token created",
        id="create secret",
        marks=PROTOBUF,
    ),
    pytest.param(
        "create deployment reader --image reader:v1",
        "deployment.apps/reader created",
        id="create deployment",
        marks=PROTOBUF,
    ),
    pytest.param(
        "scale deploy bookstore-v1 --replicas 2",
        "deployment.apps/bookstore-v1 scaled",
        id="scale",
    ),
]


@pytest.mark.parametrize(("command", "printed"), IMPERATIVE)
async def test_imperative_commands(demo: Cluster, command: str, printed: str) -> None:
    run = await demo.run(command + " -n bookstore")
    assert (run.code, run.out, run.err) == (0, printed + "\n", "")


@PROTOBUF
async def test_create_namespace(local: Cluster) -> None:
    run = await local.run("create namespace books")
    assert (run.code, run.out, run.err) == (0, "namespace/books created\n", "")


# -- authentication -----------------------------------------------------------------------
def _stranger(shared: Cluster, home: Path, user: dict[str, Any]) -> Kubectl:
    """kubectl in another home (no discovery cache) with the admin's kubeconfig but other
    credentials for its user."""
    document = yaml.safe_load(shared.api.kubeconfig.read_text())
    document["users"][0]["user"] = user
    path = home / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return Kubectl(path, home)


def _foreign(shared: Cluster, home: Path) -> Kubectl:
    """The admin's name on a certificate from another CA."""
    other = auth.ApiCA.open(home / "another-ca").issue_client("osm-admin", ["system:masters"])
    user = {
        "client-certificate-data": base64.b64encode(other.cert_pem).decode(),
        "client-key-data": base64.b64encode(other.key_pem).decode(),
    }
    return _stranger(shared, home, user)


MUST_LOG_IN = "error: You must be logged in to the server"
UNAUTHORIZED = [
    pytest.param("get --raw /api/v1/namespaces", f"{MUST_LOG_IN} (Unauthorized)", id="a request"),
    pytest.param(
        "get ns",
        f"{MUST_LOG_IN} (the server has asked for the client to provide credentials)",
        id="get: discovery fails first",
    ),
    pytest.param(
        f"apply -f {DEMO / '00-namespaces.yaml'}",
        f'error: error validating "{DEMO / "00-namespaces.yaml"}": error validating data: '
        "failed to download openapi: the server has asked for the client to provide "
        "credentials; if you choose to ignore these errors, turn validation off with "
        "--validate=false",
        id="apply: the OpenAPI download fails first",
    ),
]


@pytest.mark.parametrize(("command", "last_line"), UNAUTHORIZED)
@READ_ONLY
async def test_without_a_client_certificate_kubectl_must_log_in(
    shared: Cluster, tmp_path: Path, command: str, last_line: str
) -> None:
    """A kubeconfig whose user has a token and no certificate (one with no credentials at
    all makes kubectl ask for a user name before it sends anything). kubectl logs each
    failed discovery request before its one-line verdict."""
    kubectl = _stranger(shared, tmp_path, {"token": "not-a-certificate"})
    rv = shared.store.resource_version

    run = await kubectl(*shlex.split(command))

    assert (run.code, run.out) == (1, "")
    assert run.err.splitlines()[-1] == last_line
    assert shared.store.resource_version == rv


@READ_ONLY
async def test_a_certificate_from_another_ca_is_refused(shared: Cluster, tmp_path: Path) -> None:
    namespace = tmp_path / "namespace.json"
    namespace.write_text('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"intruder"}}')
    rv = shared.store.resource_version

    run = await _foreign(shared, tmp_path)(
        "create", "--raw", "/api/v1/namespaces", "-f", str(namespace)
    )

    assert (run.code, run.out) == (1, "")
    assert run.err.startswith("Unable to connect to the server: ")
    assert shared.store.resource_version == rv


@READ_ONLY
async def test_a_refused_certificate_is_named_by_kubectl_at_once(
    shared: Cluster, tmp_path: Path
) -> None:
    run = await _foreign(shared, tmp_path)("get", "ns", timeout=5)
    assert run.err.splitlines()[-1] == (
        "Unable to connect to the server: remote error: tls: unknown certificate authority"
    )
