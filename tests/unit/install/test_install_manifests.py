"""What ``osm install`` renders: every object passes Kubernetes' own schemas (strict) for
several minor versions; the CRDs are the model's (structural, every example the model
accepts validates, names and versions from `osm.model.kinds`); the names, commands, ports
and webhooks are the contract of #16; every object carries the mesh's labels."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from osm.base import wellknown
from osm.install import manifests, values
from osm.model import kinds
from tests.unit.model import test_schema

KUBERNETES_VERSIONS = ("1.28.0", "1.32.0", "1.37.0")
"""Minor versions whose schemas kubernetes-validate bundles: an old, a middle, the newest."""
VERSION = "1.2.3"
SETS = {
    "defaults": [],
    "a few --set": [
        "osm.image.registry=registry.example/mesh",
        "osm.image.tag=v9",
        "osm.image.pullPolicy=Always",
        "osm.osmController.replicaCount=3",
        "osm.injector.resource.limits.memory=256Mi",
        "osm.enablePermissiveTrafficPolicy=false",
        "osm.outboundPortExclusionList={6379,5432}",
        "osm.outboundIPRangeExclusionList={10.0.0.0/8}",
        "osm.controllerLogLevel=debug",
        "osm.injector.webhookTimeoutSeconds=10",
        "osm.deployPrometheus=true",
        "osm.deployJaeger=true",
    ],
}
MESHES = {"defaults": ("osm", "osm-system"), "a few --set": ("blue", "mesh-blue")}


def render(case: str) -> list[dict[str, Any]]:
    mesh, namespace = MESHES[case]
    return manifests.render(values.parse_sets(SETS[case]), mesh, namespace, VERSION)


def _name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


BUILT_IN = [
    pytest.param(case, index, kube, id=f"{case}-{_name(obj)}-{kube}")
    for case in SETS
    for index, obj in enumerate(render(case))
    if not kinds.BY_KIND[obj["kind"]].strict
    for kube in KUBERNETES_VERSIONS
]


@pytest.mark.parametrize(("case", "index", "kube"), BUILT_IN)
def test_every_object_passes_kubernetes_schemas_strictly(case: str, index: int, kube: str) -> None:
    kubernetes_validate.validate(render(case)[index], kube, strict=True)


# -- the CRDs ---------------------------------------------------------------------------------
def crds() -> dict[str, dict[str, Any]]:
    return {
        obj["spec"]["names"]["kind"]: obj
        for obj in render("defaults")
        if obj["kind"] == "CustomResourceDefinition"
    }


def crd_schema(kind: str, api_version: str) -> dict[str, Any]:
    short = api_version.rpartition("/")[2]
    (version,) = [v for v in crds()[kind]["spec"]["versions"] if v["name"] == short]
    document = version["schema"]["openAPIV3Schema"]
    assert isinstance(document, dict)
    return document


def test_there_is_a_crd_for_every_strict_kind_of_the_model() -> None:
    assert set(crds()) == {info.kind for info in kinds.KINDS if info.strict}


@pytest.mark.parametrize("info", [i for i in kinds.KINDS if i.strict], ids=lambda i: i.kind)
def test_a_crds_names_scope_and_versions_are_the_models(info: kinds.KindInfo) -> None:
    crd = crds()[info.kind]
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{info.plural}.{info.group}"
    assert spec["group"] == info.group
    assert spec["scope"] == ("Namespaced" if info.namespaced else "Cluster")
    assert spec["names"]["plural"] == info.plural
    assert spec["names"]["singular"] == info.kind.lower()
    assert set(spec["names"].get("shortNames", [])) <= set(info.short_names)
    assert spec["names"]["categories"]
    served = [f"{info.group}/{v['name']}" for v in spec["versions"] if v["served"]]
    assert served == list(info.versions)
    storage = [f"{info.group}/{v['name']}" for v in spec["versions"] if v["storage"]]
    assert storage == [info.versions[0]]
    assert all(v["subresources"] == {"status": {}} for v in spec["versions"])


@pytest.mark.parametrize(("kind", "api_version"), [(k, v) for k, v in test_schema.schema.SCHEMAS])
def test_a_crd_schema_is_structural(kind: str, api_version: str) -> None:
    assert test_schema.structural_problems(crd_schema(kind, api_version)) == []


@pytest.mark.parametrize("document", test_schema.accepted_examples())
def test_every_example_the_model_accepts_is_accepted_by_its_crd(document: dict[str, Any]) -> None:
    # As the API server validates a custom resource with fieldValidation=Strict.
    check = jsonschema.Draft4Validator(
        test_schema._strict(crd_schema(document["kind"], document["apiVersion"]))
    )
    errors = [e.message for e in check.iter_errors(test_schema._without_nulls(document))]
    assert errors == []


@pytest.mark.parametrize("case", SETS)
def test_the_meshconfig_is_the_models_and_its_crd_accepts_it(case: str) -> None:
    (mesh_config,) = [o for o in render(case) if o["kind"] == "MeshConfig"]
    resource, problems = kinds.parse(copy.deepcopy(mesh_config))
    assert resource is not None and problems == []
    check = jsonschema.Draft4Validator(
        test_schema._strict(crd_schema("MeshConfig", mesh_config["apiVersion"]))
    )
    assert [e.message for e in check.iter_errors(mesh_config)] == []


def test_the_meshconfig_carries_the_values_set() -> None:
    (mesh_config,) = [o for o in render("a few --set") if o["kind"] == "MeshConfig"]
    spec = mesh_config["spec"]
    assert spec["traffic"]["enablePermissiveTrafficPolicyMode"] is False
    assert spec["traffic"]["outboundPortExclusionList"] == [6379, 5432]
    assert spec["traffic"]["outboundIPRangeExclusionList"] == ["10.0.0.0/8"]
    assert spec["observability"]["osmLogLevel"] == "debug"
    assert mesh_config["metadata"]["namespace"] == "mesh-blue"


# -- the contract of #16 ----------------------------------------------------------------------
def by_name(case: str = "defaults") -> dict[str, dict[str, Any]]:
    return {_name(obj): obj for obj in render(case)}


@pytest.mark.parametrize("case", SETS)
def test_every_object_carries_the_mesh_labels(case: str) -> None:
    mesh, _ = MESHES[case]
    for obj in render(case):
        assert obj["metadata"]["labels"].items() >= manifests.mesh_labels(mesh, VERSION).items()


@pytest.mark.parametrize("case", SETS)
def test_the_order_puts_namespace_and_crds_first_and_webhooks_last(case: str) -> None:
    order = [obj["kind"] for obj in render(case)]
    assert order[0] == "Namespace"
    assert order[1 : 1 + len(crds())] == ["CustomResourceDefinition"] * len(crds())
    assert order[-2:] == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
    assert order.index("MeshConfig") > order.index("Deployment")


def test_the_deployments_run_the_contracts_commands() -> None:
    objects = by_name("a few --set")
    controller = objects["Deployment/osm-controller"]["spec"]["template"]["spec"]
    (container,) = controller["containers"]
    assert container["command"] == [
        "osm",
        "controller",
        "--kubernetes",
        "--mesh-name",
        "blue",
        "--osm-namespace",
        "mesh-blue",
        "--ca-bundle-secret-name",
        "osm-ca-bundle",
        "--validator-webhook-config",
        "osm-validator-mesh-blue",
        "--xds-host",
        "0.0.0.0",
        "--http-host",
        "0.0.0.0",
        "--webhook-port",
        str(wellknown.VALIDATING_WEBHOOK_PORT),
    ]
    assert container["image"] == "registry.example/mesh/osm-controller:v9"
    assert controller["serviceAccountName"] == "osm-controller"
    injector = objects["Deployment/osm-injector"]["spec"]["template"]["spec"]
    (container,) = injector["containers"]
    assert container["command"] == [
        "osm",
        "injector",
        "--mesh-name",
        "blue",
        "--osm-namespace",
        "mesh-blue",
        "--ca-bundle-secret-name",
        "osm-ca-bundle",
        "--webhook-config-name",
        "osm-webhook-blue",
        "--webhook-port",
        str(wellknown.INJECTOR_WEBHOOK_PORT),
        "--http-port",
        str(wellknown.CONTROLLER_HTTP_PORT),
        "--init-container-image",
        "registry.example/mesh/init:v9",
        "--sidecar-image",
        values.ENVOY_IMAGE,
        "--python-sidecar-image",
        "registry.example/mesh/sidecar:v9",
    ]
    assert objects["Deployment/osm-controller"]["spec"]["replicas"] == 3


@pytest.mark.parametrize("name", ["osm-controller", "osm-injector"])
def test_a_deployment_is_probed_and_runs_as_non_root(name: str) -> None:
    deployment = by_name()[f"Deployment/{name}"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/alive")):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] == wellknown.CONTROLLER_HTTP_PORT
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"] and container["resources"]["requests"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": name}
    assert template_labels["app"] == name


def test_the_services_are_the_contracts() -> None:
    def ports(service: str) -> tuple[dict[str, str], list[tuple[int, int]]]:
        spec = by_name()[f"Service/{service}"]["spec"]
        return spec["selector"], [(p["port"], p["targetPort"]) for p in spec["ports"]]

    xds, http = wellknown.XDS_PORT, wellknown.CONTROLLER_HTTP_PORT
    assert ports("osm-controller") == ({"app": "osm-controller"}, [(xds, xds), (http, http)])
    validating = wellknown.VALIDATING_WEBHOOK_PORT
    assert ports("osm-validator") == ({"app": "osm-controller"}, [(validating, validating)])
    mutating = wellknown.INJECTOR_WEBHOOK_PORT
    assert ports("osm-injector") == ({"app": "osm-injector"}, [(mutating, mutating)])


def test_the_mutating_webhook_is_the_contracts() -> None:
    config = by_name("a few --set")["MutatingWebhookConfiguration/osm-webhook-blue"]
    (webhook,) = config["webhooks"]
    assert webhook["name"] == "osm-inject.k8s.io"
    assert webhook["clientConfig"] == {
        "service": {
            "name": "osm-injector",
            "namespace": "mesh-blue",
            "path": "/mutate-pod-creation",
            "port": wellknown.INJECTOR_WEBHOOK_PORT,
        }
    }  # no caBundle: the controller writes it
    assert webhook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "NoneOnDryRun"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["timeoutSeconds"] == 10
    assert webhook["namespaceSelector"] == {
        "matchLabels": {wellknown.MONITORED_BY_LABEL: "blue"},
        "matchExpressions": [
            {"key": wellknown.IGNORE_LABEL, "operator": "DoesNotExist"},
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["mesh-blue"]},
            {"key": wellknown.CONTROL_PLANE_LABEL, "operator": "DoesNotExist"},
        ],
    }


def test_the_validating_webhook_covers_every_strict_kind_and_pod_updates() -> None:
    config = by_name()["ValidatingWebhookConfiguration/osm-validator-mesh-osm"]
    (webhook,) = config["webhooks"]
    assert webhook["name"] == "osm-validator.k8s.io"
    assert webhook["clientConfig"]["service"] == {
        "name": "osm-validator",
        "namespace": "osm-system",
        "path": "/validate",
        "port": wellknown.VALIDATING_WEBHOOK_PORT,
    }
    assert webhook["failurePolicy"] == "Fail"
    covered = {
        (group, resource, version, tuple(rule["operations"]))
        for rule in webhook["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for version in rule["apiVersions"]
    }
    for info in kinds.KINDS:
        if info.strict:
            for api_version in info.versions:
                group, _, version = api_version.rpartition("/")
                assert (group, info.plural, version, ("CREATE", "UPDATE")) in covered
    assert ("", "pods", "v1", ("UPDATE",)) in covered


def test_the_namespace_is_ignored_by_the_injector() -> None:
    namespace = by_name()["Namespace/osm-system"]
    assert namespace["metadata"]["labels"][wellknown.IGNORE_LABEL] == "true"


# -- RBAC ---------------------------------------------------------------------------------------
RULES = {
    "controller, cluster": manifests.controller_cluster_rules("osm"),
    "controller, namespace": manifests.controller_namespace_rules(),
    "injector, cluster": manifests.injector_cluster_rules("osm"),
    "injector, namespace": manifests.injector_namespace_rules(),
}


@pytest.mark.parametrize("rules", RULES.values(), ids=RULES)
def test_every_rule_says_why_and_writes_are_narrow(rules: list[manifests.Rule]) -> None:
    for rule in rules:
        assert len(rule.why) > 30, rule
        assert "*" not in rule.verbs and "*" not in rule.resources
        writes = set(rule.verbs) - {"get", "list", "watch"}
        # A write is either create (which cannot name its object) or limited by name.
        assert writes <= {"create"} or rule.names, rule


def test_no_process_may_read_every_secret() -> None:
    for rules in RULES.values():
        for rule in rules:
            if "secrets" in rule.resources:
                assert rule.names or set(rule.verbs) == {"create"}, rule


def test_the_bindings_bind_the_roles_to_the_service_accounts() -> None:
    objects = by_name()
    for account in ("osm-controller", "osm-injector"):
        role = objects[f"ClusterRoleBinding/osm-{account}"]
        assert role["roleRef"]["name"] == f"osm-{account}"
        assert role["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "osm-system"}
        ]
        local = objects[f"RoleBinding/{account}"]
        assert local["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": account,
        }


def test_prometheus_and_the_trace_store_are_installed_only_when_asked() -> None:
    names = {_name(obj) for obj in render("defaults")}
    assert not {"Deployment/osm-prometheus", "Deployment/jaeger"} & names
    asked = {_name(obj): obj for obj in render("a few --set")}
    assert {"Deployment/osm-prometheus", "Service/osm-prometheus", "Deployment/jaeger"} <= set(
        asked
    )
    # The trace store runs from the controller's image, which holds the project.
    (store,) = asked["Deployment/jaeger"]["spec"]["template"]["spec"]["containers"]
    assert store["image"] == "registry.example/mesh/osm-controller:v9"
    assert store["command"][:3] == ["python3", "-m", "osm.tracing"]
    # Kubernetes mode: ClusterIP Services, reachable through kube-proxy.
    assert asked["Service/jaeger"]["spec"].get("clusterIP") != "None"
