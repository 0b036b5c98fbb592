"""The validating webhook ``/validate``: the model's strict kinds and the Pod update rules,
over AdmissionReview v1.

One idea: what `osm validate` and the local API refuse, the cluster refuses, with the same
words. An object of a kind the model parses strictly (the SMI kinds, MeshConfig, OSM's
policy kinds) is checked by `osm.model.kinds.parse`, and every problem is in the one
message, each with its field path (kube-apiserver shows only the message); a Pod UPDATE
is checked by `osm.injector.admission.check_pod_update` (the injector's additions and the
proxy's UUID stay). The model's warnings go back as the response's warnings, which kubectl
prints. Everything else (DELETE, CONNECT, kinds the model reads leniently or not at all)
is allowed: those are the API server's to validate.

It is stateless: it reads nothing from the API, so it needs no client.
"""

from __future__ import annotations

from collections.abc import Sequence

from osm.base import wellknown
from osm.injector import admission
from osm.model import kinds
from osm.model.errors import Problem
from osm.webhook import review

PATH = wellknown.VALIDATING_WEBHOOK_PATH


async def validate(request: review.Request) -> review.Response:
    """The handler of `PATH`."""
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return review.allowed(request)
    kind = request.kind.kind
    if kind == "Pod":
        if request.operation != "UPDATE" or request.old_object is None:
            return review.allowed(request)
        return _answer(request, admission.check_pod_update(request.old_object, request.object))
    info = kinds.BY_KIND.get(kind)
    if info is None or not info.strict:
        return review.allowed(request)
    obj = request.object
    if request.namespace and info.namespaced:
        # A namespaced object created without metadata.namespace is in the request's.
        metadata = obj.get("metadata")
        if isinstance(metadata, dict) and not metadata.get("namespace"):
            obj = {**obj, "metadata": {**metadata, "namespace": request.namespace}}
    _, problems = kinds.parse(obj, default_namespace=request.namespace or "default")
    return _answer(request, problems)


def _answer(request: review.Request, problems: Sequence[Problem]) -> review.Response:
    errors = [p for p in problems if p.severity == "error"]
    warnings = [describe(p) for p in problems if p.severity != "error"]
    if not errors:
        return review.allowed(request, warnings)
    return review.denied(request, message(errors), review.INVALID, warnings)


def message(errors: Sequence[Problem]) -> str:
    """Every error in one line: ``TrafficSplit ns/name is invalid: spec.service: ...;
    spec.backends[0].weight: ...``."""
    first = errors[0].object_ref
    details = "; ".join(describe(p, with_object=p.object_ref != first) for p in errors)
    count = f"{len(errors)} problems" if len(errors) > 1 else "1 problem"
    return f"{first or 'the object'} is invalid ({count}): {details}"


def describe(problem: Problem, *, with_object: bool = False) -> str:
    """``path: message`` (with the object first when asked)."""
    parts = [problem.object_ref] if with_object and problem.object_ref else []
    if problem.path:
        parts.append(problem.path)
    parts.append(problem.message)
    return ": ".join(parts)
