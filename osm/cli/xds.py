"""``osm xds``: look at the Envoy configuration the control plane would serve, offline.

The one idea: ``osm xds dump`` runs the same pure pipeline as the controller
(manifests -> MeshState -> catalog -> xDS builders -> checked snapshots) on plain
manifest files, with Pods and ClusterIPs made up as `osm.catalog.offline` documents,
and prints one proxy's resources as JSON (protobuf's JSON mapping). ``--sidecar python``
shows what local mode serves (its pods run the Python sidecar: gRPC ports as TCP).

No certificates are issued offline: SDS secrets are printed with placeholder PEM text
(``PLACEHOLDER: offline dump, no certificate issued``), so every reference can be
followed but nothing looks like a key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
from google.protobuf import json_format

from osm.base import wellknown
from osm.base.identity import DataPlane
from osm.catalog import offline
from osm.catalog.ids import ProxyId
from osm.catalog.state import MeshState
from osm.model import manifest
from osm.model.core import Deployment
from osm.xds import generator, snapshot

TYPES = tuple(wellknown.TYPES_BY_SHORT_NAME)


@click.group(name="xds")
def xds() -> None:
    """Inspect the xDS configuration (Envoy v3) the mesh generates."""


@xds.command(name="dump")
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Manifest file or directory (repeatable).",
)
@click.option(
    "--proxy",
    "proxy_name",
    required=True,
    help="NAMESPACE/NAME of a pod, or of a deployment (its first pod).",
)
@click.option(
    "--type",
    "type_name",
    type=click.Choice(TYPES),
    default=None,
    help="Only this resource type (default: all).",
)
@click.option(
    "--sidecar",
    type=click.Choice([plane.value for plane in DataPlane]),
    default=DataPlane.ENVOY.value,
    show_default=True,
    help="Data plane of the made-up pods: envoy (Kubernetes) or python (local mode, "
    "where gRPC ports are TCP).",
)
def dump(paths: Sequence[str], proxy_name: str, type_name: str | None, sidecar: str) -> None:
    """Print one proxy's resources as JSON, computed offline from manifests."""
    loaded = manifest.load_paths(paths)
    if loaded.errors:
        lines = "\n".join(f"  {p}" for p in loaded.errors)
        raise click.ClickException(f"the manifests have errors:\n{lines}")
    marks = {wellknown.DATA_PLANE_ANNOTATION: sidecar} if sidecar != DataPlane.ENVOY else {}
    resources = offline.synthesize(loaded.resources, marks)
    state = MeshState.from_resources(resources)
    try:
        wanted = ProxyId.parse(proxy_name)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--proxy") from error
    built = generator.build_snapshots(state)
    proxy_id = _resolve(state, built, wanted)
    if proxy_id is None:
        valid = ", ".join(str(p) for p in sorted(built.snapshots)) or "(none)"
        raise click.ClickException(
            f'no proxy "{wanted}" in these manifests (a pod, or a deployment of a mesh '
            f"namespace); valid proxies: {valid}"
        )
    if proxy_id in built.errors:
        raise click.ClickException(f"{proxy_id}: {built.errors[proxy_id]}")
    found = built.snapshots[proxy_id]
    type_urls = (
        [wellknown.TYPES_BY_SHORT_NAME[type_name]] if type_name else list(wellknown.PUSH_ORDER)
    )
    output = {
        "proxy": str(proxy_id),
        "identity": str(found.proxy.identity),
        "kind": found.proxy.kind,
        "sidecar": found.proxy.sidecar,
        "resources": {
            url: {
                "version": found.version(url),
                "resources": [
                    json_format.MessageToDict(b.message)
                    for _, b in sorted(found.of_type(url).items())
                ],
            }
            for url in type_urls
        },
        "warnings": [str(w) for w in built.warnings],
    }
    click.echo(json.dumps(output, indent=2, sort_keys=False))


def _resolve(state: MeshState, built: snapshot.Snapshots, wanted: ProxyId) -> ProxyId | None:
    if wanted in built.snapshots or wanted in built.errors:
        return wanted
    deployment = state.get(Deployment.KIND, wanted.namespace, wanted.name)
    if isinstance(deployment, Deployment):
        for name in offline.pod_names(deployment):
            candidate = ProxyId(wanted.namespace, name)
            if candidate in built.snapshots or candidate in built.errors:
                return candidate
    return None
