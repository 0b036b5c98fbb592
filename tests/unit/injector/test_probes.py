"""OSM's probe rewriting, row by row: what the kubelet probes after injection, and the
original target the sidecar keeps to forward to."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from osm.injector.probes import HealthProbes, OriginalProbe, ProbeKind, rewrite
from osm.injector.values import InjectionError

OWNER = "Pod bookstore/bookstore-v1"
PORTS = [{"name": "web", "containerPort": 14001}, {"name": "admin", "containerPort": 8081}]
LIVENESS, READINESS, STARTUP = ProbeKind.LIVENESS, ProbeKind.READINESS, ProbeKind.STARTUP


def _container(**probes: Any) -> dict[str, Any]:
    return {"name": "bookstore", "ports": PORTS, **probes}


@pytest.mark.parametrize(
    ("field", "probe", "rewritten", "original"),
    [
        pytest.param(
            "livenessProbe",
            {"httpGet": {"path": "/healthz", "port": 14001}, "periodSeconds": 5},
            {"httpGet": {"path": "/osm-liveness-probe", "port": 15901}, "periodSeconds": 5},
            OriginalProbe(LIVENESS, "bookstore", 14001, "/healthz"),
            id="http liveness: port and path",
        ),
        pytest.param(
            "readinessProbe",
            {"httpGet": {"path": "/ready", "port": "admin"}, "timeoutSeconds": 3},
            {"httpGet": {"path": "/osm-readiness-probe", "port": 15902}, "timeoutSeconds": 3},
            OriginalProbe(READINESS, "bookstore", 8081, "/ready", timeout_seconds=3),
            id="http readiness on a named port",
        ),
        pytest.param(
            "startupProbe",
            {"httpGet": {"port": "14001"}},
            {"httpGet": {"path": "/osm-startup-probe", "port": 15903}},
            OriginalProbe(STARTUP, "bookstore", 14001, "/"),
            id="http startup, port as text, no path",
        ),
        pytest.param(
            "livenessProbe",
            {"httpGet": {"path": "/healthz", "port": 14001, "scheme": "HTTPS"}},
            {"httpGet": {"path": "/healthz", "port": 15901, "scheme": "HTTPS"}},
            OriginalProbe(LIVENESS, "bookstore", 14001, "/healthz", https=True),
            id="https liveness keeps its path (passed through)",
        ),
        pytest.param(
            "readinessProbe",
            {"tcpSocket": {"port": "web"}, "initialDelaySeconds": 2},
            {
                "initialDelaySeconds": 2,
                "httpGet": {
                    "path": "/osm-healthcheck",
                    "port": 15904,
                    "httpHeaders": [{"name": "Original-Tcp-Port", "value": "14001"}],
                },
            },
            OriginalProbe(READINESS, "bookstore", 14001, "", tcp=True),
            id="tcpSocket becomes an httpGet of the healthcheck",
        ),
        pytest.param(
            "livenessProbe",
            {"exec": {"command": ["cat", "/tmp/healthy"]}},
            {"exec": {"command": ["cat", "/tmp/healthy"]}},
            None,
            id="exec is left alone",
        ),
        pytest.param(
            "livenessProbe",
            {"grpc": {"port": 14001}},
            {"grpc": {"port": 14001}},
            None,
            id="grpc is left alone (as OSM does)",
        ),
    ],
)
def test_probe_rewriting(
    field: str, probe: dict[str, Any], rewritten: dict[str, Any], original: OriginalProbe | None
) -> None:
    given = _container(**{field: probe})
    before = copy.deepcopy(given)
    containers, originals = rewrite([given], OWNER)
    assert containers[0][field] == rewritten
    assert originals.probes == ((original,) if original else ())
    assert given == before, "the input must not be changed in place"


def test_each_kind_gets_its_port_and_only_http_probes_are_forwarded_by_the_sidecar() -> None:
    containers, originals = rewrite(
        [
            _container(
                startupProbe={"httpGet": {"path": "/s", "port": 14001}},
                livenessProbe={"tcpSocket": {"port": 14001}},
            ),
            {"name": "cache", "readinessProbe": {"httpGet": {"path": "/r", "port": 6379}}},
        ],
        OWNER,
    )
    assert originals.kinds() == (LIVENESS, READINESS, STARTUP)
    assert [(p.kind, p.container) for p in originals.forwarded()] == [
        (READINESS, "cache"),
        (STARTUP, "bookstore"),
    ]
    assert originals.uses_tcp
    readiness = containers[1]["readinessProbe"]["httpGet"]
    assert readiness == {"path": "/osm-readiness-probe", "port": 15902}


def test_no_probes_no_ports() -> None:
    containers, originals = rewrite([_container()], OWNER)
    assert containers == [_container()]
    assert originals == HealthProbes() and originals.kinds() == () and not originals.uses_tcp


def test_tcp_probes_of_one_kind_in_two_containers_are_fine() -> None:
    tcp = {"tcpSocket": {"port": 14001}}
    _, originals = rewrite([_container(livenessProbe=tcp), _container(livenessProbe=tcp)], OWNER)
    assert len(originals.probes) == 2 and originals.forwarded() == ()


@pytest.mark.parametrize(
    ("containers", "path", "message"),
    [
        pytest.param(
            [_container(livenessProbe={"httpGet": {"port": "metrics"}})],
            "spec.containers[0].livenessProbe.httpGet.port",
            'no container port is named "metrics"; the container\'s named ports: admin, web',
            id="unknown named port",
        ),
        pytest.param(
            [{"name": "a", "readinessProbe": {"tcpSocket": {"port": "web"}}}],
            "spec.containers[0].readinessProbe.tcpSocket.port",
            'no container port is named "web"',
            id="named port, container without ports",
        ),
        pytest.param(
            [_container(startupProbe={"httpGet": {"port": 0}})],
            "spec.containers[0].startupProbe.httpGet.port",
            "0 is not a port number (1-65535) or a port name",
            id="port zero",
        ),
        pytest.param(
            [
                _container(livenessProbe={"httpGet": {"port": 14001}}),
                {"name": "sidecar-app", "livenessProbe": {"httpGet": {"port": 9000}}},
            ],
            "spec.containers[1].livenessProbe.httpGet",
            "a second httpGet liveness probe (the first is on container bookstore); the "
            "sidecar forwards one per pod on port 15901",
            id="two http liveness probes",
        ),
    ],
)
def test_probes_the_sidecar_could_not_forward_are_refused(
    containers: list[dict[str, Any]], path: str, message: str
) -> None:
    with pytest.raises(InjectionError) as caught:
        rewrite(containers, OWNER)
    assert (caught.value.object_ref, caught.value.path, caught.value.message) == (
        OWNER,
        path,
        message,
    )
