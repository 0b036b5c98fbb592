"""The mutating webhook ``/mutate-pod-creation``: OSM's sidecar injector over
AdmissionReview v1.

One idea: the handler is the pure rule (`osm.injector.admission.mutate_pod`) between two
reads and one write through the API: it reads the pod's Namespace and the MeshConfig,
injects, creates the pod's bootstrap Secret (as OSM's injector does; not on a dry run:
the webhook is ``sideEffects: NoneOnDryRun``), and answers the RFC 6902 patch from the pod
as sent to the injected pod.

The reads come from a `osm.webhook.view.ClusterView` (informers) once it has synced, and
through the API before that, or for a namespace the view has not seen yet.

Answers: a pod that is not injected is allowed unchanged (no patch); a pod the rules
refuse (`InjectionError`) is denied with the field path and the message; a CA that cannot
issue, an API that cannot be read or a Secret that cannot be created is denied with code
500 (the server's fault: the API server reports it, and ``failurePolicy: Fail`` keeps the
pod out). A request that is not a Pod CREATE is denied as misrouted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from osm.base import wellknown
from osm.injector import admission
from osm.injector.values import InjectionError
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError, KubeError
from osm.model.config import MeshConfig
from osm.webhook import review
from osm.webhook.view import ClusterView

log = logging.getLogger(__name__)

PATH = wellknown.INJECTOR_WEBHOOK_PATH


class PodInjector:
    """The handler of `PATH`. `issue` signs bootstrap certificates
    (`osm.webhook.certificates.issuing`); `new_uuid` draws each proxy's UUID."""

    def __init__(
        self,
        client: KubeClient,
        settings: admission.AdmissionSettings,
        issue: admission.Issue,
        new_uuid: Callable[[], uuid.UUID] = uuid.uuid4,
        view: ClusterView | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.issue = issue
        self.new_uuid = new_uuid
        self.view = view

    async def __call__(self, request: review.Request) -> review.Response:
        pod = request.object
        if (
            request.kind.kind != "Pod"
            or request.operation != "CREATE"
            or request.sub_resource
            or pod is None
        ):
            parts = (request.kind.kind, request.sub_resource, request.operation)
            what = " ".join(part for part in parts if part)
            return review.denied(
                request,
                f"this webhook ({PATH}) admits Pod CREATE only, not {what}; check the "
                "MutatingWebhookConfiguration's rules",
                review.BAD_REQUEST,
            )
        name = request.namespace or _namespace_of(pod)
        try:
            namespace, mesh_config = await asyncio.gather(
                self._namespace(name), self._mesh_config()
            )
        except KubeError as error:
            return review.denied(
                request, f"the injector cannot read the API: {error}", review.INTERNAL_ERROR
            )
        if namespace is None:
            return review.denied(request, f'namespace "{name}" not found', 404)
        try:
            injection = admission.mutate_pod(
                pod,
                namespace,
                mesh_config,
                self.settings,
                proxy_uuid=self.new_uuid(),
                issue=self.issue,
            )
        except InjectionError as error:
            return review.denied(request, str(error), review.INVALID)
        except admission.AdmissionUnavailable as error:
            log.error("cannot inject %s/%s: %s", name, request.name, error)
            return review.denied(request, str(error), review.INTERNAL_ERROR)
        if injection.secret is None:
            return review.allowed(request)
        if not request.dry_run:
            try:
                await self.client.create(injection.secret)
            except KubeError as error:
                return review.denied(
                    request,
                    f"the injector cannot create the bootstrap Secret "
                    f"{name}/{injection.secret['metadata']['name']}: {error}",
                    review.INTERNAL_ERROR,
                )
        return review.patched(request, injection.patch)

    async def _namespace(self, name: str) -> Mapping[str, Any] | None:
        if self.view is not None and self.view.synced:
            seen = self.view.namespaces.get(name)
            if seen is not None:
                return seen
        try:
            return await self.client.get("Namespace", None, name)
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    async def _mesh_config(self) -> MeshConfig:
        """The mesh's MeshConfig; its defaults when there is none or it cannot be read
        (logged: the pod is injected as a fresh install would)."""
        if self.view is not None and self.view.synced:
            return self.view.mesh_config()
        try:
            stored = await self.client.get(
                "MeshConfig", self.settings.osm_namespace, wellknown.MESH_CONFIG_NAME
            )
        except ApiError as error:
            if error.code != 404:
                raise
            stored = None
        return admission.mesh_config_for_injection(stored, self.settings.osm_namespace)


def _namespace_of(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata")
    return str(metadata.get("namespace") or "") if isinstance(metadata, Mapping) else ""
