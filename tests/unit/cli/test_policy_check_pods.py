"""``osm policy check-pods`` reads the mesh through the API and prints, per port and route of
the destination, the verdict and the object that decides it (golden files under
tests/golden/cli), with OSM's opening and closing lines; exit status 0 when allowed on
some port, 2 when denied everywhere, 1 with OSM's message for a missing pod."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from osm.base import wellknown
from osm.cli import main
from osm.cli.client import Api
from tests.unit import golden
from tests.unit.catalog import meshes as m
from tests.unit.cli.local_api import RunningApi

main.register(main.cli)

GOLDEN = Path(__file__).parents[2] / "golden" / "cli"
INJECTED = {wellknown.PROXY_UUID_LABEL: "6f1c1a8e-3b52-4a4e-9f4b-2d3c8f5e7a10"}
BUYER = "bookbuyer/bookbuyer-0"
THIEF = "bookthief/bookthief-0"
STORE = "bookstore/bookstore-0"


def osm(api: RunningApi, *args: str) -> Result:
    return CliRunner().invoke(main.cli, ["--kubeconfig", str(api.kubeconfig), *args], obj={})


def create(api: RunningApi, docs: list[dict[str, Any]]) -> None:
    with Api.connect(api.kubeconfig) as client:
        for doc in docs:
            client.create(doc)


def set_permissive(api: RunningApi, permissive: bool) -> None:
    patch = {"spec": {"traffic": {"enablePermissiveTrafficPolicyMode": permissive}}}
    with Api.connect(api.kubeconfig) as client:
        client.patch("MeshConfig", wellknown.CONTROL_PLANE_NAMESPACE, "osm-mesh-config", patch)


def bookstore() -> list[dict[str, Any]]:
    """The bookstore in small: a buyer and a thief, a store with an HTTP and a TCP port,
    the buyer allowed two routes, and a TrafficTarget naming a missing HTTPRouteGroup."""
    return [
        m.namespace("bookbuyer"),
        m.namespace("bookthief"),
        m.namespace("bookstore"),
        m.pod("bookbuyer", "bookbuyer-0", {"app": "bookbuyer", **INJECTED}, "bookbuyer", ""),
        m.pod("bookthief", "bookthief-0", {"app": "bookthief", **INJECTED}, "bookthief", ""),
        m.pod("bookstore", "bookstore-0", {"app": "bookstore", **INJECTED}, "bookstore", ""),
        m.service("bookstore", "bookstore", ports=((14001, 14001, "http"), (5432, 5432, "tcp"))),
        m.route_group(
            "bookstore",
            "bookstore-service-routes",
            [
                {"name": "books-bought", "pathRegex": "/books-bought", "methods": ["GET"]},
                {"name": "buy-a-book", "pathRegex": ".*a-book.*new", "methods": ["GET"]},
            ],
        ),
        m.traffic_target(
            "bookstore",
            "bookbuyer-access-bookstore",
            "bookstore",
            [("bookbuyer", "bookbuyer")],
            [("HTTPRouteGroup", "bookstore-service-routes", ["books-bought", "buy-a-book"])],
        ),
        m.traffic_target(
            "bookstore",
            "thief-access",
            "bookstore",
            [("bookthief", "bookthief")],
            [("HTTPRouteGroup", "thief-routes", [])],
        ),
    ]


@pytest.fixture
def mesh(api: RunningApi) -> RunningApi:
    create(api, bookstore())
    return api


CASES = [
    # (golden file, permissive, arguments, exit status)
    ("check-pods-permissive.txt", True, [BUYER, STORE], 0),
    ("check-pods-smi-allowed.txt", False, [BUYER, STORE], 0),
    ("check-pods-smi-missing-route-group.txt", False, [THIEF, STORE], 2),
    ("check-pods-smi-port.txt", False, [BUYER, STORE, "--port", "5432"], 2),
]


@pytest.mark.parametrize(
    ("name", "permissive", "args", "status"), CASES, ids=[case[0] for case in CASES]
)
def test_check_pods_output(
    mesh: RunningApi, name: str, permissive: bool, args: list[str], status: int
) -> None:
    set_permissive(mesh, permissive)
    result = osm(mesh, "policy", "check-pods", *args)
    assert result.exit_code == status, result.output
    golden.compare(GOLDEN / name, result.output)


def test_json_output_is_the_explanation(mesh: RunningApi) -> None:
    set_permissive(mesh, False)
    result = osm(mesh, "policy", "check-pods", BUYER, STORE, "-o", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["mode"] == "smi" and found["allowed"] is True
    assert [(p["port"], p["allowed"]) for p in found["ports"]] == [(14001, True), (5432, False)]


ERRORS = [
    # (arguments, message on stderr)
    (["bookbuyer/nobody", STORE], "error: Could not find pod nobody in namespace bookbuyer\n"),
    (
        ["nowhere/bookbuyer-0", STORE],
        'error: Could not find pod bookbuyer-0 in namespace nowhere: namespace "nowhere" '
        "does not exist\n",
    ),
    (
        ["a/b/c", STORE],
        "error: Invalid argument specified for the source pod [a/b/c]: Pod name should be "
        "of the form <namespace/pod>, or <pod> for default namespace\n",
    ),
]


@pytest.mark.parametrize(("args", "message"), ERRORS, ids=[e[1][7:40] for e in ERRORS])
def test_errors_say_which_pod(mesh: RunningApi, args: list[str], message: str) -> None:
    result = osm(mesh, "policy", "check-pods", *args)
    assert result.exit_code == 1
    assert result.stderr == message
