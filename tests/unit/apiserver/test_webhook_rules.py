"""Which webhooks a write reaches, as kube-apiserver decides it: rules (operations, groups,
versions, resources with their wildcards and subresources, scope), matchPolicy,
namespaceSelector, objectSelector, the exemption of webhook configurations, and what a
dry run does to a webhook with side effects; and how a webhook's answer is checked."""

from __future__ import annotations

from typing import Any

import pytest

from osm.apiserver import resources, selectors, webhooks
from osm.apiserver import server as apiserver

POD = resources.preferred("Pod")
DEPLOYMENT = resources.preferred("Deployment")
NAMESPACE = resources.preferred("Namespace")
CLUSTER_ROLE = resources.preferred("ClusterRole")
MUTATING = resources.preferred("MutatingWebhookConfiguration")
SPLIT_NEW = resources.find("split.smi-spec.io", "v1alpha4", "trafficsplits")
SPLIT_OLD = resources.find("split.smi-spec.io", "v1alpha2", "trafficsplits")


def attributes(
    resource: apiserver.Resource = POD,
    operation: apiserver.Operation = "CREATE",
    *,
    namespace: str = "shop",
    name: str = "web",
    subresource: str = "",
    dry_run: bool = False,
    old: dict[str, Any] | None = None,
) -> apiserver.Attributes:
    return apiserver.Attributes(
        operation,
        resource,
        namespace if resource.namespaced else "",
        name,
        subresource,
        old=old,
        dry_run=dry_run,
    )


def hook(
    *,
    operations: tuple[str, ...] = ("CREATE",),
    groups: tuple[str, ...] = ("",),
    versions: tuple[str, ...] = ("v1",),
    resources_: tuple[str, ...] = ("pods",),
    scope: str | None = None,
    **fields: Any,
) -> webhooks.Webhook:
    rule: dict[str, Any] = {
        "operations": list(operations),
        "apiGroups": list(groups),
        "apiVersions": list(versions),
        "resources": list(resources_),
    }
    if scope is not None:
        rule["scope"] = scope
    item = {
        "name": "check.example.com",
        "rules": [rule],
        "clientConfig": {"url": "https://127.0.0.1/x"},
        "sideEffects": "None",
        **fields,
    }
    config = {"kind": "ValidatingWebhookConfiguration", "metadata": {"name": "c"}}
    (found,) = webhooks.read_configuration({**config, "webhooks": [item]})
    return found


RULES = [
    # (what, webhook, request, matches)
    ("the operation named", hook(), attributes(), True),
    ("another operation", hook(), attributes(operation="UPDATE"), False),
    ("any operation", hook(operations=("*",)), attributes(operation="DELETE"), True),
    ("another group", hook(groups=("apps",)), attributes(), False),
    ("any group", hook(groups=("*",)), attributes(), True),
    ("another version", hook(versions=("v2",)), attributes(), False),
    ("any version", hook(versions=("*",)), attributes(), True),
    ("another resource", hook(resources_=("services",)), attributes(), False),
    ("* is every main resource", hook(resources_=("*",)), attributes(), True),
    (
        "* is no subresource",
        hook(resources_=("*",)),
        attributes(operation="CREATE", subresource="status"),
        False,
    ),
    (
        "pods is not pods/status",
        hook(),
        attributes(subresource="status"),
        False,
    ),
    ("pods/status", hook(resources_=("pods/status",)), attributes(subresource="status"), True),
    ("pods/status is not pods", hook(resources_=("pods/status",)), attributes(), False),
    (
        "pods/* is every subresource",
        hook(resources_=("pods/*",)),
        attributes(subresource="log"),
        True,
    ),
    ("pods/* is pods too (kube's matcher)", hook(resources_=("pods/*",)), attributes(), True),
    ("*/* is everything", hook(resources_=("*/*",)), attributes(subresource="status"), True),
    ("*/status", hook(resources_=("*/status",)), attributes(subresource="status"), True),
    ("Namespaced scope: a pod", hook(scope="Namespaced"), attributes(), True),
    (
        "Namespaced scope: not a Namespace",
        hook(scope="Namespaced", resources_=("namespaces",)),
        attributes(NAMESPACE, name="shop"),
        False,
    ),
    (
        "Cluster scope: a Namespace",
        hook(scope="Cluster", resources_=("namespaces",)),
        attributes(NAMESPACE, name="shop"),
        True,
    ),
    ("Cluster scope: not a pod", hook(scope="Cluster"), attributes(), False),
    (
        "Cluster scope: a ClusterRole",
        hook(
            scope="Cluster",
            groups=("rbac.authorization.k8s.io",),
            resources_=("clusterroles",),
        ),
        attributes(CLUSTER_ROLE, name="r"),
        True,
    ),
    ("* scope", hook(scope="*"), attributes(), True),
    (
        "Equivalent: another version of the resource",
        hook(groups=("split.smi-spec.io",), versions=("v1alpha2",), resources_=("trafficsplits",)),
        attributes(SPLIT_NEW),
        True,
    ),
    (
        "Exact: only the version named",
        hook(
            groups=("split.smi-spec.io",),
            versions=("v1alpha2",),
            resources_=("trafficsplits",),
            matchPolicy="Exact",
        ),
        attributes(SPLIT_NEW),
        False,
    ),
]


@pytest.mark.parametrize(
    ("webhook", "request_", "matches"),
    [case[1:] for case in RULES],
    ids=[case[0] for case in RULES],
)
def test_rules_match_as_kube_apiserver_matches_them(
    webhook: webhooks.Webhook, request_: apiserver.Attributes, matches: bool
) -> None:
    assert (webhooks.matched_resource(webhook, request_) is not None) is matches


def test_an_equivalent_match_calls_the_webhook_with_the_version_its_rule_names() -> None:
    webhook = hook(
        groups=("split.smi-spec.io",), versions=("v1alpha2",), resources_=("trafficsplits",)
    )
    assert SPLIT_OLD is not None
    assert webhooks.matched_resource(webhook, attributes(SPLIT_NEW)) == SPLIT_OLD
    review = webhooks.admission_review("u", SPLIT_OLD, attributes(SPLIT_NEW), {})
    assert review["request"]["kind"]["version"] == "v1alpha2"
    assert review["request"]["requestKind"]["version"] == "v1alpha4"


MONITORED = {"namespaceSelector": {"matchLabels": {"openservicemesh.io/monitored-by": "osm"}}}
OSM_LIKE = {
    "namespaceSelector": {
        "matchLabels": {"openservicemesh.io/monitored-by": "osm"},
        "matchExpressions": [
            {"key": "openservicemesh.io/ignore", "operator": "DoesNotExist"},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["osm-system"]},
        ],
    }
}
WEB = {"metadata": {"name": "web", "labels": {"app": "web"}}}
DB = {"metadata": {"name": "db", "labels": {"app": "db"}}}
SELECTORS = [
    # (what, webhook fields, request, object, namespace labels, selected)
    ("no selector", {}, attributes(), WEB, {}, True),
    (
        "namespace labelled",
        MONITORED,
        attributes(),
        WEB,
        {"openservicemesh.io/monitored-by": "osm"},
        True,
    ),
    ("namespace unlabelled", MONITORED, attributes(), WEB, {}, False),
    (
        "OSM's selector: a monitored namespace",
        OSM_LIKE,
        attributes(),
        WEB,
        {"openservicemesh.io/monitored-by": "osm", "kubernetes.io/metadata.name": "shop"},
        True,
    ),
    (
        "OSM's selector: its own namespace, by name",
        OSM_LIKE,
        attributes(namespace="osm-system"),
        WEB,
        {"openservicemesh.io/monitored-by": "osm", "kubernetes.io/metadata.name": "osm-system"},
        False,
    ),
    (
        "OSM's selector: an ignored namespace",
        OSM_LIKE,
        attributes(),
        WEB,
        {"openservicemesh.io/monitored-by": "osm", "openservicemesh.io/ignore": "true"},
        False,
    ),
    (
        "a cluster-scoped object is never exempted by namespaceSelector",
        MONITORED,
        attributes(CLUSTER_ROLE, name="r"),
        {"metadata": {"name": "r"}},
        {},
        True,
    ),
    (
        "a Namespace is matched by its own labels",
        MONITORED,
        attributes(NAMESPACE, name="shop"),
        {"metadata": {"name": "shop"}},
        {},
        False,
    ),
    (
        "objectSelector: the object",
        {"objectSelector": {"matchLabels": {"app": "web"}}},
        attributes(),
        WEB,
        {},
        True,
    ),
    (
        "objectSelector: another object",
        {"objectSelector": {"matchLabels": {"app": "web"}}},
        attributes(),
        DB,
        {},
        False,
    ),
    (
        "objectSelector: the old object's labels count too",
        {"objectSelector": {"matchLabels": {"app": "web"}}},
        attributes(operation="UPDATE", old=WEB),
        DB,
        {},
        True,
    ),
    (
        "objectSelector: a DELETE has only the old object",
        {"objectSelector": {"matchLabels": {"app": "web"}}},
        attributes(operation="DELETE", old=WEB),
        None,
        {},
        True,
    ),
]


@pytest.mark.parametrize(
    ("fields", "request_", "obj", "labels", "chosen"),
    [case[1:] for case in SELECTORS],
    ids=[case[0] for case in SELECTORS],
)
def test_selectors_choose_as_kube_apiserver_chooses(
    fields: dict[str, Any],
    request_: apiserver.Attributes,
    obj: dict[str, Any] | None,
    labels: dict[str, str],
    chosen: bool,
) -> None:
    webhook = hook(operations=("*",), groups=("*",), resources_=("*",), **fields)
    assert webhooks.selected(webhook, request_, obj, labels) is chosen


def test_webhook_configurations_are_never_sent_to_webhooks() -> None:
    assert webhooks.exempt(attributes(MUTATING, name="hooks"))
    assert not webhooks.exempt(attributes())


DRY_RUNS = [
    # (sideEffects, dry run, refused)
    ("None", True, False),
    ("NoneOnDryRun", True, False),
    ("Unknown", True, True),
    ("Some", True, True),
    ("Unknown", False, False),
]


@pytest.mark.parametrize(("side_effects", "dry_run", "refused"), DRY_RUNS)
def test_a_dry_run_is_refused_by_a_webhook_with_side_effects(
    side_effects: str, dry_run: bool, refused: bool
) -> None:
    found = webhooks.dry_run_refusal(hook(sideEffects=side_effects), attributes(dry_run=dry_run))
    if not refused:
        assert found is None
        return
    assert found is not None
    assert found.code == 400
    assert found.message == 'admission webhook "check.example.com" does not support dry run'


def test_a_selector_kube_would_refuse_is_remembered_not_raised() -> None:
    webhook = hook(namespaceSelector={"matchExpressions": [{"key": "a", "operator": "Within"}]})
    assert "'Within' is not a valid label selector operator" in webhook.selector_error


DEFAULTS = [
    ("timeoutSeconds", {}, "timeout", 10),
    ("timeoutSeconds", {"timeoutSeconds": 1}, "timeout", 1),
    ("timeoutSeconds", {"timeoutSeconds": 90}, "timeout", 30),
    ("failurePolicy", {}, "failure_policy", "Fail"),
    ("matchPolicy", {}, "match_policy", "Equivalent"),
]


@pytest.mark.parametrize(("field", "given", "attribute", "value"), DEFAULTS)
def test_a_webhook_gets_kubes_defaults(
    field: str, given: dict[str, Any], attribute: str, value: object
) -> None:
    assert getattr(hook(**given), attribute) == value


def test_a_service_reference_defaults_to_port_443_and_names_its_svc_host() -> None:
    webhook = hook(clientConfig={"service": {"namespace": "osm-system", "name": "osm-injector"}})
    assert (webhook.client.port, webhook.client.host) == (443, "osm-injector.osm-system.svc")


LABEL_SELECTORS = [
    # (selector, labels, matches)
    (None, {}, True),
    ({}, {"a": "b"}, True),
    ({"matchLabels": {"a": "b"}}, {"a": "b"}, True),
    ({"matchLabels": {"a": "b"}}, {"a": "c"}, False),
    (
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b", "c"]}]},
        {"a": "c"},
        True,
    ),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
]


@pytest.mark.parametrize(("spec", "labels", "matches"), LABEL_SELECTORS)
def test_structured_label_selectors(
    spec: dict[str, Any] | None, labels: dict[str, str], matches: bool
) -> None:
    assert selectors.label_selector(spec).matches(labels) is matches


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "values set can't be empty"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "values set must be empty",
        ),
        ({"matchLabels": {"a b": "c"}}, "a b"),
    ],
)
def test_structured_label_selectors_kube_refuses(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        selectors.label_selector(spec)


UID = "3f1c"


def answer(**response: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": UID, "allowed": True, **response},
    }


RESPONSES = [
    # (what, mutating, answer, error or None)
    ("an allowed answer", False, answer(), None),
    (
        "a wrong uid",
        False,
        {**answer(), "response": {"uid": "other", "allowed": True}},
        'expected response.uid="3f1c", got "other"',
    ),
    (
        "no response",
        False,
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
        "webhook response was absent",
    ),
    (
        "v1beta1",
        False,
        {**answer(), "apiVersion": "admission.k8s.io/v1beta1"},
        "expected webhook response of admission.k8s.io/v1",
    ),
    (
        "a patch from a validating webhook",
        False,
        answer(patch="W10=", patchType="JSONPatch"),
        "validating webhook may not return response.patch",
    ),
    (
        "a patch without its type",
        True,
        answer(patch="W10="),
        "response.patch but not response.patchType",
    ),
    (
        "a patch type without a patch",
        True,
        answer(patchType="JSONPatch"),
        "response.patchType but not response.patch",
    ),
    ("a mutating patch", True, answer(patch="W10=", patchType="JSONPatch"), None),
]


@pytest.mark.parametrize(
    ("mutating", "review", "error"),
    [case[1:] for case in RESPONSES],
    ids=[case[0] for case in RESPONSES],
)
def test_answers_are_checked_as_kube_apiserver_checks_them(
    mutating: bool, review: dict[str, Any], error: str | None
) -> None:
    if error is None:
        assert webhooks.verify_response(UID, mutating, review)["allowed"] is True
        return
    with pytest.raises(webhooks.CallFailed, match="received invalid webhook response") as raised:
        webhooks.verify_response(UID, mutating, review)
    assert error in str(raised.value)


DENIALS = [
    # (status the webhook gave, code, message, reason)
    (None, 400, 'admission webhook "w" denied the request without explanation', None),
    ({"message": "no"}, 400, 'admission webhook "w" denied the request: no', None),
    (
        {"code": 403, "message": "no", "reason": "Forbidden"},
        403,
        'admission webhook "w" denied the request: no',
        "Forbidden",
    ),
    (
        {"code": 200, "reason": "NotAllowed"},
        400,
        'admission webhook "w" denied the request: NotAllowed',
        "NotAllowed",
    ),
]


@pytest.mark.parametrize(("given", "code", "message", "reason"), DENIALS)
def test_a_denial_is_the_webhooks_status_sanitized_as_kube_does(
    given: dict[str, Any] | None, code: int, message: str, reason: str | None
) -> None:
    status = webhooks.WebhookDenied("w", given).status()
    assert (status["code"], status["message"], status.get("reason")) == (code, message, reason)
    assert status["status"] == "Failure"
