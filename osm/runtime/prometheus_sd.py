"""Prometheus's Kubernetes pod discovery, served as Prometheus HTTP service discovery.

One idea: Debian's ``prometheus`` (the binary local mode runs) is built without
``kubernetes_sd_configs`` (Debian removed Kubernetes discovery for client-go's dependencies).
So a small in-cluster client beside it in the Prometheus pod lists and watches Pods through
the API (`osm.kube.informer`) and answers Prometheus's ``http_sd_configs`` with exactly the
targets and ``__meta_kubernetes_*`` labels that Prometheus's own ``role: pod`` discovery
makes (`target_groups`). OSM's relabelings then run unchanged.

The rules of role pod, as Prometheus's ``discovery/kubernetes/pod.go`` has them:

- a pod without ``status.podIP`` has no targets;
- one target per declared container port, ``<podIP>:<port>``, with the container's name,
  image, port name, number and protocol, and ``_container_init`` (``true`` for init
  containers, which come after the containers); a container without ports is one target at
  ``<podIP>`` without the port labels;
- every target of a pod carries the pod's labels: namespace, name, IP, ``_ready``
  (``true``/``false``/``unknown`` from the Ready condition), ``_phase``, node name, host IP,
  UID, the controller owner's kind and name, and each label and annotation as
  ``_label_<name>``/``_labelpresent_<name>`` and ``_annotation_<name>``/
  ``_annotationpresent_<name>``, names sanitized to ``[a-zA-Z0-9_]``.

HTTP SD takes one label set per group, so each target is a group of its own. The server
answers ``GET /`` (any path) with the JSON list; an unsynced informer answers 503 and
Prometheus keeps its last targets. Run: ``python3 -m osm.runtime.prometheus_sd --port N``
(in-cluster configuration, or ``--kubeconfig``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from osm.base import wellknown
from osm.kube import informer
from osm.kube.client import KubeClient

log = logging.getLogger(__name__)

Manifest = dict[str, Any]
META = "__meta_kubernetes_"
POD = META + "pod_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """A label or annotation name as a Prometheus label name part (Prometheus's strutil)."""
    return _INVALID.sub("_", name)


def _ready(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")).lower()
    return "unknown"


def pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    """The labels every target of ``pod`` carries."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    labels = {
        META + "namespace": str(meta.get("namespace", "")),
        POD + "name": str(meta.get("name", "")),
        POD + "ip": str(status.get("podIP", "")),
        POD + "ready": _ready(status),
        POD + "phase": str(status.get("phase", "")),
        POD + "node_name": str(spec.get("nodeName", "")),
        POD + "host_ip": str(status.get("hostIP", "")),
        POD + "uid": str(meta.get("uid", "")),
    }
    for owner in meta.get("ownerReferences") or ():
        if owner.get("controller"):
            labels[POD + "controller_kind"] = str(owner.get("kind", ""))
            labels[POD + "controller_name"] = str(owner.get("name", ""))
            break
    for prefix, values in (("label", meta.get("labels")), ("annotation", meta.get("annotations"))):
        for key, value in (values or {}).items():
            name = sanitize(key)
            labels[f"{POD}{prefix}_{name}"] = str(value)
            labels[f"{POD}{prefix}present_{name}"] = "true"
    return labels


def pod_targets(pod: Mapping[str, Any]) -> list[dict[str, str]]:
    """One label set per target of ``pod`` (``__address__`` and the container's labels)."""
    spec = pod.get("spec") or {}
    ip = str((pod.get("status") or {}).get("podIP") or "")
    if not ip:
        return []
    containers = [(c, "false") for c in spec.get("containers") or ()]
    containers += [(c, "true") for c in spec.get("initContainers") or ()]
    found = []
    for container, init in containers:
        common = {
            POD + "container_name": str(container.get("name", "")),
            POD + "container_image": str(container.get("image", "")),
            POD + "container_init": init,
        }
        ports = container.get("ports") or ()
        if not ports:
            found.append({"__address__": ip, **common})
        for port in ports:
            number = str(port.get("containerPort", ""))
            host = f"[{ip}]" if ":" in ip else ip
            found.append(
                {
                    "__address__": f"{host}:{number}",
                    **common,
                    POD + "container_port_name": str(port.get("name", "")),
                    POD + "container_port_number": number,
                    POD + "container_port_protocol": str(port.get("protocol", "TCP")),
                }
            )
    return found


def target_groups(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Prometheus HTTP SD's document for ``pods``: one group per target, in pod order."""
    groups = []
    for pod in pods:
        labels = pod_labels(pod)
        for target in pod_targets(pod):
            address = target.pop("__address__")
            groups.append({"targets": [address], "labels": {**labels, **target}})
    return groups


# -- the process ---------------------------------------------------------------------------
class PodDiscovery:
    """Keeps every Pod from an informer and serves their target groups."""

    def __init__(self, client: informer.Source, namespace: str | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.pods: dict[tuple[str, str], Manifest] = {}
        self.synced = asyncio.Event()

    def apply(self, event: informer.Event) -> None:
        if isinstance(event, informer.Sync):
            self.pods = {_key(obj): obj for obj in event.objects}
            self.synced.set()
        elif event.type == "DELETED":
            self.pods.pop(_key(event.object), None)
        else:
            self.pods[_key(event.object)] = event.object

    async def follow(self) -> None:
        async with informer.Informer(self.client, ["Pod"], namespace=self.namespace) as events:
            async for event in events:
                self.apply(event)

    async def handle(self, request: web.Request) -> web.Response:
        if not self.synced.is_set():
            return web.Response(status=503, text="pods not listed yet\n")
        ordered = [self.pods[key] for key in sorted(self.pods)]
        return web.Response(
            text=json.dumps(target_groups(ordered)), content_type="application/json"
        )

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        return app


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


async def serve(
    client: KubeClient, host: str, port: int, namespace: str | None = None
) -> tuple[web.AppRunner, asyncio.Task[None]]:
    """Starts following pods and serving; the caller cleans up the runner and the task."""
    discovery = PodDiscovery(client, namespace)
    task = asyncio.create_task(discovery.follow(), name="pod discovery")
    runner = web.AppRunner(discovery.application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, task


async def _main(args: argparse.Namespace) -> None:
    client = KubeClient.from_kubeconfig(args.kubeconfig)
    runner, task = await serve(client, args.host, args.port, args.namespace)
    log.info("serving Prometheus HTTP SD of pods on %s:%d", args.host, args.port)
    try:
        await task
    finally:
        await runner.cleanup()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m osm.runtime.prometheus_sd")
    parser.add_argument("--host", default=wellknown.LOCALHOST)
    parser.add_argument("--port", type=int, default=wellknown.PROMETHEUS_SD_PORT)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--namespace", default=None, help="Only this namespace's pods.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
