"""``osm install``, ``osm uninstall mesh``, ``osm mesh list`` and ``osm version``: the mesh
in a cluster, through the Kubernetes API.

One idea: install is checked whole before anything is written. Its objects are
`osm.install.manifests.render`'s; the preflight reads the cluster (is the API there, is
another mesh installed, which objects exist and who made them) and asks the server to
dry-run every write it plans (``?dryRun=All``, which finds missing permissions and objects
the server would refuse); every problem is reported at once, with what to do, and nothing
is created unless there is none. Then each object is created, left as it is (it is ours
and already holds what install would write: a second install changes nothing), or
replaced (it is ours and differs); then install waits for the Deployments to be Available.

What is "ours": labelled by install for this mesh (`manifests.selector`); the CRDs, shared
by every mesh, when labelled ``app.kubernetes.io/managed-by=osm-py``. Two objects install
adopts instead of refusing: an existing Namespace (it gets the labels) and an existing
MeshConfig (the user's settings win: an installed MeshConfig is never rewritten, as OSM's
bootstrap keeps it). Uninstall deletes what carries the labels, webhook configurations
first (so no pod creation waits on a webhook that is going away), the Namespace only with
``--delete-namespace`` and the CRDs and the CA Secret only with
``--delete-cluster-wide-resources``.

Exported click objects (registered by `osm.cli.main`): `install`, `uninstall`, `mesh`,
`version`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
import yaml

import osm
from osm.base import wellknown
from osm.cli import apply as applying
from osm.cli.client import Api, describe
from osm.cli.common import CONTEXT, CONTEXT_KEY, KUBECONFIG_KEY, connect, fail, fail_with
from osm.install import manifests, values
from osm.kube.errors import ApiError, KubeError
from osm.model import kinds
from osm.model.fields import parse_duration

Manifest = dict[str, Any]
DEFAULT_MESH_NAME = "osm"
DEFAULT_TIMEOUT = "5m"
POLL_SECONDS = 1.0
ESTABLISH_SECONDS = 30.0
"""How long a custom resource's create is retried while its new CRD is not served yet."""


# -- what exists, and what install does about it -------------------------------------------
def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels = obj.get("metadata", {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def is_ours(obj: Mapping[str, Any], mesh_name: str) -> bool:
    """Made by ``osm install`` for `mesh_name` (for a CRD: by any mesh's install)."""
    labels = _labels(obj)
    if labels.get(manifests.MANAGED_BY_LABEL) != manifests.MANAGED_BY:
        return False
    if obj.get("kind") == "CustomResourceDefinition":
        return True
    return (
        labels.get(wellknown.APP_INSTANCE_LABEL) == mesh_name
        and labels.get(manifests.MESH_NAME_LABEL) == mesh_name
    )


def contains(stored: Any, wanted: Any) -> bool:
    """Whether `stored` holds everything `wanted` says: servers add defaults, so a stored
    object that differs only by those is what install would write."""
    if isinstance(wanted, Mapping):
        return isinstance(stored, Mapping) and all(
            key in stored and contains(stored[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(wanted)
            and all(contains(s, w) for s, w in zip(stored, wanted, strict=True))
        )
    return bool(stored == wanted)


def _carry_over(stored: Mapping[str, Any], wanted: Manifest) -> Manifest:
    """`wanted`, with what others keep in the stored object: the webhooks' caBundle (the
    controller's) and a Service's cluster IPs (immutable)."""
    result: Manifest = json.loads(json.dumps(wanted))
    result["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
    if result["kind"].endswith("WebhookConfiguration"):
        bundles = {
            hook.get("name"): hook.get("clientConfig", {}).get("caBundle")
            for hook in stored.get("webhooks") or ()
        }
        for hook in result["webhooks"]:
            if bundles.get(hook["name"]):
                hook["clientConfig"]["caBundle"] = bundles[hook["name"]]
    if result["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs"):
            if key in stored.get("spec", {}):
                result["spec"][key] = stored["spec"][key]
    return result


@dataclass
class Step:
    """What install does with one object: create, replace, label (an adopted
    Namespace), keep (ours, unchanged, or a MeshConfig) or refuse (someone else's)."""

    obj: Manifest
    action: str
    stored: Manifest | None = None
    problem: str = ""

    @property
    def ref(self) -> applying.Ref:
        return applying.Ref.of(self.obj)

    def body(self) -> Manifest:
        if self.action == "replace":
            assert self.stored is not None
            return _carry_over(self.stored, self.obj)
        return self.obj


def _ref_text(obj: Mapping[str, Any]) -> str:
    return str(applying.Ref.of(obj))


def plan(obj: Manifest, stored: Manifest | None, mesh_name: str) -> Step:
    """What install does with `obj`, given the object stored under its name (None: absent)."""
    if stored is None:
        return Step(obj, "create")
    kind = obj["kind"]
    if kind == "Namespace":
        adopted = contains(_labels(stored), _labels(obj))
        return Step(obj, "keep" if adopted else "label", stored)
    if kind == "MeshConfig":
        return Step(obj, "keep", stored)
    if not is_ours(stored, mesh_name):
        owner = _labels(stored).get(wellknown.APP_INSTANCE_LABEL)
        whose = f"by mesh {owner}" if owner else "by someone else"
        return Step(
            obj,
            "refuse",
            stored,
            f"{_ref_text(obj)} exists and was not created by osm install of mesh "
            f"{mesh_name} ({whose}): delete it, or install under another --mesh-name",
        )
    return Step(obj, "keep" if contains(stored, obj) else "replace", stored)


# -- other meshes --------------------------------------------------------------------------
@dataclass(frozen=True)
class Mesh:
    """A control plane found in the cluster: its controller Deployment."""

    name: str
    namespace: str
    version: str
    ready: int
    replicas: int

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> Mesh:
        labels = _labels(deployment)
        status = deployment.get("status") or {}
        return cls(
            name=labels.get(manifests.MESH_NAME_LABEL, "<unknown>"),
            namespace=deployment["metadata"].get("namespace", ""),
            version=labels.get(manifests.VERSION_LABEL, "<unknown>"),
            ready=int(status.get("readyReplicas") or 0),
            replicas=int(deployment.get("spec", {}).get("replicas", 1)),
        )


def meshes(api: Api) -> list[Mesh]:
    """Every control plane in the cluster, by its ``osm-controller`` Deployment."""
    found, _ = api.list("Deployment", None, f"{manifests.APP_LABEL}={manifests.CONTROLLER}")
    return sorted((Mesh.of(d) for d in found), key=lambda m: (m.name, m.namespace))


def mesh_conflicts(
    found: Sequence[Mesh], mesh_name: str, namespace: str, *, enforce_single_mesh: bool
) -> list[str]:
    """Why installing `mesh_name` in `namespace` next to the `found` meshes is refused."""
    problems = []
    for mesh in found:
        if mesh.name == mesh_name and mesh.namespace == namespace:
            continue  # this very mesh: install again
        uninstall = f"osm uninstall mesh --mesh-name {mesh.name} --osm-namespace {mesh.namespace}"
        if mesh.name == mesh_name:
            problems.append(
                f"mesh {mesh_name} is already installed in namespace {mesh.namespace}: "
                f"choose another --mesh-name, or remove it first ({uninstall})"
            )
        elif mesh.namespace == namespace:
            problems.append(
                f"namespace {namespace} already holds mesh {mesh.name}: use another "
                f"--osm-namespace, or remove it first ({uninstall})"
            )
        elif enforce_single_mesh:
            problems.append(
                f"mesh {mesh.name} is installed in namespace {mesh.namespace} and "
                "--enforce-single-mesh is on: remove it first "
                f"({uninstall}), or install with --enforce-single-mesh=false"
            )
    return problems


# -- preflight ------------------------------------------------------------------------------
def local_mode(api: Api) -> str:
    """Why this API is no place for `osm install` ("" if it is one): ``osm up``'s local
    mode, whose control plane is built into its API server's process."""
    try:
        found = api.get("Namespace", None, wellknown.CONTROL_PLANE_NAMESPACE)
    except ApiError as error:
        if error.code == 404:
            return ""
        raise
    annotations = found.get("metadata", {}).get("annotations") or {}
    if wellknown.LOCAL_MODE_ANNOTATION not in annotations:
        return ""
    return (
        f"{api.server} is osm up's local mode: its mesh's control plane is built into the "
        "API server's process and already meshes namespaces (`osm namespace add`); "
        "osm install is for a Kubernetes cluster: point --kubeconfig or KUBECONFIG at one"
    )


def _get(api: Api, obj: Mapping[str, Any]) -> Manifest | None:
    ref = applying.Ref.of(obj)
    try:
        return api.get(ref.kind, ref.scope, ref.name)
    except ApiError as error:
        if error.code == 404:
            return None
        raise


def _denied(error: ApiError, step: Step) -> str:
    if error.code == 403:
        verb = "replace" if step.action == "replace" else "create"
        return (
            f"{step.ref}: forbidden to {verb} it ({error.message}): osm install needs a "
            "cluster administrator's rights (it creates CRDs, cluster roles and webhook "
            "configurations); use a kubeconfig with them, or ask an administrator to run "
            "`osm install --dry-run -o yaml | kubectl apply -f -`"
        )
    return describe(error, context=f"{step.ref} would be refused")


def preflight(
    api: Api, objects: Sequence[Manifest], mesh_name: str, namespace: str, *, enforce: bool
) -> tuple[list[Step], list[str]]:
    """The steps of the install and every problem found (nothing is written). Raises
    `KubeError` when the API cannot be reached."""
    problems = mesh_conflicts(meshes(api), mesh_name, namespace, enforce_single_mesh=enforce)
    local = local_mode(api)
    if local:
        problems.append(local)
    steps = [plan(obj, _get(api, obj), mesh_name) for obj in objects]
    new_namespace = any(s.action == "create" and s.obj["kind"] == "Namespace" for s in steps)
    new_kinds = {
        s.obj["spec"]["names"]["kind"]
        for s in steps
        if s.action == "create" and s.obj["kind"] == "CustomResourceDefinition"
    }
    for step in steps:
        if step.action == "refuse":
            problems.append(step.problem)
            continue
        if step.action not in ("create", "replace"):
            continue
        try:
            if step.action == "create":
                api.create(step.obj, dry_run=True)
            else:
                api.replace(step.body(), dry_run=True)
        except ApiError as error:
            waits = (new_namespace and step.ref.scope == namespace) or (
                step.obj["kind"] in new_kinds
            )
            if error.code == 404 and waits:
                continue  # its Namespace or CRD is created first; checked when created
            problems.append(_denied(error, step))
    return steps, problems


# -- applying -------------------------------------------------------------------------------
def _create(api: Api, obj: Manifest) -> None:
    deadline = time.monotonic() + ESTABLISH_SECONDS
    is_custom = kinds.lookup(obj["kind"]).strict
    while True:
        try:
            api.create(obj)
            return
        except ApiError as error:
            # A CRD just created is served a moment later.
            if not (is_custom and error.code == 404 and time.monotonic() < deadline):
                raise
        time.sleep(0.5)


def execute(api: Api, steps: Sequence[Step], report: Callable[[str], None]) -> None:
    """Does each step, in order, and reports it as kubectl does."""
    words = {"create": "created", "replace": "configured", "label": "configured"}
    for step in steps:
        if step.action == "create":
            _create(api, step.obj)
        elif step.action == "replace":
            api.replace(step.body())
        elif step.action == "label":
            ref = step.ref
            api.patch(ref.kind, ref.scope, ref.name, {"metadata": {"labels": _labels(step.obj)}})
        report(f"{step.ref} {words.get(step.action, 'unchanged')}")


# -- waiting for the control plane -------------------------------------------------------------
def _condition(deployment: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in (deployment.get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return {}


def available(deployment: Mapping[str, Any]) -> bool:
    """Available, with every replica of its current generation ready."""
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    wanted = int(deployment.get("spec", {}).get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    return _condition(deployment, "Available").get("status") == "True" and ready >= wanted


def state(deployment: Mapping[str, Any] | None) -> str:
    """One line: how far the Deployment is."""
    if deployment is None:
        return "not found"
    status = deployment.get("status") or {}
    wanted = int(deployment.get("spec", {}).get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    if available(deployment):
        return f"{ready}/{wanted} ready, Available"
    return f"{ready}/{wanted} ready"


def why_not_ready(api: Api, namespace: str, name: str, deployment: Manifest | None) -> str:
    """The Deployment's conditions that are not True and its pods' states."""
    if deployment is None:
        return f"deployment {namespace}/{name} does not exist"
    lines = [f"deployment {namespace}/{name}: {state(deployment)}"]
    for condition in (deployment.get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True" or condition.get("type") == "ReplicaFailure":
            lines.append(
                f"  condition {condition.get('type')}={condition.get('status')}: "
                f"{condition.get('reason', '')} {condition.get('message', '')}".rstrip()
            )
    pods, _ = api.list("Pod", namespace, f"{manifests.APP_LABEL}={name}")
    if not pods:
        lines.append("  no pods (is a controller manager running? see the conditions above)")
    for pod in pods:
        status = pod.get("status") or {}
        states = []
        for container in status.get("containerStatuses") or ():
            waiting = (container.get("state") or {}).get("waiting")
            if waiting:
                states.append(
                    f"{container.get('name')} waiting: {waiting.get('reason', '')} "
                    f"{waiting.get('message', '')}".rstrip()
                )
            elif not container.get("ready"):
                states.append(f"{container.get('name')} not ready")
        detail = "; ".join(states) or status.get("message") or ""
        lines.append(
            f"  pod {pod['metadata']['name']}: {status.get('phase', 'Pending')}"
            + (f" ({detail})" if detail else "")
        )
    return "\n".join(lines)


def wait_ready(
    api: Api,
    namespace: str,
    names: Sequence[str],
    timeout: float,
    show: Callable[[Mapping[str, str]], None],
) -> list[str]:
    """Polls the Deployments until all are Available or `timeout` passes; `show` gets each
    one's state whenever it changes. The names of those not ready at the end."""
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while True:
        current: dict[str, Manifest | None] = {
            name: _get_deployment(api, namespace, name) for name in names
        }
        states = {name: state(d) for name, d in current.items()}
        if states != last:
            show(states)
            last = states
        pending = [name for name, d in current.items() if d is None or not available(d)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(POLL_SECONDS)


def _get_deployment(api: Api, namespace: str, name: str) -> Manifest | None:
    try:
        return api.get("Deployment", namespace, name)
    except ApiError as error:
        if error.code == 404:
            return None
        raise


class _Display:
    """The wait's progress: a live table on a terminal, a line per change elsewhere."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.live: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table({}), console=Console(stderr=True), transient=False)

    def _table(self, states: Mapping[str, str]) -> Any:
        from rich.table import Table

        table = Table(title="waiting for the control plane", title_justify="left")
        table.add_column("DEPLOYMENT")
        table.add_column("STATE", min_width=24)
        for name in self.names:
            text = states.get(name, "...")
            table.add_row(name, f"[green]{text}[/]" if "Available" in text else text)
        return table

    def __enter__(self) -> _Display:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def show(self, states: Mapping[str, str]) -> None:
        if self.live is not None:
            self.live.update(self._table(states))
            return
        click.echo("  " + ", ".join(f"{name}: {text}" for name, text in states.items()), err=True)


# -- the commands ---------------------------------------------------------------------------
def _timeout(text: str) -> float:
    seconds = parse_duration(text)
    if seconds is None:
        raise click.BadParameter(f'"{text}" is not a duration such as 5m, 90s, 1h30m')
    return seconds


def dump(objects: Sequence[Mapping[str, Any]], output: str) -> str:
    """The manifests as ``kubectl apply -f -`` reads them."""
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}, indent=2)
    return yaml.safe_dump_all(objects, sort_keys=False, width=100)


mesh_name_option = click.option(
    "--mesh-name", default=DEFAULT_MESH_NAME, show_default=True, help="The mesh's name."
)
namespace_option = click.option(
    "--osm-namespace",
    default=wellknown.CONTROL_PLANE_NAMESPACE,
    show_default=True,
    help="The control plane's namespace.",
)


@click.command(context_settings=CONTEXT)
@mesh_name_option
@namespace_option
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="A value, under OSM's chart keys (repeatable), e.g. osm.enableEgress=false, "
    "osm.image.registry=registry.example/osm, osm.outboundPortExclusionList={6379}.",
)
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="How long to wait for the control plane to be ready (a Go duration).",
)
@click.option(
    "--enforce-single-mesh",
    type=click.BOOL,
    default=True,
    is_flag=False,
    flag_value=True,
    show_default=True,
    help="Refuse to install beside another mesh (and keep others from installing).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the manifests (for kubectl apply -f -) instead of installing.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="The format of --dry-run's manifests.",
)
@click.pass_context
def install(
    ctx: click.Context,
    mesh_name: str,
    osm_namespace: str,
    sets: tuple[str, ...],
    timeout: str,
    enforce_single_mesh: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Install the mesh's control plane into a cluster: CRDs, the controller and the
    injector with their RBAC and Services, the webhooks and the MeshConfig.

    Every check runs before anything is created (the API, other meshes, objects in the
    way, permissions and validity by a server dry run); then install waits for the
    Deployments to be Available. Installing again changes nothing, or updates what
    differs. With --dry-run, the manifests are printed instead.
    """
    problems = []
    for name, text in (("--mesh-name", mesh_name), ("--osm-namespace", osm_namespace)):
        problem = values.check_mesh_name(text)
        if problem:
            problems.append(f"{name}: {problem}")
    try:
        chosen = values.parse_sets(sets)
    except values.SetError as error:
        problems += error.problems
    wait_seconds = _timeout(timeout)
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        fail("nothing was installed")
    objects = manifests.render(chosen, mesh_name, osm_namespace, osm.__version__)
    if dry_run:
        click.echo(dump(objects, output), nl=output == "json")
        return
    with connect(ctx) as api:
        try:
            steps, problems = preflight(
                api, objects, mesh_name, osm_namespace, enforce=enforce_single_mesh
            )
        except KubeError as error:
            fail_with(error, api.server)
        if problems:
            for problem in problems:
                click.echo(f"error: {problem}", err=True)
            fail("nothing was installed")
        try:
            execute(api, steps, click.echo)
            names = [manifests.CONTROLLER, manifests.INJECTOR]
            with _Display(names) as display:
                pending = wait_ready(api, osm_namespace, names, wait_seconds, display.show)
            if pending:
                reasons = [
                    why_not_ready(api, osm_namespace, n, _get_deployment(api, osm_namespace, n))
                    for n in pending
                ]
                fail(
                    f"the control plane is not ready after {timeout}:\n"
                    + "\n".join(reasons)
                    + "\n(see `osm logs` or `kubectl -n "
                    + osm_namespace
                    + " describe deploy`; run osm install again to wait more)"
                )
        except KubeError as error:
            fail_with(error, api.server)
    click.echo(
        f"OSM installed successfully in namespace [{osm_namespace}] with mesh name [{mesh_name}]"
    )


# -- uninstall --------------------------------------------------------------------------------
UNINSTALL_KINDS = (
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "MeshConfig",
    "Deployment",
    "Service",
    "ConfigMap",
    "RoleBinding",
    "Role",
    "ClusterRoleBinding",
    "ClusterRole",
    "ServiceAccount",
)
"""What uninstall deletes by the mesh's labels, in this order (the reverse of install's)."""


def installed(
    api: Api, mesh_name: str, namespace: str, *, namespace_too: bool, cluster_wide: bool
) -> list[applying.Ref]:
    """What uninstall would delete, in order."""
    refs = []
    for kind in UNINSTALL_KINDS:
        namespaced = kinds.lookup(kind).namespaced
        try:
            found, _ = api.list(
                kind, namespace if namespaced else None, manifests.selector(mesh_name)
            )
        except ApiError as error:
            if error.code == 404 and kind == "MeshConfig":
                continue  # the CRD is gone already
            raise
        refs += [applying.Ref.of(obj) for obj in found if is_ours(obj, mesh_name)]
    if cluster_wide:
        secret = applying.Ref("Secret", namespace, manifests.CA_BUNDLE_SECRET)
        try:
            api.get("Secret", namespace, manifests.CA_BUNDLE_SECRET)
            refs.append(secret)
        except ApiError as error:
            if error.code != 404:
                raise
        crds, _ = api.list(
            "CustomResourceDefinition",
            None,
            f"{manifests.MANAGED_BY_LABEL}={manifests.MANAGED_BY}",
        )
        refs += [applying.Ref.of(crd) for crd in crds]
    if namespace_too:
        try:
            api.get("Namespace", None, namespace)
            refs.append(applying.Ref("Namespace", "", namespace))
        except ApiError as error:
            if error.code != 404:
                raise
    return refs


@click.group(context_settings=CONTEXT)
def uninstall() -> None:
    """Remove a mesh from the cluster (osm uninstall mesh)."""


@uninstall.command("mesh", context_settings=CONTEXT)
@mesh_name_option
@namespace_option
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-namespace", is_flag=True, help="Also delete the control plane's namespace.")
@click.option(
    "-a",
    "--delete-cluster-wide-resources",
    "cluster_wide",
    is_flag=True,
    help="Also delete what every mesh shares: the CRDs (and with them every SMI and "
    "MeshConfig object of the cluster) and the mesh CA's Secret.",
)
@click.pass_context
def uninstall_mesh(
    ctx: click.Context,
    mesh_name: str,
    osm_namespace: str,
    force: bool,
    delete_namespace: bool,
    cluster_wide: bool,
) -> None:
    """Delete exactly what osm install created for the mesh (found by its labels)."""
    with connect(ctx) as api:
        try:
            refs = installed(
                api,
                mesh_name,
                osm_namespace,
                namespace_too=delete_namespace,
                cluster_wide=cluster_wide,
            )
        except KubeError as error:
            fail_with(error, api.server)
        if not refs:
            click.echo(
                f"No OSM control plane with mesh name [{mesh_name}] found in namespace "
                f"[{osm_namespace}]; nothing to delete"
            )
            return
        if not force:
            listing = "\n".join(f"  {ref}" for ref in refs)
            click.echo(f"This deletes:\n{listing}")
            if not click.confirm(
                f"Uninstall OSM [mesh name: {mesh_name}] in namespace [{osm_namespace}]?",
                default=False,
            ):
                click.echo("Nothing was deleted")
                return

        def report(outcome: applying.Outcome) -> None:
            if outcome.error is None:
                click.echo(f"{outcome.ref} deleted")
            else:
                click.echo(describe(outcome.error, api.server), err=True)

        outcomes = applying.delete(api, refs, ignore_not_found=True, report=report)
    if any(outcome.error is not None for outcome in outcomes):
        sys.exit(1)
    click.echo(f"OSM [mesh name: {mesh_name}] in namespace [{osm_namespace}] uninstalled")


# -- mesh list, version ------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _monitored(api: Api) -> dict[str, list[str]]:
    found, _ = api.list("Namespace", None, wellknown.MONITORED_BY_LABEL)
    by_mesh: dict[str, list[str]] = {}
    for namespace in found:
        mesh = _labels(namespace).get(wellknown.MONITORED_BY_LABEL, "")
        by_mesh.setdefault(mesh, []).append(namespace["metadata"]["name"])
    return by_mesh


@click.group(context_settings=CONTEXT)
def mesh() -> None:
    """The meshes installed in the cluster."""


@mesh.command("list", context_settings=CONTEXT)
@click.pass_context
def mesh_list(ctx: click.Context) -> None:
    """List the control planes in the cluster: name, namespace, version, controller pods
    ready, and the namespaces each one monitors."""
    with connect(ctx) as api:
        try:
            found = meshes(api)
            monitored = _monitored(api) if found else {}
        except KubeError as error:
            fail_with(error, api.server)
    if not found:
        click.echo("No osm mesh control planes found")
        return
    rows = [
        (
            m.name,
            m.namespace,
            m.version,
            f"{m.ready}/{m.replicas}",
            ",".join(sorted(monitored.get(m.name, []))) or "<none>",
        )
        for m in found
    ]
    click.echo(
        _table(
            ("MESH NAME", "MESH NAMESPACE", "VERSION", "CONTROLLER PODS READY", "ADDED NAMESPACES"),
            rows,
        )
    )


@click.command(context_settings=CONTEXT)
@click.option("--mesh-name", default=None, help="Only this mesh's control plane.")
@click.option("--client-only", is_flag=True, help="Only the client's version.")
@click.pass_context
def version(ctx: click.Context, mesh_name: str | None, client_only: bool) -> None:
    """The client's version and the control planes' (their osm-controller Deployment's
    app.kubernetes.io/version)."""
    click.echo(f"CLI Version: {osm.__version__}")
    if client_only:
        return
    options = ctx.find_root().obj if isinstance(ctx.find_root().obj, dict) else {}
    try:
        with Api.connect(options.get(KUBECONFIG_KEY), context=options.get(CONTEXT_KEY)) as api:
            found = [m for m in meshes(api) if mesh_name is None or m.name == mesh_name]
    except KubeError as error:
        click.echo(f"Control plane: cannot reach the Kubernetes API: {error}")
        return
    if not found:
        which = f" with mesh name [{mesh_name}]" if mesh_name else ""
        click.echo(f"Control plane: no OSM control plane{which} found in the cluster")
        return
    rows = [(m.name, m.namespace, m.version) for m in found]
    click.echo(_table(("MESH NAME", "MESH NAMESPACE", "VERSION"), rows))


COMMANDS: tuple[click.Command, ...] = (install, uninstall, mesh, version)
