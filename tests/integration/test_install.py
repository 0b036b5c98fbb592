"""``osm install`` and ``osm uninstall mesh`` against a real Kubernetes API (the local API
server over an empty store, as a fresh cluster): install creates every object it renders
and is idempotent; uninstall removes exactly what install created; each refusal (a bad
``--set``, another mesh, an object in the way, missing permissions) creates nothing.

No kubelet or Deployment controller runs here: a task on the API's loop plays the
Deployment controller, writing ``Available`` (through the status subresource) for the
Deployments install creates. RBAC is not enforced by the local API server, so "forbidden"
is an admission that answers 403 for ClusterRoles, as kube-apiserver's authorizer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

import osm
from osm.apiserver import server as apiserver
from osm.apiserver.status import ApiError
from osm.cli import install as install_cli
from osm.cli import main
from osm.cli.client import Api
from osm.install import manifests, values
from osm.kube.client import KubeClient
from osm.model import kinds
from osm.store import api as store_api
from tests.unit.cli.local_api import running_api

main.register(main.cli)
T = TypeVar("T")
CALL_TIMEOUT = 30.0
NAMESPACE = "osm-system"
Key = tuple[str, str, str]


@dataclass
class Cluster:
    kubeconfig: Path
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_TIMEOUT)

    def osm(self, *args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(
            main.cli, ["--kubeconfig", str(self.kubeconfig), *args], obj={}, input=stdin
        )

    def objects(self) -> dict[Key, str]:
        """Every object in the cluster, by (kind, namespace, name): its resourceVersion."""
        found: dict[Key, str] = {}
        with Api.connect(self.kubeconfig) as api:
            for info in kinds.KINDS:
                for obj in api.list(info.kind)[0]:
                    meta = obj["metadata"]
                    key = (info.kind, meta.get("namespace", ""), meta["name"])
                    found[key] = meta["resourceVersion"]
        return found

    def create(self, *objects: Mapping[str, Any]) -> None:
        with Api.connect(self.kubeconfig) as api:
            for obj in objects:
                api.create(obj)


class ForbidClusterRoles(apiserver.ModelAdmission):
    """What kube-apiserver answers a user without the right to create ClusterRoles."""

    async def admit(
        self, store: store_api.Store, obj: Mapping[str, Any], *, creating: bool
    ) -> apiserver.Admitted:
        if obj.get("kind") == "ClusterRole":
            raise ApiError(
                403,
                'clusterroles.rbac.authorization.k8s.io is forbidden: User "dev" cannot '
                'create resource "clusterroles" in API group "rbac.authorization.k8s.io"',
            )
        return await super().admit(store, obj, creating=creating)


async def play_deployment_controller(kubeconfig: Path) -> None:
    """Marks every Deployment Available with all replicas ready, as kube-controller-manager
    and the kubelets would once the pods run."""
    async with KubeClient.from_kubeconfig(kubeconfig) as client:
        while True:
            for deployment in (await client.list("Deployment"))[0]:
                meta, spec = deployment["metadata"], deployment["spec"]
                replicas = spec.get("replicas", 1)
                status = deployment.get("status") or {}
                if status.get("readyReplicas") == replicas:
                    continue
                await client.patch_status(
                    "Deployment",
                    meta["namespace"],
                    meta["name"],
                    {
                        "status": {
                            "observedGeneration": meta.get("generation", 1),
                            "replicas": replicas,
                            "readyReplicas": replicas,
                            "availableReplicas": replicas,
                            "updatedReplicas": replicas,
                            "conditions": [
                                {
                                    "type": "Available",
                                    "status": "True",
                                    "reason": "MinimumReplicasAvailable",
                                    "message": "Deployment has minimum availability.",
                                }
                            ],
                        }
                    },
                )
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def cluster(
    state_dir: Path,
    admission: apiserver.Admission | None = None,
    *,
    deployments_become_ready: bool = True,
) -> Iterator[Cluster]:
    with running_api(state_dir, control_plane=False, admission=admission) as api:
        player = None
        if deployments_become_ready:
            player = asyncio.run_coroutine_threadsafe(
                play_deployment_controller(api.kubeconfig), api.loop
            )
        try:
            yield Cluster(api.kubeconfig, api.loop)
        finally:
            if player is not None:
                player.cancel()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path / "state") as running:
        yield running


def rendered(mesh: str = "osm", namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return manifests.render(values.Values(), mesh, namespace, osm.__version__)


def key(obj: Mapping[str, Any]) -> Key:
    namespaced = kinds.lookup(obj["kind"]).namespaced
    return (
        obj["kind"],
        obj["metadata"].get("namespace", "") if namespaced else "",
        obj["metadata"]["name"],
    )


USERS_OBJECTS = [
    # Names like the mesh's, in another namespace or without the mesh's labels.
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bookstore"}},
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "osm-controller",
            "namespace": "bookstore",
            "labels": {"app": "osm-controller"},
        },
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "osm-osm-controller-readonly", "labels": {"meshName": "osm"}},
        "rules": [],
    },
]


# -- install ------------------------------------------------------------------------------
def test_install_creates_every_object_it_renders_and_waits_for_the_control_plane(
    fresh: Cluster,
) -> None:
    result = fresh.osm("install", "--timeout", "30s")
    assert result.exit_code == 0, result.output
    assert (
        "OSM installed successfully in namespace [osm-system] with mesh name [osm]" in result.output
    )
    with Api.connect(fresh.kubeconfig) as api:
        for obj in rendered():
            ref = key(obj)
            stored = api.get(ref[0], ref[1] or None, ref[2])
            assert install_cli.contains(stored, obj), ref
    created = [line for line in result.stdout.splitlines() if line.endswith(" created")]
    assert len(created) == len(rendered())


def test_a_second_install_changes_nothing(fresh: Cluster) -> None:
    assert fresh.osm("install", "--timeout", "30s").exit_code == 0
    before = fresh.objects()
    again = fresh.osm("install", "--timeout", "30s")
    assert again.exit_code == 0, again.output
    reported = [
        line
        for line in again.stdout.splitlines()
        if line.startswith(
            (
                "namespace",
                "custom",
                "service",
                "cluster",
                "role",
                "deployment",
                "meshconfig",
                "mutating",
                "validating",
            )
        )
    ]
    assert reported and all(line.endswith(" unchanged") for line in reported), reported
    assert fresh.objects() == before


def test_an_install_with_other_values_replaces_what_differs_and_keeps_the_meshconfig(
    fresh: Cluster,
) -> None:
    assert fresh.osm("install", "--timeout", "30s").exit_code == 0
    result = fresh.osm(
        "install",
        "--timeout",
        "30s",
        "--set",
        "osm.injector.replicaCount=2",
        "--set",
        "osm.enableEgress=false",
    )
    assert result.exit_code == 0, result.output
    assert "deployment.apps/osm-injector configured" in result.stdout
    assert "meshconfig.config.openservicemesh.io/osm-mesh-config unchanged" in result.stdout
    with Api.connect(fresh.kubeconfig) as api:
        assert api.get("Deployment", NAMESPACE, "osm-injector")["spec"]["replicas"] == 2
        # The MeshConfig is the user's once installed (as OSM's bootstrap keeps it).
        mesh_config = api.get("MeshConfig", NAMESPACE, "osm-mesh-config")
        assert mesh_config["spec"]["traffic"]["enableEgress"] is True


# -- uninstall ----------------------------------------------------------------------------
def test_uninstall_removes_exactly_what_install_created(fresh: Cluster) -> None:
    fresh.create(*USERS_OBJECTS)
    before = set(fresh.objects())
    assert fresh.osm("install", "--timeout", "30s").exit_code == 0
    result = fresh.osm("uninstall", "mesh", "-f")
    assert result.exit_code == 0, result.output
    left = set(fresh.objects()) - before
    # Without -a and --delete-namespace: the namespace and the CRDs (shared) stay.
    assert left == {
        key(o) for o in rendered() if o["kind"] in ("Namespace", "CustomResourceDefinition")
    }
    deleted = [line for line in result.stdout.splitlines() if line.endswith(" deleted")]
    assert len(deleted) == len(rendered()) - len(left)

    result = fresh.osm("uninstall", "mesh", "-f", "-a", "--delete-namespace")
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 20
    while set(fresh.objects()) != before and time.monotonic() < deadline:
        time.sleep(0.2)  # the Namespace is Terminating for a moment
    assert set(fresh.objects()) == before


def test_uninstall_asks_first_and_a_no_deletes_nothing(fresh: Cluster) -> None:
    assert fresh.osm("install", "--timeout", "30s").exit_code == 0
    before = fresh.objects()
    result = fresh.osm("uninstall", "mesh", stdin="n\n")
    assert "Nothing was deleted" in result.output
    assert fresh.objects() == before


def test_uninstall_of_a_mesh_that_is_not_there_says_so(fresh: Cluster) -> None:
    result = fresh.osm("uninstall", "mesh", "-f", "--mesh-name", "ghost")
    assert result.exit_code == 0
    assert "No OSM control plane with mesh name [ghost]" in result.output


# -- refusals: each creates nothing -----------------------------------------------------------
REFUSALS = [
    # (id, what the cluster holds first, the install's arguments, what the error says)
    ("a bad --set", [], ["--set", "osm.enableEgress=maybe"], "expected true or false"),
    ("an unknown --set", [], ["--set", "osm.enableEgres=false"], 'did you mean "osm.enableEgress"'),
    (
        "an object of someone else in the way",
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "osm-injector", "namespace": NAMESPACE},
                "spec": {"ports": [{"port": 80}]},
            },
        ],
        [],
        "service/osm-injector exists and was not created by osm install",
    ),
]


@pytest.mark.parametrize(
    ("held", "args", "says"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_refused_install_creates_nothing(
    fresh: Cluster, held: list[dict[str, Any]], args: list[str], says: str
) -> None:
    fresh.create(*held)
    before = fresh.objects()
    result = fresh.osm("install", *args)
    assert result.exit_code == 1
    assert says in result.output
    assert "nothing was installed" in result.output
    assert fresh.objects() == before


@pytest.mark.parametrize(
    ("first", "second", "says"),
    [
        (
            ["--mesh-name", "other", "--osm-namespace", "other-system"],
            [],
            "mesh other is installed in namespace other-system",
        ),
        (
            ["--mesh-name", "osm", "--osm-namespace", "other-system"],
            [],
            "mesh osm is already installed in namespace other-system",
        ),
        (
            ["--mesh-name", "other"],
            ["--enforce-single-mesh=false"],
            "namespace osm-system already holds mesh other",
        ),
    ],
    ids=[
        "another mesh, single mesh enforced",
        "the same mesh elsewhere",
        "another mesh in the namespace",
    ],
)
def test_install_beside_another_mesh_is_refused(
    fresh: Cluster, first: list[str], second: list[str], says: str
) -> None:
    assert fresh.osm("install", "--timeout", "30s", *first).exit_code == 0
    before = fresh.objects()
    result = fresh.osm("install", *second)
    assert result.exit_code == 1, result.output
    assert says in result.output
    assert fresh.objects() == before


def test_two_meshes_install_side_by_side_without_single_mesh_enforcement(fresh: Cluster) -> None:
    first = fresh.osm(
        "install",
        "--timeout",
        "30s",
        "--mesh-name",
        "one",
        "--osm-namespace",
        "one-system",
        "--enforce-single-mesh=false",
    )
    assert first.exit_code == 0, first.output
    second = fresh.osm(
        "install",
        "--timeout",
        "30s",
        "--mesh-name",
        "two",
        "--osm-namespace",
        "two-system",
        "--enforce-single-mesh=false",
    )
    assert second.exit_code == 0, second.output
    listed = fresh.osm("mesh", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["MESH", "NAME", "MESH"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["one", "one-system", osm.__version__, "1/1"],
        ["two", "two-system", osm.__version__, "1/1"],
    ]


def test_install_without_permission_is_refused_before_anything_is_created(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path / "state", ForbidClusterRoles()) as forbidding:
        before = forbidding.objects()
        result = forbidding.osm("install")
        assert result.exit_code == 1
        assert (
            "clusterrole.rbac.authorization.k8s.io/osm-osm-controller: forbidden" in result.output
        )
        assert "cluster administrator" in result.output
        assert forbidding.objects() == before


def test_install_names_the_deployment_that_is_not_ready(tmp_path: Path) -> None:
    with cluster(tmp_path / "state", deployments_become_ready=False) as stuck:
        result = stuck.osm("install", "--timeout", "1s")
        assert result.exit_code == 1
        assert "the control plane is not ready after 1s" in result.output
        assert "deployment osm-system/osm-controller: 0/1 ready" in result.output
        assert "no pods" in result.output


# -- version -------------------------------------------------------------------------------------
def test_version_shows_the_client_and_the_control_plane(fresh: Cluster) -> None:
    assert fresh.osm("install", "--timeout", "30s").exit_code == 0
    result = fresh.osm("version")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"CLI Version: {osm.__version__}"
    assert lines[2].split() == ["osm", NAMESPACE, osm.__version__]


def test_version_says_when_it_cannot_reach_the_cluster(tmp_path: Path) -> None:
    with cluster(tmp_path / "state") as gone:
        kubeconfig = gone.kubeconfig
    result = CliRunner().invoke(main.cli, ["--kubeconfig", str(kubeconfig), "version"], obj={})
    assert result.exit_code == 0
    assert "Control plane: cannot reach the Kubernetes API" in result.stdout


def test_install_into_local_modes_built_in_mesh_is_refused(tmp_path: Path) -> None:
    """`osm up`'s API (its controller creates osm-system as local mode's) is no cluster to
    install into: its control plane is built in."""
    with running_api(tmp_path / "state") as api:
        result = CliRunner().invoke(
            main.cli, ["--kubeconfig", str(api.kubeconfig), "install"], obj={}
        )
        assert result.exit_code == 1
        assert "is osm up's local mode" in result.output
        assert "nothing was installed" in result.output
        with Api.connect(api.kubeconfig) as client:
            found, _ = client.list("Deployment", None)
        assert found == []
