"""``osm apply`` through the API: what each object's line says (created, configured,
unchanged; with ``--dry-run`` the same, and nothing stored), and that every error of
every file is printed before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from osm.cli import main
from osm.cli.client import Api
from osm.kube.errors import ApiError
from tests.unit.cli.local_api import RunningApi

main.register(main.cli)

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
SPLIT = (
    "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\n"
    "metadata: {{name: web, namespace: shop}}\n"
    "spec:\n  service: web\n"
    "  backends: [{{service: web-v1, weight: {v1}}}, {{service: web-v2, weight: {v2}}}]\n"
)
SERVICE = (
    "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop, labels: {labels}}}\n"
    "spec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80}}]\n"
)


def osm(api: RunningApi, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main.cli, ["--kubeconfig", str(api.kubeconfig), *args], obj={}, input=stdin
    )


def weights(api: RunningApi) -> list[int] | None:
    with Api.connect(api.kubeconfig) as client:
        try:
            split = client.get("TrafficSplit", "shop", "web")
        except ApiError:
            return None
    return [backend["weight"] for backend in split["spec"]["backends"]]


@pytest.mark.parametrize(
    ("stored", "applied", "flags", "line", "weights_after"),
    [
        (None, (50, 50), [], "created", [50, 50]),
        ((50, 50), (50, 50), [], "unchanged", [50, 50]),
        ((50, 50), (90, 10), [], "configured", [90, 10]),
        (None, (50, 50), ["--dry-run"], "created (server dry run)", None),
        ((50, 50), (50, 50), ["--dry-run"], "unchanged (server dry run)", [50, 50]),
        ((50, 50), (90, 10), ["--dry-run"], "configured (server dry run)", [50, 50]),
    ],
    ids=[
        "new",
        "same again",
        "changed",
        "dry run of a new one",
        "dry run of the same",
        "dry run of a change",
    ],
)
def test_each_object_is_created_configured_or_unchanged(
    api: RunningApi,
    stored: tuple[int, int] | None,
    applied: tuple[int, int],
    flags: list[str],
    line: str,
    weights_after: list[int] | None,
) -> None:
    assert osm(api, "apply", "-f", "-", stdin=NAMESPACE).exit_code == 0
    if stored is not None:
        v1, v2 = stored
        assert osm(api, "apply", "-f", "-", stdin=SPLIT.format(v1=v1, v2=v2)).exit_code == 0
    v1, v2 = applied
    result = osm(api, "apply", *flags, "-f", "-", stdin=SPLIT.format(v1=v1, v2=v2))
    assert result.exit_code == 0, result.output
    assert result.output == f"trafficsplit.split.smi-spec.io/web {line}\n"
    assert weights(api) == weights_after


def test_unchanged_means_the_server_kept_the_resource_version(api: RunningApi) -> None:
    text = NAMESPACE + "---\n" + SERVICE.format(labels="{app: web}")
    assert osm(api, "apply", "-f", "-", stdin=text).exit_code == 0
    with Api.connect(api.kubeconfig) as client:
        before = client.get("Service", "shop", "web")["metadata"]["resourceVersion"]
        assert osm(api, "apply", "-f", "-", stdin=text).output.splitlines() == [
            "namespace/shop unchanged",
            "service/web unchanged",
        ]
        assert client.get("Service", "shop", "web")["metadata"]["resourceVersion"] == before
        relabelled = NAMESPACE + "---\n" + SERVICE.format(labels="{app: web, tier: front}")
        assert osm(api, "apply", "-f", "-", stdin=relabelled).output.splitlines() == [
            "namespace/shop unchanged",
            "service/web configured",
        ]
        after = client.get("Service", "shop", "web")
    assert after["metadata"]["resourceVersion"] != before
    assert after["spec"]["clusterIP"], "the server's allocation survives a replace"


def test_every_error_of_every_file_is_printed_and_nothing_is_applied(
    api: RunningApi, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(
        NAMESPACE + "---\n" + SPLIT.format(v1="fifty", v2=50) + "---\nkind: Service\n"
    )
    (tmp_path / "b.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n"
        "spec:\n  ports: [{port: 0}]\n"
    )
    result = osm(api, "apply", "-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "b.yaml"))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    located = [line.split(":")[0] for line in lines[:-1]]
    assert located == [
        f"{tmp_path / 'a.yaml'} (document 2)",
        f"{tmp_path / 'a.yaml'} (document 3)",
        f"{tmp_path / 'b.yaml'} (document 1)",
    ]
    assert "spec.backends[0].weight: must be an integer" in lines[0]
    assert lines[-1] == "error: 3 error(s) in the manifests; nothing was applied"
    assert osm(api, "get", "ns", "shop").exit_code == 1, "not even the valid Namespace"


def test_an_object_the_server_refuses_does_not_stop_the_others(api: RunningApi) -> None:
    text = (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: elsewhere}\n"
        "---\n" + NAMESPACE + "---\n" + SPLIT.format(v1=1, v2=2)
    )
    result = osm(api, "apply", "-f", "-", stdin=text)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "namespace/shop created",
        "Error from server (NotFound): error when applying serviceaccount/a from "
        '"<stdin>": namespaces "elsewhere" not found',
        "trafficsplit.split.smi-spec.io/web created",
    ]


def test_a_422_prints_each_cause_as_kubectl_does(api: RunningApi) -> None:
    """The local checks and the server's are the same model; a Service whose clusterIP
    another Service holds is one only the server can see."""
    first = SERVICE.format(labels="{}").replace("port: 80}]", "port: 80}]\n  clusterIP: 10.96.0.50")
    second = first.replace("name: web", "name: api")
    assert osm(api, "apply", "-f", "-", stdin=NAMESPACE + "---\n" + first).exit_code == 0
    result = osm(api, "apply", "-f", "-", stdin=second)
    assert result.exit_code == 1
    assert result.output.startswith('The Service "api" is invalid: spec.clusterIP: '), result.output
