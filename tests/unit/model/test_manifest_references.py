"""References between objects: dangling ones are warnings naming the referring field."""

from __future__ import annotations

import pathlib

import pytest

from osm.model import manifest, references
from osm.model.meta import Resource
from tests.unit.model import model_examples as ex

ROOT = pathlib.Path(__file__).resolve().parents[3]
DEMO = ROOT / "demo" / "bookstore" / "manifests"

SHOP = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
SHOPPERS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shoppers}\n"


def account(name: str, namespace: str = "shop") -> str:
    return (
        "apiVersion: v1\nkind: ServiceAccount\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
    )


def service(name: str, ports: str = "[{port: 8080}]") -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n"
        f"spec: {{selector: {{app: {name}}}, ports: {ports}}}\n"
    )


# A complete, consistent set around the TrafficTarget and TrafficSplit examples.
COMPLETE = {
    "shop": SHOP,
    "shoppers": SHOPPERS,
    "web account": account("web"),
    "admin account": account("admin"),
    "client account": account("client", "shoppers"),
    "route group": ex.HTTP_ROUTE_GROUP_MAP_HEADERS,
    "tcp route": ex.TCP_ROUTE_PORTS,
    "target": ex.TRAFFIC_TARGET,
    "apex": service("web"),
    "v1": service("web-v1"),
    "v2": service("web-v2"),
    "split": ex.TRAFFIC_SPLIT_V1ALPHA2,
}


def resources(replaced: dict[str, str] | None = None) -> list[Resource]:
    """The complete set with some members replaced by other text, or dropped (``""``)."""
    texts = {**COMPLETE, **(replaced or {})}
    return [ex.parse_valid(text) for text in texts.values() if text]


def warnings_of(items: list[Resource]) -> list[tuple[str, str, str]]:
    return [(p.object_ref, p.path, p.message) for p in references.check(items)]


def test_a_complete_set_has_no_warnings() -> None:
    assert references.check(resources()) == []


def test_every_reference_warning_is_a_warning() -> None:
    problems = references.check(resources({"route group": "", "shop": ""}))
    assert problems and {p.severity for p in problems} == {"warning"}


@pytest.mark.parametrize(
    ("replaced", "expected"),
    [
        pytest.param(
            {"route group": ""},
            [
                (
                    "TrafficTarget shop/web-readers",
                    "spec.rules[0].name",
                    'HTTPRouteGroup "shop/web-api" is not defined in these files; until it '
                    "exists this rule allows nothing",
                ),
                (
                    "TrafficTarget shop/web-readers",
                    "spec.rules[1].name",
                    'HTTPRouteGroup "shop/web-api" is not defined in these files; until it '
                    "exists this rule allows nothing",
                ),
            ],
            id="a traffic target naming a missing route group",
        ),
        pytest.param(
            {"tcp route": ""},
            [
                (
                    "TrafficTarget shop/web-readers",
                    "spec.rules[2].name",
                    'TCPRoute "shop/web-port" is not defined in these files; until it exists '
                    "this rule allows nothing",
                ),
            ],
            id="a traffic target naming a missing tcp route",
        ),
        pytest.param(
            {"target": ex.TRAFFIC_TARGET.replace("[read-only]", "[read-only, write]")},
            [
                (
                    "TrafficTarget shop/web-readers",
                    "spec.rules[0].matches[1]",
                    'HTTPRouteGroup "web-api" has no match named "write"; its matches: '
                    "read-only, beta",
                ),
            ],
            id="a traffic target naming a missing match lists the group's matches",
        ),
        pytest.param(
            {"client account": "", "web account": ""},
            [
                (
                    "TrafficTarget shop/web-readers",
                    "spec.sources[0]",
                    'ServiceAccount "shoppers/client" is not defined in these files',
                ),
                (
                    "TrafficTarget shop/web-readers",
                    "spec.destination",
                    'ServiceAccount "shop/web" is not defined in these files',
                ),
            ],
            id="a traffic target naming missing service accounts",
        ),
        pytest.param(
            {"v2": service("web-v2", "[{port: 9090}]")},
            [
                (
                    "TrafficSplit shop/web-canary",
                    "spec.backends[1].service",
                    'Service "web-v2" lacks the apex port(s) 8080; it gets no traffic on them',
                ),
            ],
            id="a traffic split backend lacking the apex port",
        ),
        pytest.param(
            {"v1": "", "apex": ""},
            [
                (
                    "TrafficSplit shop/web-canary",
                    "spec.service",
                    'Service "shop/web" is not defined in these files',
                ),
                (
                    "TrafficSplit shop/web-canary",
                    "spec.backends[0].service",
                    'Service "shop/web-v1" is not defined in these files',
                ),
            ],
            id="a traffic split naming missing services",
        ),
        pytest.param(
            {
                "split": ex.TRAFFIC_SPLIT_V1ALPHA4.replace(
                    "web.shop.svc.cluster.local", "web"
                ).replace("name: web-api}", "name: other-api}")
            },
            [
                (
                    "TrafficSplit shop/web-canary",
                    "spec.matches[0].name",
                    'HTTPRouteGroup "shop/other-api" is not defined in these files',
                ),
            ],
            id="a traffic split naming a missing route group",
        ),
        pytest.param(
            {"shoppers": ""},
            [
                (
                    "ServiceAccount shoppers/client",
                    "metadata.namespace",
                    'namespace "shoppers" is not defined in these files; it must exist before '
                    "this object takes effect",
                ),
            ],
            id="a missing namespace is reported once, at its first object",
        ),
        pytest.param(
            {"web account": account("web", "shoppers"), "deployment": ex.DEPLOYMENT_FULL},
            [
                (
                    "TrafficTarget shop/web-readers",
                    "spec.destination",
                    'ServiceAccount "shop/web" is not defined in these files',
                ),
                (
                    "Deployment shop/web",
                    "spec.template.spec.serviceAccountName",
                    'ServiceAccount "web" is not defined in these files',
                ),
            ],
            id="a deployment naming a missing service account",
        ),
        pytest.param(
            {
                "mesh config": ex.MESH_CONFIG_EMPTY.replace("osm-mesh-config", "my-config"),
                "osm-system": "apiVersion: v1\nkind: Namespace\nmetadata: {name: osm-system}\n",
            },
            [
                (
                    "MeshConfig osm-system/my-config",
                    "metadata.name",
                    'the control plane reads only the MeshConfig named "osm-mesh-config"; '
                    "this one is ignored",
                ),
            ],
            id="a mesh config under another name is ignored",
        ),
    ],
)
def test_a_dangling_reference_warns(
    replaced: dict[str, str], expected: list[tuple[str, str, str]]
) -> None:
    assert warnings_of(resources(replaced)) == expected


def test_the_default_namespace_need_not_be_defined() -> None:
    assert references.check([ex.parse_valid(account("web", "default"))]) == []


def test_the_demo_manifests_have_no_errors_and_no_warnings() -> None:
    result = manifest.load_paths([DEMO])
    assert result.problems == []
    assert {loaded.resource.kind for loaded in result.objects} >= {
        "Namespace",
        "ServiceAccount",
        "Service",
        "Deployment",
        "TrafficSplit",
        "HTTPRouteGroup",
        "TrafficTarget",
        "MeshConfig",
    }
    assert manifest.reference_warnings(result) == []
