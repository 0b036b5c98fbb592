"""Admission webhooks: the API server calls what the stored MutatingWebhookConfiguration and
ValidatingWebhookConfiguration objects name, as kube-apiserver does.

One idea: `WebhookAdmission` wraps the server's own admission (the inner one: the model's
validation, or the built-in injector chain) and, for each write, runs in kube-apiserver's
order every matching mutating webhook (configurations sorted by name, webhooks in their
order, each seeing the previous one's JSONPatch), then the inner admission (which
validates the result), then every matching validating webhook at once. A DELETE goes to
the webhooks whose rules name DELETE (no inner admission: the server has its own).

Matching is kube-apiserver's (`invocation`, pure): ``rules`` (operations, apiGroups,
apiVersions, resources with ``*``, ``*/*``, ``pods/*``, ``pods/status``; scope),
``matchPolicy`` (Equivalent, the default, matches another served version of the same
group and resource: only TrafficSplit has two, and nothing is converted), then
``namespaceSelector`` over the labels of the object's Namespace (a cluster-scoped object
other than a Namespace always matches; a Namespace is matched by its own labels) and
``objectSelector`` over the labels of the object or of its old state. Writes of the
webhook configurations themselves are never sent to webhooks (kube exempts them, so that
a broken webhook can always be removed). ``matchConditions`` (CEL) are not evaluated: a
webhook with some is called as if they held, and that is logged.

The call: an AdmissionReview v1 POST over HTTPS to ``clientConfig.url``, or to
``clientConfig.service`` (port 443 by default) through a `ServiceResolver`, the server's
certificate verified against ``caBundle`` (the system's roots without one) and the name
``<service>.<namespace>.svc``; ``timeoutSeconds`` (10 by default, at most 30). Outcomes,
with kube-apiserver's messages and codes:

- ``allowed: false``: refused with the webhook's Status, its message prefixed
  ``admission webhook "<name>" denied the request: `` and its code (400 when it gives
  none or one under 400);
- a failed call (unreachable, TLS, timeout, a non-200 answer, an invalid AdmissionReview:
  wrong uid or kind, a patch from a validating webhook, an undecodable patch):
  ``failurePolicy: Fail`` (the default) refuses with 500 InternalError
  ``Internal error occurred: failed calling webhook "<name>": ...``; ``Ignore`` logs it
  and the write goes on;
- a dry run reaching a webhook whose ``sideEffects`` is neither None nor NoneOnDryRun:
  400 ``admission webhook "<name>" does not support dry run``, whatever the policy;
- a JSONPatch that does not apply, or a patch on a DELETE: 500, whatever the policy;
- ``warnings`` become ``Warning`` headers (the server's warnings).

Configurations are read from the store on each write: one store list per kind, no cache
to invalidate. Measured on SQLite, a Pod create through the API costs about 0.3 ms more
with the dispatcher and no configuration, 0.7 ms more with two that match nothing, and
1.5 ms more when one mutating and one validating webhook (local HTTPS, connections kept)
are called, beside 1.5 ms without the dispatcher.
The store keeps them leniently (as sent): a selector kube would have refused makes every
write its rules match fail with 500, as kube-apiserver does with a stored selector it
cannot parse.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import json
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import jsonpatch

from osm.apiserver import resources, selectors
from osm.apiserver import server as apiserver
from osm.apiserver.resources import Resource
from osm.apiserver.status import ApiError, Details, not_found
from osm.base import wellknown
from osm.model import kinds
from osm.model.errors import Problem
from osm.store import api as store_api

log = logging.getLogger(__name__)

MUTATING = "MutatingWebhookConfiguration"
VALIDATING = "ValidatingWebhookConfiguration"
ADMISSION_GROUP = "admissionregistration.k8s.io"
REVIEW_API_VERSION = "admission.k8s.io/v1"
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 30
DEFAULT_SERVICE_PORT = 443
"""kube-apiserver's port for a webhook service that names none."""

EVERYTHING = store_api.LabelSelector()
ServiceResolver = Callable[[str, str, int], Awaitable[tuple[str, int]]]
"""kube-apiserver's ``webhook.ServiceResolver``: (namespace, name, port) -> where to
connect (host, port). The TLS name checked stays ``<name>.<namespace>.svc``."""


class ResolveError(Exception):
    """A webhook's service cannot be reached (no such Service, port or ready endpoint)."""


class CallFailed(Exception):
    """A webhook could not be called or answered nonsense (kube's ``ErrCallingWebhook``):
    its failurePolicy decides."""


# -- configurations -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One of a webhook's ``rules`` (``RuleWithOperations``)."""

    operations: frozenset[str]
    groups: frozenset[str]
    versions: frozenset[str]
    resources: tuple[str, ...]
    scope: str = "*"


@dataclasses.dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where a webhook listens: a ``url``, or a Service (namespace, name, port, path)."""

    url: str = ""
    namespace: str = ""
    service: str = ""
    port: int = DEFAULT_SERVICE_PORT
    path: str = ""
    ca_bundle: str = ""
    """Base64 of PEM certificates, as the object carries it; empty: the system's roots."""

    @property
    def host(self) -> str:
        """The name the server's certificate must carry."""
        return f"{self.service}.{self.namespace}.svc"


@dataclasses.dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook of a configuration, read leniently (what the object's defaults say)."""

    name: str
    configuration: str
    mutating: bool
    rules: tuple[Rule, ...]
    client: ClientConfig
    namespace_selector: store_api.LabelSelector = EVERYTHING
    object_selector: store_api.LabelSelector = EVERYTHING
    selector_error: str = ""
    """Why a stored selector cannot be read (the webhook then refuses what it matches)."""
    match_policy: str = "Equivalent"
    side_effects: str | None = None
    failure_policy: str = "Fail"
    timeout: int = DEFAULT_TIMEOUT
    review_versions: tuple[str, ...] = ("v1",)
    match_conditions: bool = False


def read_configuration(obj: Mapping[str, Any]) -> list[Webhook]:
    """The webhooks of a stored configuration, in their order."""
    mutating = obj.get("kind") == MUTATING
    configuration = str((obj.get("metadata") or {}).get("name") or "")
    webhooks = obj.get("webhooks") or []
    return [
        _webhook(item, configuration, mutating)
        for item in (webhooks if isinstance(webhooks, list) else [])
        if isinstance(item, Mapping)
    ]


def _webhook(item: Mapping[str, Any], configuration: str, mutating: bool) -> Webhook:
    rules = tuple(
        Rule(
            frozenset(_strings(rule.get("operations"))),
            frozenset(_strings(rule.get("apiGroups"))),
            frozenset(_strings(rule.get("apiVersions"))),
            tuple(_strings(rule.get("resources"))),
            str(rule.get("scope") or "*"),
        )
        for rule in _maps(item.get("rules"))
    )
    client = item.get("clientConfig") if isinstance(item.get("clientConfig"), Mapping) else {}
    assert isinstance(client, Mapping)
    service = client.get("service") if isinstance(client.get("service"), Mapping) else {}
    assert isinstance(service, Mapping)
    errors = []
    selected: list[store_api.LabelSelector] = []
    for field in ("namespaceSelector", "objectSelector"):
        try:
            selected.append(selectors.label_selector(item.get(field)))
        except ValueError as error:
            errors.append(f"{field}: {error}")
            selected.append(store_api.LabelSelector())
    timeout = item.get("timeoutSeconds")
    side_effects = item.get("sideEffects")
    return Webhook(
        name=str(item.get("name") or ""),
        configuration=configuration,
        mutating=mutating,
        rules=rules,
        client=ClientConfig(
            url=str(client.get("url") or ""),
            namespace=str(service.get("namespace") or ""),
            service=str(service.get("name") or ""),
            port=_int(service.get("port"), DEFAULT_SERVICE_PORT),
            path=str(service.get("path") or ""),
            ca_bundle=str(client.get("caBundle") or ""),
        ),
        namespace_selector=selected[0],
        object_selector=selected[1],
        selector_error="; ".join(errors),
        match_policy=str(item.get("matchPolicy") or "Equivalent"),
        side_effects=str(side_effects) if side_effects is not None else None,
        failure_policy=str(item.get("failurePolicy") or "Fail"),
        timeout=min(max(_int(timeout, DEFAULT_TIMEOUT), 1), MAX_TIMEOUT),
        review_versions=tuple(_strings(item.get("admissionReviewVersions"))) or ("v1",),
        match_conditions=bool(item.get("matchConditions")),
    )


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _maps(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# -- matching (pure) ----------------------------------------------------------------------
def exempt(attributes: apiserver.Attributes) -> bool:
    """Writes of webhook configurations never go to webhooks (kube-apiserver's
    ``IsExemptAdmissionConfigurationResource``)."""
    return attributes.resource.group == ADMISSION_GROUP and attributes.resource.kind in (
        MUTATING,
        VALIDATING,
    )


def rule_matches(rule: Rule, attributes: apiserver.Attributes, resource: Resource) -> bool:
    """kube-apiserver's ``rules.Matcher`` for ``resource`` (the requested one, or an
    equivalent): operation, group, version, resource/subresource and scope."""
    if "*" not in rule.operations and attributes.operation not in rule.operations:
        return False
    if "*" not in rule.groups and resource.group not in rule.groups:
        return False
    if "*" not in rule.versions and resource.version not in rule.versions:
        return False
    found = False
    for name in rule.resources:
        plural, _, sub = name.partition("/")
        if plural in ("*", resource.plural) and sub in ("*", attributes.subresource):
            found = True
            break
    if not found:
        return False
    is_namespace = resource.kind == "Namespace"
    if rule.scope == "Namespaced":
        return not is_namespace and bool(attributes.namespace)
    if rule.scope == "Cluster":
        return is_namespace or not attributes.namespace
    return rule.scope == "*"


def matched_resource(webhook: Webhook, attributes: apiserver.Attributes) -> Resource | None:
    """The resource the webhook is called for: the requested one if a rule names it,
    else (matchPolicy Equivalent) another version of the same group and resource that a
    rule names; None when no rule matches."""
    requested = attributes.resource
    for rule in webhook.rules:
        if rule_matches(rule, attributes, requested):
            return requested
    if webhook.match_policy != "Equivalent":
        return None
    for rule in webhook.rules:
        for api_version in kinds.BY_KIND[requested.kind].versions:
            group, _, version = api_version.rpartition("/")
            equivalent = resources.find(group, version, requested.plural)
            if equivalent is None or equivalent == requested:
                continue
            if rule_matches(rule, attributes, equivalent):
                return equivalent
    return None


def namespace_of_interest(attributes: apiserver.Attributes) -> str:
    """The Namespace whose labels a namespaceSelector reads ("" for none: a cluster-scoped
    object that is not a Namespace)."""
    if attributes.resource.kind == "Namespace":
        return attributes.name
    return attributes.namespace


def selected(
    webhook: Webhook,
    attributes: apiserver.Attributes,
    obj: Mapping[str, Any] | None,
    namespace_labels: Mapping[str, str],
) -> bool:
    """kube-apiserver's namespace and object matchers. ``namespace_labels``: those of
    `namespace_of_interest` (a Namespace's own, from the object, on its CREATE and
    UPDATE)."""
    if namespace_of_interest(attributes) and not webhook.namespace_selector.matches(
        namespace_labels
    ):
        return False
    if not webhook.object_selector.requirements:
        return True
    return any(
        candidate is not None and webhook.object_selector.matches(store_api.labels_of(candidate))
        for candidate in (obj, attributes.old)
    )


def dry_run_refusal(webhook: Webhook, attributes: apiserver.Attributes) -> ApiError | None:
    """What kube-apiserver answers when a dry run reaches a webhook with side effects."""
    if not attributes.dry_run:
        return None
    if webhook.side_effects in ("None", "NoneOnDryRun"):
        return None
    if webhook.side_effects is None:
        return None  # a call failure (see `WebhookAdmission._call_hook`)
    return ApiError(400, f'admission webhook "{webhook.name}" does not support dry run')


# -- the dispatcher -----------------------------------------------------------------------
class WebhookDenied(ApiError):
    """A webhook's refusal: its own Status, sanitized as kube-apiserver's
    ``ToStatusErr`` does."""

    def __init__(self, webhook: str, result: Mapping[str, Any] | None) -> None:
        body = dict(result) if isinstance(result, Mapping) else {}
        code = _int(body.get("code"), 0)
        code = code if code >= 400 else 400
        denied = f'admission webhook "{webhook}" denied the request'
        message, reason = str(body.get("message") or ""), str(body.get("reason") or "")
        if message:
            text = f"{denied}: {message}"
        elif reason:
            text = f"{denied}: {reason}"
        else:
            text = f"{denied} without explanation"
        super().__init__(code, text, reason=reason)
        self._body = {
            key: value
            for key, value in body.items()
            if key in ("reason", "details", "metadata") and value
        }

    def status(self) -> dict[str, Any]:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, **self._body}
        status.update(status="Failure", message=self.message, code=self.code)
        return status


def internal_error(message: str) -> ApiError:
    """kube-apiserver's ``NewInternalError``."""
    return ApiError(
        500,
        f"Internal error occurred: {message}",
        details=Details(causes=(("", "", message),)),
    )


class StoreResolver:
    """The default `ServiceResolver`: the Service's Endpoints in the store, the first
    ready address and the port that the Service port targets. Local mode has no
    kube-proxy, so a ClusterIP leads nowhere; the endpoint itself does (kube-apiserver
    too resolves a webhook service to an endpoint with ``--enable-aggregator-routing``)."""

    def __init__(self, store: store_api.Store) -> None:
        self.store = store

    async def __call__(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        try:
            service = await self.store.get(store_api.ObjectKey("Service", namespace, name))
        except store_api.NotFound:
            raise ResolveError(f'service "{name}" not found') from None
        ports = _maps((service.get("spec") or {}).get("ports"))
        wanted = next((p for p in ports if p.get("port") == port), None)
        if wanted is None:
            raise ResolveError(f'service "{namespace}/{name}" has no port {port}')
        port_name = str(wanted.get("name") or "")
        try:
            endpoints = await self.store.get(store_api.ObjectKey("Endpoints", namespace, name))
        except store_api.NotFound:
            endpoints = {}
        for subset in _maps(endpoints.get("subsets")):
            addresses = _maps(subset.get("addresses"))
            subset_ports = _maps(subset.get("ports"))
            target = next(
                (p for p in subset_ports if str(p.get("name") or "") == port_name),
                subset_ports[0] if len(subset_ports) == 1 and not port_name else None,
            )
            if addresses and target is not None and isinstance(target.get("port"), int):
                return str(addresses[0].get("ip")), int(target["port"])
        raise ResolveError(f'service "{namespace}/{name}" has no ready endpoint')


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    """One webhook's answer: the patched object (mutating) and its warnings."""

    obj: dict[str, Any] | None
    warnings: tuple[str, ...] = ()


class WebhookAdmission:
    """`osm.apiserver.server.RequestAdmission` that calls the stored webhooks around
    ``inner``. `close` it (its HTTPS connections) when the server stops."""

    def __init__(self, inner: apiserver.Admission, resolver: ServiceResolver) -> None:
        self.inner = inner
        self.resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the Admission protocol -------------------------------------------------------
    async def admit(
        self, store: store_api.Store, obj: Mapping[str, Any], *, creating: bool
    ) -> apiserver.Admitted:
        """A write known only by its object (not from the API server): its preferred
        resource, no old state."""
        meta = obj.get("metadata") or {}
        resource = resources.preferred(str(obj.get("kind")))
        attributes = apiserver.Attributes(
            "CREATE" if creating else "UPDATE",
            resource,
            str(meta.get("namespace") or "") if resource.namespaced else "",
            str(meta.get("name") or ""),
        )
        return await self.admit_request(store, obj, attributes)

    async def deleting(
        self, store: store_api.Store, keys: Sequence[store_api.ObjectKey]
    ) -> list[store_api.ObjectKey]:
        return await self.inner.deleting(store, keys)

    async def admit_request(
        self, store: store_api.Store, obj: Mapping[str, Any], attributes: apiserver.Attributes
    ) -> apiserver.Admitted:
        hooks = [] if exempt(attributes) else await self._candidates(store, attributes)
        current = copy.deepcopy(dict(obj))
        warnings: list[str] = []
        if not attributes.mutated:
            mutated, warnings = await self._mutate(store, hooks, current, attributes)
            assert mutated is not None  # a patch applies to an object and gives one
            current = mutated
        admitted = await self._inner(store, current, attributes)
        if any(problem.severity == "error" for problem in admitted.problems):
            return admitted  # kube: validation failed, no validating webhook runs
        key = store_api.ObjectKey.of(current)
        result = next((o for o in admitted.objects if store_api.ObjectKey.of(o) == key), current)
        validating = [hook for hook in hooks if not hook[0].mutating]
        if validating:
            warnings += await self._validate(store, validating, attributes, result)
        problems = admitted.problems + [Problem(w, severity="warning") for w in warnings]
        return apiserver.Admitted(admitted.objects, problems)

    async def mutate(
        self, store: store_api.Store, obj: dict[str, Any], attributes: apiserver.Attributes
    ) -> tuple[dict[str, Any], list[str]]:
        """The mutating webhooks alone (the server calls them before its write lock)."""
        hooks = [] if exempt(attributes) else await self._candidates(store, attributes)
        mutated, warnings = await self._mutate(store, hooks, copy.deepcopy(obj), attributes)
        assert mutated is not None  # a patch applies to an object and gives one
        return mutated, warnings

    async def _mutate(
        self,
        store: store_api.Store,
        hooks: Sequence[tuple[Webhook, Resource]],
        current: dict[str, Any] | None,
        attributes: apiserver.Attributes,
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """The matching mutating webhooks in order, each given the previous one's result;
        `current` None for a DELETE (the webhooks see the old object)."""
        warnings: list[str] = []
        mutating = [hook for hook in hooks if hook[0].mutating]
        if mutating:
            labels = await self._namespace_labels(store, attributes, current)
            for hook, resource in mutating:
                if selected(hook, attributes, current, labels):
                    outcome = await self._dispatch(hook, resource, attributes, current)
                    warnings += outcome.warnings
                    if outcome.obj is not None:
                        current = outcome.obj
        return current, warnings

    async def review_delete(
        self, store: store_api.Store, attributes: apiserver.Attributes
    ) -> list[str]:
        if exempt(attributes):
            return []
        hooks = await self._candidates(store, attributes)
        _, warnings = await self._mutate(store, hooks, None, attributes)
        validating = [hook for hook in hooks if not hook[0].mutating]
        if validating:
            warnings += await self._validate(store, validating, attributes, None)
        return warnings

    # -- steps ------------------------------------------------------------------------
    async def _inner(
        self, store: store_api.Store, obj: dict[str, Any], attributes: apiserver.Attributes
    ) -> apiserver.Admitted:
        if isinstance(self.inner, apiserver.RequestAdmission):
            return await self.inner.admit_request(store, obj, attributes)
        return await self.inner.admit(store, obj, creating=attributes.operation == "CREATE")

    async def _candidates(
        self, store: store_api.Store, attributes: apiserver.Attributes
    ) -> list[tuple[Webhook, Resource]]:
        """The webhooks whose rules match, mutating then validating, each kind's
        configurations sorted by name; with the resource each is called for."""
        found = []
        for kind in (MUTATING, VALIDATING):
            configurations, _ = await store.list(kind)
            for configuration in configurations:  # the store lists them sorted by name
                for hook in read_configuration(configuration):
                    resource = matched_resource(hook, attributes)
                    if resource is not None:
                        found.append((hook, resource))
        return found

    async def _namespace_labels(
        self,
        store: store_api.Store,
        attributes: apiserver.Attributes,
        obj: Mapping[str, Any] | None,
    ) -> Mapping[str, str]:
        """The labels a namespaceSelector reads (kube's ``GetNamespaceLabels``), with the
        ``kubernetes.io/metadata.name`` label even on a Namespace written to the store
        directly (the API server sets it on every write it serves)."""
        name = namespace_of_interest(attributes)
        if not name:
            return {}
        if attributes.resource.kind == "Namespace" and obj is not None:
            labels = dict(store_api.labels_of(obj))
        else:
            try:
                namespace = await store.get(store_api.ObjectKey("Namespace", "", name))
            except store_api.NotFound:
                raise not_found("namespaces", name) from None
            labels = dict(store_api.labels_of(namespace))
        labels.setdefault(wellknown.NAMESPACE_NAME_LABEL, name)
        return labels

    async def _validate(
        self,
        store: store_api.Store,
        hooks: Sequence[tuple[Webhook, Resource]],
        attributes: apiserver.Attributes,
        obj: dict[str, Any] | None,
    ) -> list[str]:
        """Every selected validating webhook at once; the first refusal (in webhook
        order) raised, else their warnings."""
        labels = await self._namespace_labels(store, attributes, obj)
        chosen = [(h, r) for h, r in hooks if selected(h, attributes, obj, labels)]
        results = await asyncio.gather(
            *(self._dispatch(hook, resource, attributes, obj) for hook, resource in chosen),
            return_exceptions=True,
        )
        warnings: list[str] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            warnings += result.warnings
        return warnings

    async def _dispatch(
        self,
        hook: Webhook,
        resource: Resource,
        attributes: apiserver.Attributes,
        obj: dict[str, Any] | None,
    ) -> _Outcome:
        """One webhook called, its failurePolicy applied to a failed call."""
        if hook.selector_error:
            raise internal_error(hook.selector_error)
        if hook.match_conditions:
            log.warning("webhook %s: matchConditions are not evaluated; calling it", hook.name)
        refusal = dry_run_refusal(hook, attributes)
        if refusal is not None:
            raise refusal
        try:
            return await self._call_hook(hook, resource, attributes, obj)
        except CallFailed as error:
            message = f'failed calling webhook "{hook.name}": {error}'
            if hook.failure_policy == "Ignore":
                log.warning("Failed calling webhook, failing open %s: %s", hook.name, message)
                return _Outcome(None)
            log.warning("Failed calling webhook, failing closed %s: %s", hook.name, message)
            raise internal_error(message) from None

    async def _call_hook(
        self,
        hook: Webhook,
        resource: Resource,
        attributes: apiserver.Attributes,
        obj: dict[str, Any] | None,
    ) -> _Outcome:
        if attributes.dry_run and hook.side_effects is None:
            raise CallFailed("Webhook SideEffects is nil")
        if "v1" not in hook.review_versions:
            raise CallFailed("webhook does not accept known AdmissionReview versions (v1)")
        uid = str(uuid.uuid4())
        review = admission_review(uid, resource, attributes, obj)
        answer = await self._post(hook, review)
        response = verify_response(uid, hook.mutating, answer)
        warnings = tuple(_strings(response.get("warnings")))
        if not response.get("allowed"):
            raise WebhookDenied(hook.name, response.get("status"))
        patch = response.get("patch")
        if not patch:
            return _Outcome(None, warnings)
        try:
            operations = json.loads(base64.b64decode(str(patch), validate=True))
            parsed = jsonpatch.JsonPatch(operations)
        except (ValueError, TypeError, binascii.Error, jsonpatch.JsonPatchException) as error:
            raise CallFailed(f"received undecodable patch in webhook response: {error}") from None
        if not operations:
            return _Outcome(None, warnings)
        if obj is None:
            raise internal_error(
                f'admission webhook "{hook.name}" attempted to modify the object, which is '
                "not supported for this operation"
            )
        try:
            patched = parsed.apply(obj)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            raise internal_error(str(error)) from None
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise internal_error(f'admission webhook "{hook.name}" made the object no object')
        try:
            same = store_api.ObjectKey.of(patched) == store_api.ObjectKey.of(obj)
        except store_api.InvalidObject:
            same = False
        if not same or patched.get("apiVersion") != obj.get("apiVersion"):
            raise internal_error(
                f'admission webhook "{hook.name}" changed the object\'s apiVersion, kind, '
                "namespace or name"
            )
        return _Outcome(patched, warnings)

    async def _post(self, hook: Webhook, review: Mapping[str, Any]) -> Any:
        """The webhook's decoded answer to ``review``; `CallFailed` otherwise."""
        client = hook.client
        timeout = f"timeout={hook.timeout}s"
        if client.url:
            shown = connect = client.url + ("&" if "?" in client.url else "?") + timeout
            server_hostname: str | None = None
            headers: dict[str, str] = {}
        elif client.service and client.namespace:
            path = client.path or "/"
            shown = f"https://{client.host}:{client.port}{path}?{timeout}"
            try:
                host, port = await self.resolver(client.namespace, client.service, client.port)
            except ResolveError as error:
                raise CallFailed(f'failed to call webhook: Post "{shown}": {error}') from None
            bracketed = f"[{host}]" if ":" in host else host
            connect = f"https://{bracketed}:{port}{path}?{timeout}"
            server_hostname = client.host
            headers = {"Host": f"{client.host}:{client.port}"}
        else:
            raise CallFailed("could not get REST client: the webhook names no url nor service")
        context = self._context(client.ca_bundle)
        try:
            async with asyncio.timeout(hook.timeout):
                async with self._client().post(
                    connect,
                    data=json.dumps(review, separators=(",", ":")).encode(),
                    headers={**headers, "Content-Type": "application/json"},
                    ssl=context,
                    server_hostname=server_hostname,
                ) as answer:
                    body = await answer.read()
                    if answer.status != 200:
                        text = body.decode(errors="replace").strip()[:300]
                        raise CallFailed(
                            f'failed to call webhook: an error on the server ("{text}") has '
                            f"prevented the request from succeeding (post {shown}: "
                            f"{answer.status})"
                        )
        except TimeoutError:
            raise CallFailed(
                f'failed to call webhook: Post "{shown}": context deadline exceeded'
            ) from None
        except (aiohttp.ClientError, OSError, ssl.SSLError) as error:
            raise CallFailed(f'failed to call webhook: Post "{shown}": {error}') from None
        try:
            return json.loads(body)
        except ValueError as error:
            raise CallFailed(f"received invalid webhook response: {error}") from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), trust_env=False
            )
        return self._session

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        """A client TLS context trusting ``ca_bundle`` alone (kept per bundle, so
        connections are reused); the system's roots without one."""
        context = self._contexts.get(ca_bundle)
        if context is not None:
            return context
        if ca_bundle:
            try:
                pem = base64.b64decode(ca_bundle, validate=True).decode()
                context = ssl.create_default_context(cadata=pem)
            except (ValueError, binascii.Error, ssl.SSLError) as error:
                raise CallFailed(
                    f"could not get REST client: unable to load root certificates: {error}"
                ) from None
        else:
            context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._contexts[ca_bundle] = context
        return context


def admission_review(
    uid: str,
    resource: Resource,
    attributes: apiserver.Attributes,
    obj: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The AdmissionReview v1 request kube-apiserver sends: ``kind``/``resource`` as the
    webhook's rule matched them, ``requestKind``/``requestResource`` as requested."""
    requested = attributes.resource
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
        "resource": {
            "group": resource.group,
            "version": resource.version,
            "resource": resource.plural,
        },
        "requestKind": {
            "group": requested.group,
            "version": requested.version,
            "kind": requested.kind,
        },
        "requestResource": {
            "group": requested.group,
            "version": requested.version,
            "resource": requested.plural,
        },
        "name": attributes.name,
        "operation": attributes.operation,
        "userInfo": {
            "username": attributes.user,
            "groups": ["system:authenticated"] if attributes.user else [],
        },
        "object": obj,
        "oldObject": attributes.old,
        "dryRun": attributes.dry_run,
        "options": dict(attributes.options) or None,
    }
    if attributes.subresource:
        request["subResource"] = request["requestSubResource"] = attributes.subresource
    if attributes.namespace:
        request["namespace"] = attributes.namespace
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "request": request}


def verify_response(uid: str, mutating: bool, review: Any) -> dict[str, Any]:
    """The ``response`` of a webhook's AdmissionReview, checked as kube-apiserver's
    ``VerifyAdmissionResponse`` does; `CallFailed` with its words otherwise."""

    def invalid(problem: str) -> CallFailed:
        return CallFailed(f"received invalid webhook response: {problem}")

    if not isinstance(review, Mapping):
        raise invalid("the answer is not an AdmissionReview object")
    response = review.get("response")
    if not isinstance(response, Mapping):
        raise invalid("webhook response was absent")
    if response.get("uid") != uid:
        raise invalid(f'expected response.uid="{uid}", got "{response.get("uid") or ""}"')
    api_version, kind = review.get("apiVersion"), review.get("kind")
    if (api_version, kind) != (REVIEW_API_VERSION, "AdmissionReview"):
        group, _, version = str(api_version or "").rpartition("/")
        raise invalid(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got "
            f"{group}/{version}, Kind={kind or ''}"
        )
    patch, patch_type = response.get("patch"), response.get("patchType")
    if mutating:
        if patch and patch_type is None:
            raise invalid("webhook returned response.patch but not response.patchType")
        if not patch and patch_type is not None:
            raise invalid("webhook returned response.patchType but not response.patch")
        if patch_type is not None and patch_type != "JSONPatch":
            raise CallFailed(f'unsupported patch type "{patch_type}"')
    else:
        if patch:
            raise invalid("validating webhook may not return response.patch")
        if patch_type is not None:
            raise invalid("validating webhook may not return response.patchType")
    return dict(response)
