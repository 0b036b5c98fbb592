"""``--set key=value``: what each key sets, and every mistake refused at once with what is
valid (a did-you-mean for a near miss, the flag for a chart key that is a flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from osm.cli import main
from osm.install import manifests, values
from tests.unit import golden

main.register(main.cli)
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "install"

ACCEPTED = [
    # (--set, what it changes: an attribute of Values, or a MeshConfig path)
    ("osm.image.registry=registry.example/osm/", "image_registry", "registry.example/osm"),
    ("osm.image.tag=v1.2.3", "image_tag", "v1.2.3"),
    ("osm.image.pullPolicy=Never", "image_pull_policy", "Never"),
    ("osm.sidecarImage=envoyproxy/envoy:v1.41.0", "sidecar_image", "envoyproxy/envoy:v1.41.0"),
    ("osm.pythonSidecarImage=reg.example/sc:1", "python_sidecar_image", "reg.example/sc:1"),
    ("osm.initContainerImage=reg.example/init:1", "init_container_image", "reg.example/init:1"),
    ("osm.osmController.replicaCount=3", "controller_replicas", 3),
    ("osm.injector.replicaCount=2", "injector_replicas", 2),
    ("osm.injector.replicaCount=0", "injector_replicas", 0),
    ("osm.injector.webhookTimeoutSeconds=30", "webhook_timeout_seconds", 30),
    ("osm.enableEgress=false", ("traffic", "enableEgress"), False),
    (
        "osm.enablePermissiveTrafficPolicy=false",
        ("traffic", "enablePermissiveTrafficPolicyMode"),
        False,
    ),
    (
        "osm.outboundPortExclusionList={6379, 5432}",
        ("traffic", "outboundPortExclusionList"),
        [6379, 5432],
    ),
    ("osm.inboundPortExclusionList={}", ("traffic", "inboundPortExclusionList"), []),
    (
        "osm.outboundIPRangeExclusionList={10.0.0.0/8,fd00::/8}",
        ("traffic", "outboundIPRangeExclusionList"),
        ["10.0.0.0/8", "fd00::/8"],
    ),
    (
        "osm.networkInterfaceExclusionList={eth1}",
        ("traffic", "networkInterfaceExclusionList"),
        ["eth1"],
    ),
    ("osm.envoyLogLevel=debug", ("sidecar", "logLevel"), "debug"),
    ("osm.localProxyMode=PodIP", ("sidecar", "localProxyMode"), "PodIP"),
    ("osm.configResyncInterval=90s", ("sidecar", "configResyncInterval"), "90s"),
    ("osm.controllerLogLevel=warn", ("observability", "osmLogLevel"), "warn"),
    ("osm.tracing.port=9412", ("observability", "tracing", "port"), 9412),
    (
        "osm.certificateProvider.serviceCertValidityDuration=1h",
        ("certificate", "serviceCertValidityDuration"),
        "1h",
    ),
    ("osm.certificateProvider.certKeyBitSize=4096", ("certificate", "certKeyBitSize"), 4096),
    ("osm.featureFlags.enableRetryPolicy=true", ("featureFlags", "enableRetryPolicy"), True),
]


@pytest.mark.parametrize(("item", "where", "value"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_a_set_changes_its_value(item: str, where: str | tuple[str, ...], value: Any) -> None:
    chosen = values.parse_sets([item])
    if isinstance(where, tuple):
        assert chosen.mesh_config == {where: value}
    else:
        assert getattr(chosen, where) == value


def test_resources_are_set_one_by_one() -> None:
    chosen = values.parse_sets(
        ["osm.osmController.resource.limits.cpu=2", "osm.injector.resource.requests.memory=1Gi"]
    )
    assert chosen.controller_resources.limits_cpu == "2"
    assert chosen.controller_resources.requests_memory == "128M"  # OSM's default stays
    assert chosen.injector_resources.requests_memory == "1Gi"


def test_a_later_set_wins() -> None:
    chosen = values.parse_sets(["osm.image.tag=a", "osm.image.tag=b"])
    assert chosen.image_tag == "b"


REFUSED = [
    # (--set, what the one line of the error says)
    (
        "osm.enableEgres=false",
        'unknown key (did you mean "osm.enableEgress"?); valid keys: osm.image.registry,',
    ),
    ("osm.nothing=1", "unknown key; valid keys: osm.image.registry,"),
    ("osm.meshName=blue", "use the flag --mesh-name instead"),
    ("osm.osmNamespace=x", "use the flag --osm-namespace instead"),
    ("osm.enforceSingleMesh=false", "use the flag --enforce-single-mesh instead"),
    ("osm.enableEgress", "expected key=value"),
    ("osm.enableEgress=yes", "expected true or false"),
    ("osm.image.pullPolicy=Sometimes", "expected one of Always, IfNotPresent, Never"),
    ("osm.envoyLogLevel=verbose", "expected one of trace, debug, info"),
    ("osm.localProxyMode=podip", 'expected one of Localhost, PodIP (did you mean "PodIP"?)'),
    ("osm.osmController.replicaCount=-1", "expected a whole number from 0 to 100"),
    ("osm.osmController.replicaCount=two", "expected a whole number from 0 to 100"),
    ("osm.injector.webhookTimeoutSeconds=31", "expected a whole number from 1 to 30"),
    ("osm.certificateProvider.certKeyBitSize=1024", "expected a whole number from 2048 to 4096"),
    (
        "osm.certificateProvider.serviceCertValidityDuration=30s",
        "expected a Go duration of at least 1m",
    ),
    ("osm.configResyncInterval=soon", "expected a Go duration"),
    ("osm.outboundPortExclusionList=6379", "expected a list in braces, as Helm writes it"),
    ("osm.outboundPortExclusionList={0}", "expected a whole number from 1 to 65535"),
    ("osm.outboundIPRangeExclusionList={10.0.0.0}", "needs its /length"),
    ("osm.outboundIPRangeExclusionList={ten}", '"ten" is not a CIDR'),
    ("osm.osmController.resource.limits.memory=lots", "expected a Kubernetes quantity"),
    ("osm.image.registry=Not A Registry", "expected a registry and path"),
    ("osm.image.tag=-bad", "expected an image tag"),
    ("osm.sidecarImage=", "expected an image reference"),
]


@pytest.mark.parametrize(("item", "says"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_bad_set_is_refused_with_what_is_valid(item: str, says: str) -> None:
    with pytest.raises(values.SetError) as raised:
        values.parse_sets([item])
    (problem,) = raised.value.problems
    assert says in problem


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(values.SetError) as raised:
        values.parse_sets([item for item, _ in REFUSED] + ["osm.image.tag=fine"])
    assert len(raised.value.problems) == len(REFUSED)


def test_mesh_names_are_dns_labels() -> None:
    assert values.check_mesh_name("blue-1") is None
    assert values.check_mesh_name("Blue") is not None
    assert values.check_mesh_name("a" * 64) is not None


# -- the command line -------------------------------------------------------------------------
def osm(*args: str) -> Any:
    return CliRunner().invoke(main.cli, list(args), obj={})


def test_install_refuses_bad_sets_and_names_before_it_connects() -> None:
    result = osm(
        "--kubeconfig",
        "/nonexistent",
        "install",
        "--mesh-name",
        "Bad_Name",
        "--set",
        "osm.enableEgres=false",
        "--set",
        "osm.image.tag=-x",
    )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith('error: --mesh-name: "Bad_Name" is not a valid name')
    assert lines[1].startswith("error: --set osm.enableEgres: unknown key")
    assert lines[2].startswith('error: --set osm.image.tag="-x": expected an image tag')
    assert lines[-1] == "error: nothing was installed"


def test_dry_run_prints_the_manifests_for_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("osm.__version__", "0.0.0-golden")
    result = osm("install", "--dry-run", "-o", "yaml")
    assert result.exit_code == 0, result.output
    golden.compare(GOLDEN / "install-dry-run.yaml", result.output)


def test_dry_run_as_json_is_a_list_of_the_same_objects() -> None:
    import json

    result = osm("install", "--dry-run", "-o", "json", "--mesh-name", "blue")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["kind"] == "List"
    assert [o["metadata"]["name"] for o in document["items"]] == [
        o["metadata"]["name"]
        for o in manifests.render(values.Values(), "blue", "osm-system", main.osm.__version__)
    ]
