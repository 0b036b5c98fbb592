"""The pure parts of running containers: commands, environment, backoff, readiness."""

from __future__ import annotations

from pathlib import Path

import pytest

from osm.base import wellknown
from osm.model.core import Container, ContainerPort, Probe
from osm.runtime import process
from osm.runtime.process import Backoff, ProcessError, Readiness


def test_pod_command_enters_the_namespace_then_drops_privileges() -> None:
    assert process.pod_command("pod-a", ["python3", "-m", "http.server"], uid=65534, gid=65534) == [
        "ip", "netns", "exec", "pod-a",
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
        "--", "python3", "-m", "http.server",
    ]  # fmt: skip
    with pytest.raises(ProcessError, match="empty"):
        process.pod_command("pod-a", [], uid=1, gid=1)


def test_probe_ports_by_number_or_name() -> None:
    container = Container("app", ports=(ContainerPort(8080, "http"),))
    assert process.resolve_port(container, 9000) == 9000
    assert process.resolve_port(container, "http") == 8080
    with pytest.raises(ProcessError, match='no port named "grpc"'):
        process.resolve_port(container, "grpc")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            (),
            ["Host: 10.233.0.2:8080", "User-Agent: kube-probe/osm", "Accept: */*"],
            id="defaults",
        ),
        pytest.param(
            ((wellknown.ORIGINAL_TCP_PORT_HEADER, "14001"),),
            [
                "Host: 10.233.0.2:8080",
                "User-Agent: kube-probe/osm",
                "Accept: */*",
                f"{wellknown.ORIGINAL_TCP_PORT_HEADER}: 14001",
            ],
            id="a rewritten tcpSocket probe names the app's port",
        ),
        pytest.param(
            (("host", "app.local"), ("User-Agent", "mine"), ("X-A", "1"), ("X-A", "2")),
            ["Accept: */*", "host: app.local", "User-Agent: mine", "X-A: 1", "X-A: 2"],
            id="given headers replace the defaults, by any case, and repeat",
        ),
        pytest.param(
            (("Accept", ""),),
            ["Host: 10.233.0.2:8080", "User-Agent: kube-probe/osm"],
            id="an empty Accept removes it",
        ),
    ],
)
def test_an_http_probe_sends_the_kubelets_headers_and_the_probes_own(
    headers: tuple[tuple[str, str], ...], expected: list[str]
) -> None:
    probe = Probe("httpGet", port=8080, path="/osm-healthcheck", http_headers=headers)
    request = process.probe_request(probe, "10.233.0.2:8080").decode()
    first, *lines = request.removesuffix("\r\n\r\n").split("\r\n")
    assert first == "GET /osm-healthcheck HTTP/1.1"
    assert lines == [*expected, "Connection: close"]


def test_log_path() -> None:
    assert process.log_path(Path("/s"), "default", "web-0", "app") == Path(
        "/s/logs/default/web-0/app.log"
    )


def test_backoff_doubles_up_to_the_maximum_and_resets_after_a_good_run() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=5.0, reset_after=60.0)
    assert [backoff.delay(0.1) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay(61.0) == 1.0
    assert backoff.delay(0.1) == 2.0


def test_readiness_follows_the_thresholds() -> None:
    readiness = Readiness(success_threshold=2, failure_threshold=3)
    assert [readiness.observe(ok) for ok in (True, True)] == [False, True]
    assert [readiness.observe(ok) for ok in (False, False, True, False, False, False)] == [
        True, True, True, True, True, False,
    ]  # fmt: skip
    assert readiness.observe(True) is False  # needs two in a row again
    assert readiness.observe(True) is True
    readiness.reset()
    assert readiness.ready is False
