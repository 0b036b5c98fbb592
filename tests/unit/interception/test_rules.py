"""The interception rules against golden files: OSM's own expected outputs (the first two,
taken from pkg/injector/iptables_test.go) and ours for the cases OSM's test omits.

Rerun with UPDATE_GOLDEN=1 to rewrite the files of our own cases after a deliberate change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from osm.base import wellknown
from osm.interception import rules
from osm.interception.rules import InterceptionConfig, InterceptionConfigError, config_for_pod
from osm.model.config import MeshConfig, SidecarSettings, TrafficSettings, default_mesh_config

GOLDEN = Path(__file__).parent / "golden"
# Files copied from OSM's tests: never rewritten by UPDATE_GOLDEN.
OSM_FILES = ("osm-no-exclusions.rules", "osm-exclusions-and-inclusions.rules")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") and name not in OSM_FILES:
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path}; rerun with UPDATE_GOLDEN=1"


def mesh_config(traffic: TrafficSettings, mode: str = "Localhost") -> MeshConfig:
    base = default_mesh_config()
    return MeshConfig(
        base.api_version,
        base.metadata,
        traffic=traffic,
        sidecar=SidecarSettings(local_proxy_mode=mode),
    )


def test_default_rules_are_osms() -> None:
    check_golden("osm-no-exclusions.rules", rules.render(InterceptionConfig()))


def test_default_rules_from_empty_annotations_and_default_mesh_config() -> None:
    config = config_for_pod({}, default_mesh_config())
    assert config == InterceptionConfig()
    check_golden("osm-no-exclusions.rules", rules.render(config))


def test_exclusions_and_inclusions_are_osms() -> None:
    config = InterceptionConfig(
        outbound_ip_range_exclusions=("1.1.1.1/32", "2.2.2.2/32"),
        outbound_ip_range_inclusions=("3.3.3.3/32", "4.4.4.4/32"),
        outbound_port_exclusions=(10, 20),
        inbound_port_exclusions=(30, 40),
    )
    check_golden("osm-exclusions-and-inclusions.rules", rules.render(config))


@pytest.mark.parametrize(
    ("port", "served_by"),
    [
        (wellknown.PROXY_PROMETHEUS_PORT, "the sidecar's Prometheus listener"),
        (wellknown.LIVENESS_PROBE_PORT, "the sidecar's liveness probe listener"),
        (wellknown.READINESS_PROBE_PORT, "the sidecar's readiness probe listener"),
        (wellknown.STARTUP_PROBE_PORT, "the sidecar's startup probe listener"),
        (wellknown.HEALTHCHECK_PORT, "osm-healthcheck (rewritten tcpSocket probes)"),
    ],
    ids=["15010", "15901", "15902", "15903", "15904"],
)
@pytest.mark.parametrize(
    "config",
    [
        InterceptionConfig(),
        InterceptionConfig(
            inbound_port_exclusions=(8080,),
            network_interface_exclusions=("eth1",),
            local_proxy_mode="PodIP",
            pod_ip="10.233.0.7",
        ),
    ],
    ids=["default", "with exclusions"],
)
def test_inbound_connections_to_the_metrics_and_probe_ports_are_not_redirected(
    port: int, served_by: str, config: InterceptionConfig
) -> None:
    """The kubelet's probes and Prometheus reach `served_by` directly, not the inbound
    (mTLS) listener: RETURN before the catch-all redirect."""
    lines = rules.render(config).splitlines()
    kept = f"-A OSM_PROXY_INBOUND -p tcp --dport {port} -j RETURN"
    redirect = "-A OSM_PROXY_INBOUND -p tcp -j OSM_PROXY_IN_REDIRECT"
    assert kept in lines, served_by
    assert lines.index(kept) < lines.index(redirect)


def test_init_container_script_wraps_the_rules_in_a_heredoc_as_osm_does() -> None:
    script = rules.init_container_script(InterceptionConfig())
    expected = (GOLDEN / "osm-no-exclusions.rules").read_text()
    assert script == f"iptables-restore --noflush <<EOF\n{expected}EOF\n"


def test_every_kind_of_exclusion_merged_from_mesh_config_and_annotations() -> None:
    traffic = TrafficSettings(
        outbound_port_exclusion_list=(6379, 5432),
        inbound_port_exclusion_list=(9090,),
        outbound_ip_range_exclusion_list=("169.254.169.254/32", "10.0.0.0/8"),
        network_interface_exclusion_list=("eth1", "wg0"),
    )
    annotations = {
        # 5432 is also global: once only
        wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION: "5432, 8443",
        wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION: "9090,9091",
        wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION: "10.0.0.0/8, 192.168.1.7/24",
    }
    config = config_for_pod(annotations, mesh_config(traffic), excluded_addresses=["10.233.0.1"])
    assert config.outbound_port_exclusions == (6379, 5432, 8443)
    assert config.inbound_port_exclusions == (9090, 9091)
    assert config.outbound_ip_range_exclusions == (
        "169.254.169.254/32",
        "10.0.0.0/8",
        "192.168.1.0/24",
        "10.233.0.1/32",
    )
    check_golden("every-exclusion.rules", rules.render(config))


def test_inclusion_list_redirects_only_the_included_ranges() -> None:
    traffic = TrafficSettings(outbound_ip_range_inclusion_list=("10.234.0.0/16",))
    annotations = {wellknown.OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION: "10.233.0.0/16,10.234.0.0/16"}
    config = config_for_pod(annotations, mesh_config(traffic))
    assert config.outbound_ip_range_inclusions == ("10.234.0.0/16", "10.233.0.0/16")
    text = rules.render(config)
    assert text.splitlines()[-3:] == [
        "-A OSM_PROXY_OUTBOUND -d 10.233.0.0/16 -j OSM_PROXY_OUT_REDIRECT",
        "-A OSM_PROXY_OUTBOUND -j RETURN",
        "COMMIT",
    ]
    check_golden("inclusion-list.rules", text)


def test_pod_ip_mode_dnats_the_sidecars_loopback_calls_to_the_pod_ip() -> None:
    config = config_for_pod({}, mesh_config(TrafficSettings(), "PodIP"), pod_ip="10.233.0.7")
    text = rules.render(config)
    assert (
        "-I OUTPUT -p tcp -o lo -d 127.0.0.1/32 -m owner --uid-owner 1500 "
        "-j DNAT --to-destination 10.233.0.7"
    ) in text.splitlines()
    check_golden("pod-ip-mode.rules", text)


def test_pod_ip_mode_without_an_ip_keeps_osms_shell_placeholder() -> None:
    text = rules.render(InterceptionConfig(local_proxy_mode="PodIP"))
    assert "--to-destination $POD_IP" in text


@pytest.mark.parametrize(
    ("annotation", "value", "bad"),
    [
        (wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION, "80,http", "http"),
        (wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION, "80,,90", ""),
        (wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION, "0", "0"),
        (wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION, "65536", "65536"),
        (wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION, "-5", "-5"),
        (wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION, "10.0.0.0/8,10.1.2.3", "10.1.2.3"),
        (wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION, "10.0.0.0/33", "10.0.0.0/33"),
        (wellknown.OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION, "fd00::/8", "fd00::/8"),
        (wellknown.OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION, "not-a-cidr/8", "not-a-cidr/8"),
    ],
)
def test_bad_annotation_values_name_the_annotation_and_the_item(
    annotation: str, value: str, bad: str
) -> None:
    with pytest.raises(InterceptionConfigError) as raised:
        config_for_pod({annotation: value})
    message = str(raised.value)
    assert annotation in message
    assert f'"{bad}"' in message


def test_empty_annotations_mean_no_exclusions() -> None:
    config = config_for_pod(
        {
            wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION: " ",
            wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION: "",
        }
    )
    assert config == InterceptionConfig()


def test_bad_mesh_config_interface_names_the_field() -> None:
    traffic = TrafficSettings(network_interface_exclusion_list=("eth0; rm -rf /",))
    with pytest.raises(InterceptionConfigError, match="networkInterfaceExclusionList"):
        config_for_pod({}, mesh_config(traffic))


def test_hand_built_configs_are_validated_before_rendering() -> None:
    with pytest.raises(InterceptionConfigError, match="not a port"):
        rules.render(InterceptionConfig(outbound_port_exclusions=(70000,)))
    with pytest.raises(InterceptionConfigError, match="local proxy mode"):
        rules.render(InterceptionConfig(local_proxy_mode="Sideways"))
    with pytest.raises(InterceptionConfigError, match="pod IP"):
        rules.render(InterceptionConfig(local_proxy_mode="PodIP", pod_ip="10.0.0.300"))


def test_more_than_fifteen_excluded_ports_are_split_into_rules_iptables_accepts() -> None:
    ports = tuple(range(1000, 1020))
    text = rules.render(InterceptionConfig(outbound_port_exclusions=ports))
    multiport = [line for line in text.splitlines() if "multiport" in line]
    assert multiport == [
        "-A OSM_PROXY_OUTBOUND -p tcp --match multiport --dports "
        + ",".join(str(p) for p in range(1000, 1015))
        + " -j RETURN",
        "-A OSM_PROXY_OUTBOUND -p tcp --match multiport --dports "
        + ",".join(str(p) for p in range(1015, 1020))
        + " -j RETURN",
    ]


def test_the_rules_module_does_no_io() -> None:
    import ast

    tree = ast.parse(Path(rules.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= {
        "__future__",
        "ipaddress",
        "re",
        "collections",
        "dataclasses",
        "typing",
        "osm",
    }
    assert "open(" not in Path(rules.__file__).read_text()
