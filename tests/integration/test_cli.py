"""The `osm` command against a running controller: what a kubectl user expects.

Each test drives the real CLI (click's runner, in-process) against a real controller
process with an SQLite store, and checks output and exit codes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from osm.cli import main
from osm.cli.client import ApiError, Client
from tests.conftest import ROOT, RunningController

DEMO = str(ROOT / "demo" / "bookstore" / "manifests")
DATA = Path(__file__).parent / "data"
GOLDEN = ROOT / "tests" / "golden" / "cli"

main.register(main.cli)


def osm(controller: RunningController | None, *args: str, stdin: str | None = None) -> Result:
    env = {"OSM_SERVER": controller.url} if controller else {}
    return CliRunner().invoke(main.cli, list(args), env=env, obj={}, input=stdin)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path}; rerun with UPDATE_GOLDEN=1"


def test_apply_reports_created_then_unchanged_then_configured(
    controller: RunningController, tmp_path: Path
) -> None:
    first = osm(controller, "apply", "-f", DEMO)
    assert first.exit_code == 0, first.output
    assert "trafficsplit/bookstore-split created" in first.output
    assert "namespace/bookstore created" in first.output

    again = osm(controller, "apply", "-f", DEMO)
    assert again.exit_code == 0
    assert set(re.findall(r" (\w+)$", again.output, re.M)) == {"unchanged"}

    split = next(yaml.safe_load_all((ROOT / "demo/bookstore/manifests/40-policy.yaml").read_text()))
    split["spec"]["backends"][0]["weight"] = 90
    changed = tmp_path / "split.yaml"
    changed.write_text(yaml.safe_dump(split))
    result = osm(controller, "apply", "-f", str(changed))
    assert result.output.strip() == "trafficsplit/bookstore-split configured"


def test_a_file_with_three_mistakes_prints_three_errors_and_applies_nothing(
    controller: RunningController,
) -> None:
    result = osm(controller, "apply", "-f", str(DATA / "three-mistakes.yaml"))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "three-mistakes.yaml" in line]
    assert len(errors) == 3
    assert "(document 1): Service bookstore/bookstore: spec.ports[0].targetPort:" in errors[0]
    assert 'spec.rules[0].matchs: unknown field (did you mean "matches"?)' in errors[1]
    assert "spec.backends[0].weight: must be an integer" in errors[2]
    assert "nothing was applied" in result.output
    assert osm(controller, "get", "svc", "-A").output.startswith("No resources found")


def test_validate_is_offline_and_prints_every_error() -> None:
    result = osm(None, "validate", "-f", str(DATA / "three-mistakes.yaml"))
    assert result.exit_code == 1
    text = result.output.replace(str(DATA) + "/", "")
    check_golden("validate-three-mistakes.txt", text)


def test_validate_warns_about_references_the_files_do_not_satisfy(tmp_path: Path) -> None:
    (tmp_path / "tt.yaml").write_text(
        "apiVersion: access.smi-spec.io/v1alpha3\nkind: TrafficTarget\n"
        "metadata: {name: tt, namespace: default}\n"
        "spec:\n  destination: {kind: ServiceAccount, name: api}\n"
        "  sources: [{kind: ServiceAccount, name: web}]\n"
        "  rules: [{kind: HTTPRouteGroup, name: api-routes}]\n"
    )
    result = osm(None, "validate", "-f", str(tmp_path))
    assert result.exit_code == 0
    assert 'HTTPRouteGroup "default/api-routes" is not defined' in result.output
    assert "1 valid object(s), 0 error(s), 3 warning(s)" in result.output


def test_validate_accepts_the_demo() -> None:
    result = osm(None, "validate", "-f", DEMO)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "24 valid object(s), 0 error(s), 0 warning(s)"


def test_objects_need_their_namespace(controller: RunningController) -> None:
    text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: nowhere}\n"
    result = osm(controller, "apply", "-f", "-", stdin=text)
    assert result.exit_code == 1
    assert 'namespace "nowhere" not found' in result.output
    created = osm(
        controller,
        "apply",
        "-f",
        "-",
        stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: nowhere}\n---\n" + text,
    )
    assert created.exit_code == 0, created.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["get", "ts", "-n", "bookstore"],
            r"^NAME\s+SERVICE\s+BACKENDS\s+AGE\n"
            r"bookstore-split\s+bookstore\s+bookstore-v1:50,"
            r"bookstore-v2:50\s+\d+s$",
        ),
        (
            ["get", "svc", "-A", "-l", "app=bookstore", "-o", "name"],
            r"^service/bookstore\nservice/bookstore-v1\nservice/bookstore-v2$",
        ),
        (["get", "tt", "-A"], r"^NAMESPACE\s+NAME\s+DESTINATION\s+SOURCES\s+AGE\n"),
        (
            ["get", "meshconfig", "-n", "osm-system", "-o", "wide"],
            r"osm-mesh-config\s+permissive\s+false\s+\d+s\s+24h0m0s",
        ),
        (["get", "ns"], r"^NAME\s+STATUS\s+AGE\nbookbuyer\s+Active"),
        (
            ["get", "deploy", "-n", "bookstore", "-o", "wide"],
            r"bookstore-v1\s+1\s+\d+s\s+bookstore\s+bookstore\s+app=bookstore,version=v1",
        ),
    ],
    ids=[
        "split table",
        "names by label",
        "all namespaces",
        "wide meshconfig",
        "namespaces",
        "wide deployments",
    ],
)
def test_get_prints_kubectl_style_tables(
    controller: RunningController, args: list[str], expected: str
) -> None:
    assert osm(controller, "apply", "-f", DEMO).exit_code == 0
    result = osm(controller, *args)
    assert result.exit_code == 0, result.output
    assert re.search(expected, result.output.strip(), re.M), result.output


def test_get_yaml_round_trips_through_apply(controller: RunningController) -> None:
    assert osm(controller, "apply", "-f", DEMO).exit_code == 0
    exported = osm(
        controller, "get", "htr", "bookstore-service-routes", "-n", "bookstore", "-o", "yaml"
    )
    document = yaml.safe_load(exported.output)
    assert document["metadata"]["generation"] == 1
    assert document["spec"]["matches"][0]["name"] == "books-bought"
    again = osm(controller, "apply", "-f", "-", stdin=exported.output)
    assert again.output.strip() == "httproutegroup/bookstore-service-routes unchanged"


def test_json_list_output(controller: RunningController) -> None:
    assert osm(controller, "apply", "-f", DEMO).exit_code == 0
    listed = json.loads(osm(controller, "get", "sa", "-A", "-o", "json").output)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == [
        "bookbuyer",
        "bookstore",
        "bookthief",
        "bookwarehouse",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["get", "htr", "nope", "-n", "bookstore"],
            'Error from server (NotFound): httproutegroups "nope" not found in namespace',
        ),
        (["get", "widgets"], 'unknown resource type "widgets"'),
        (["delete", "ts", "nope", "-n", "bookstore"], "Error from server (NotFound)"),
        (["delete"], "nothing to delete"),
    ],
    ids=["missing object", "unknown kind", "delete missing", "delete nothing"],
)
def test_errors_exit_1_with_a_message(
    controller: RunningController, args: list[str], message: str
) -> None:
    result = osm(controller, *args)
    assert result.exit_code == 1
    assert message in result.output


def test_delete_by_name_and_by_file(controller: RunningController) -> None:
    assert osm(controller, "apply", "-f", DEMO).exit_code == 0
    deleted = osm(controller, "delete", "ts", "bookstore-split", "-n", "bookstore")
    assert deleted.output.strip() == 'trafficsplit "bookstore-split" deleted'
    missing = osm(controller, "delete", "-f", DEMO)
    assert missing.exit_code == 1, "the split is gone, so the batch is refused whole"
    assert osm(controller, "get", "svc", "bookstore", "-n", "bookstore").exit_code == 0
    result = osm(controller, "delete", "-f", DEMO, "--ignore-not-found")
    assert result.exit_code == 0, result.output
    assert osm(controller, "get", "ns").output.startswith("No resources found")


def test_deleting_a_namespace_deletes_its_contents(controller: RunningController) -> None:
    assert osm(controller, "apply", "-f", DEMO).exit_code == 0
    result = osm(controller, "delete", "ns", "bookstore")
    assert result.exit_code == 0
    assert 'service "bookstore-v1" deleted' in result.output
    assert osm(controller, "get", "svc", "-n", "bookstore").output.startswith("No resources")
    assert "bookwarehouse" in osm(controller, "get", "svc", "-A").output


def test_optimistic_concurrency_refuses_a_stale_write(controller: RunningController) -> None:
    assert osm(controller, "apply", "-f", DEMO).exit_code == 0
    api = Client(controller.url)
    split = api.get("TrafficSplit", "bookstore", "bookstore-split")
    stale = json.loads(json.dumps(split))
    split["spec"]["backends"][0]["weight"] = 10
    api.apply([split])
    stale["spec"]["backends"][0]["weight"] = 20
    with pytest.raises(ApiError) as raised:
        api.apply([stale])
    assert raised.value.status == 409
    assert (
        api.get("TrafficSplit", "bookstore", "bookstore-split")["spec"]["backends"][0]["weight"]
        == 10
    )


def test_watch_streams_changes_after_a_list(controller: RunningController) -> None:
    api = Client(controller.url)
    assert osm(controller, "apply", "-f", DEMO).exit_code == 0
    since = api.list("TrafficSplit")["resourceVersion"]
    osm(controller, "delete", "ts", "bookstore-split", "-n", "bookstore")
    events = api.watch(since=since, kinds=["ts"])
    event = next(events)
    assert event["type"] == "DELETED"
    assert event["object"]["metadata"]["name"] == "bookstore-split"
    events.close()


def test_unreachable_controller_says_how_to_fix_it() -> None:
    result = CliRunner().invoke(
        main.cli, ["get", "svc"], env={"OSM_SERVER": "http://127.0.0.1:9"}, obj={}
    )
    assert result.exit_code == 1
    assert "cannot reach the controller at http://127.0.0.1:9" in result.output
    assert "OSM_SERVER" in result.output


def test_an_object_both_in_a_file_and_on_stdin_is_a_duplicate(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: twice}\n"
    (tmp_path / "ns.yaml").write_text(text)
    result = osm(None, "validate", "-f", str(tmp_path / "ns.yaml"), "-f", "-", stdin=text)
    assert result.exit_code == 1
    assert "Namespace twice: defined more than once" in result.output
