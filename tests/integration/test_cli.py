"""The `osm` command against a real Kubernetes API: what a kubectl user expects.

Each test drives the real CLI (click's runner, in-process) against local mode's API
server (`osm.apiserver.local`: HTTPS, client certificates, a memory store with the
control plane's objects) through the kubeconfig it wrote, and checks output and exit
codes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from osm.cli import main
from osm.cli.client import Api
from osm.kube.errors import ApiError
from tests.conftest import ROOT, free_port
from tests.unit.cli.local_api import RunningApi, running_api

DEMO = str(ROOT / "demo" / "bookstore" / "manifests")
DATA = Path(__file__).parent / "data"
GOLDEN = ROOT / "tests" / "golden" / "cli"

main.register(main.cli)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningApi]:
    with running_api(tmp_path / "state") as running:
        yield running


def osm(api: RunningApi | None, *args: str, stdin: str | None = None) -> Result:
    flags = ["--kubeconfig", str(api.kubeconfig)] if api else []
    return CliRunner().invoke(main.cli, [*flags, *args], obj={}, input=stdin)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path}; rerun with UPDATE_GOLDEN=1"


def test_apply_reports_created_then_unchanged_then_configured(
    api: RunningApi, tmp_path: Path
) -> None:
    first = osm(api, "apply", "-f", DEMO)
    assert first.exit_code == 0, first.output
    assert "trafficsplit.split.smi-spec.io/bookstore-split created" in first.output
    assert "namespace/bookstore created" in first.output
    assert "deployment.apps/bookstore-v1 created" in first.output

    again = osm(api, "apply", "-f", DEMO)
    assert again.exit_code == 0
    assert set(re.findall(r" (\w+)$", again.output, re.M)) == {"unchanged"}

    split = next(yaml.safe_load_all((ROOT / "demo/bookstore/manifests/40-policy.yaml").read_text()))
    split["spec"]["backends"][0]["weight"] = 90
    changed = tmp_path / "split.yaml"
    changed.write_text(yaml.safe_dump(split))
    result = osm(api, "apply", "-f", str(changed))
    assert result.output.strip() == "trafficsplit.split.smi-spec.io/bookstore-split configured"


def test_a_file_with_three_mistakes_prints_three_errors_and_applies_nothing(
    api: RunningApi,
) -> None:
    result = osm(api, "apply", "-f", str(DATA / "three-mistakes.yaml"))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "three-mistakes.yaml" in line]
    assert len(errors) == 3
    assert "(document 1): Service bookstore/bookstore: spec.ports[0].targetPort:" in errors[0]
    assert 'spec.rules[0].matchs: unknown field (did you mean "matches"?)' in errors[1]
    assert "spec.backends[0].weight: must be an integer" in errors[2]
    assert "nothing was applied" in result.output
    assert osm(api, "get", "svc", "-A").output.startswith("No resources found")


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


def test_objects_need_their_namespace(api: RunningApi) -> None:
    text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: nowhere}\n"
    result = osm(api, "apply", "-f", "-", stdin=text)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error from server (NotFound): error when applying serviceaccount/a from "
        '"<stdin>": namespaces "nowhere" not found'
    )
    listed_after = "apiVersion: v1\nkind: Namespace\nmetadata: {name: nowhere}\n"
    created = osm(api, "apply", "-f", "-", stdin=text + "---\n" + listed_after)
    assert created.exit_code == 0, created.output
    assert created.output.splitlines() == [
        "namespace/nowhere created",
        "serviceaccount/a created",
    ], "the namespace is applied first, wherever the file lists it"


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
        (
            ["get", "htr", "bookstore-service-routes", "-n", "bookstore", "-o", "name"],
            r"^httproutegroup/bookstore-service-routes$",
        ),
    ],
    ids=[
        "split table",
        "names by label",
        "all namespaces",
        "wide meshconfig",
        "namespaces",
        "wide deployments",
        "one object by name",
    ],
)
def test_get_prints_kubectl_style_tables(api: RunningApi, args: list[str], expected: str) -> None:
    assert osm(api, "apply", "-f", DEMO).exit_code == 0
    result = osm(api, *args)
    assert result.exit_code == 0, result.output
    assert re.search(expected, result.output.strip(), re.M), result.output


def test_get_yaml_round_trips_through_apply(api: RunningApi) -> None:
    assert osm(api, "apply", "-f", DEMO).exit_code == 0
    exported = osm(api, "get", "htr", "bookstore-service-routes", "-n", "bookstore", "-o", "yaml")
    document = yaml.safe_load(exported.output)
    assert document["metadata"]["generation"] == 1
    assert document["spec"]["matches"][0]["name"] == "books-bought"
    again = osm(api, "apply", "-f", "-", stdin=exported.output)
    assert again.output.strip() == (
        "httproutegroup.specs.smi-spec.io/bookstore-service-routes unchanged"
    )


def test_json_list_output(api: RunningApi) -> None:
    assert osm(api, "apply", "-f", DEMO).exit_code == 0
    listed = json.loads(osm(api, "get", "sa", "-A", "-o", "json").output)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == [
        "bookbuyer",
        "bookstore",
        "bookthief",
        "bookwarehouse",
    ]
    assert {i["kind"] for i in listed["items"]} == {"ServiceAccount"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["get", "htr", "nope", "-n", "bookstore"],
            'Error from server (NotFound): httproutegroups.specs.smi-spec.io "nope" not found',
        ),
        (["get", "widgets"], 'error: unknown resource type "widgets"'),
        (
            ["delete", "ts", "nope", "-n", "bookstore"],
            'Error from server (NotFound): trafficsplits.split.smi-spec.io "nope" not found',
        ),
        (["delete"], "error: nothing to delete"),
        (["delete", "ts"], "error: name the trafficsplits to delete"),
    ],
    ids=["missing object", "unknown kind", "delete missing", "delete nothing", "delete no name"],
)
def test_errors_exit_1_with_a_message(api: RunningApi, args: list[str], message: str) -> None:
    result = osm(api, *args)
    assert result.exit_code == 1
    assert result.output.startswith(message), result.output


def test_delete_by_name_and_by_file(api: RunningApi) -> None:
    assert osm(api, "apply", "-f", DEMO).exit_code == 0
    deleted = osm(api, "delete", "ts", "bookstore-split", "-n", "bookstore")
    assert deleted.output.strip() == 'trafficsplit.split.smi-spec.io "bookstore-split" deleted'

    missing = osm(api, "delete", "-f", DEMO)
    assert missing.exit_code == 1, "the split is gone: an error, and the rest is deleted"
    assert (
        'Error from server (NotFound): trafficsplits.split.smi-spec.io "bookstore-split" '
        "not found" in missing.output
    )
    lines = missing.output.splitlines()
    assert lines[-1] == 'namespace "bookstore" deleted', "namespaces last"
    assert osm(api, "get", "ns").output.startswith("No resources found")

    again = osm(api, "delete", "-f", DEMO, "--ignore-not-found")
    assert again.exit_code == 0, again.output
    assert again.output == ""


def test_deleting_a_namespace_waits_until_its_contents_are_gone(api: RunningApi) -> None:
    assert osm(api, "apply", "-f", DEMO).exit_code == 0
    result = osm(api, "delete", "ns", "bookstore")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == 'namespace "bookstore" deleted'
    assert osm(api, "get", "ns", "bookstore").exit_code == 1, "gone when delete returns"
    assert osm(api, "get", "svc", "-n", "bookstore").output.startswith("No resources")
    assert "bookwarehouse" in osm(api, "get", "svc", "-A").output


def test_a_dry_run_stores_nothing(api: RunningApi) -> None:
    result = osm(api, "apply", "--dry-run", "-f", DEMO)
    assert result.exit_code == 1, "objects in namespaces a dry run did not create"
    assert "namespace/bookstore created (server dry run)" in result.output
    assert osm(api, "get", "ns", "bookstore").exit_code == 1


def test_optimistic_concurrency_refuses_a_stale_write(api: RunningApi) -> None:
    assert osm(api, "apply", "-f", DEMO).exit_code == 0
    with Api.connect(api.kubeconfig) as client:
        split = client.get("TrafficSplit", "bookstore", "bookstore-split")
        stale = json.loads(json.dumps(split))
        split["spec"]["backends"][0]["weight"] = 10
        client.replace(split)
        stale["spec"]["backends"][0]["weight"] = 20
        with pytest.raises(ApiError) as raised:
            client.replace(stale)
        assert raised.value.code == 409
        stored = client.get("TrafficSplit", "bookstore", "bookstore-split")
    assert stored["spec"]["backends"][0]["weight"] == 10


def test_watch_streams_changes_after_a_list(api: RunningApi) -> None:
    assert osm(api, "apply", "-f", DEMO).exit_code == 0
    with Api.connect(api.kubeconfig) as client:
        _, since = client.list("TrafficSplit")
        osm(api, "delete", "ts", "bookstore-split", "-n", "bookstore")
        events = client.watch("ts", resource_version=since)
        event_type, obj = next(events)
        events.close()
    assert event_type == "DELETED"
    assert obj["metadata"]["name"] == "bookstore-split"


def test_a_server_that_does_not_answer_says_how_to_fix_it(api: RunningApi, tmp_path: Path) -> None:
    config = yaml.safe_load(api.kubeconfig.read_text())
    nowhere = f"https://127.0.0.1:{free_port()}"
    config["clusters"][0]["cluster"]["server"] = nowhere
    elsewhere = tmp_path / "elsewhere.kubeconfig"
    elsewhere.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main.cli, ["--kubeconfig", str(elsewhere), "get", "svc"], obj={})
    assert result.exit_code == 1
    assert result.output.startswith(f"error: the Kubernetes API at {nowhere} does not answer")
    assert "osm up" in result.output
    assert "KUBECONFIG" in result.output


def test_without_a_kubeconfig_it_says_how_to_get_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main.cli,
        ["get", "svc"],
        obj={},
        env={
            "KUBECONFIG": "",
            "OSM_STATE_DIR": str(tmp_path / "state"),
            "HOME": str(tmp_path),
            "KUBERNETES_SERVICE_HOST": "",
        },
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: no kubeconfig found")
    assert "osm up" in result.output
    assert str(tmp_path / "state" / "kubeconfig") in result.output


def test_an_object_both_in_a_file_and_on_stdin_is_a_duplicate(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: twice}\n"
    (tmp_path / "ns.yaml").write_text(text)
    result = osm(None, "validate", "-f", str(tmp_path / "ns.yaml"), "-f", "-", stdin=text)
    assert result.exit_code == 1
    assert "Namespace twice: defined more than once" in result.output
