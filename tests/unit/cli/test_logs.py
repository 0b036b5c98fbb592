"""``osm logs`` reads a container's output through the API (``pods/NAME/log``), as
``kubectl logs``: the container by name, the last lines, and following until the pod
goes; the server's refusals are printed as kubectl prints them."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner, Result

from osm.cli import main
from osm.cli.client import Api
from tests.unit.cli.local_api import RunningApi

main.register(main.cli)


def osm(api: RunningApi, *args: str) -> Result:
    return CliRunner().invoke(main.cli, ["--kubeconfig", str(api.kubeconfig), *args], obj={})


@pytest.fixture
def pod(api: RunningApi) -> RunningApi:
    """Pod shop/web with containers app (three lines of output) and proxy (one)."""
    with Api.connect(api.kubeconfig) as client:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        client.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app"},
                        {"name": "proxy", "image": "proxy"},
                    ]
                },
            }
        )
    for container, text in (("app", "one\ntwo\nthree\n"), ("proxy", "listening\n")):
        path = api.log_file("shop", "web", container)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return api


@pytest.mark.parametrize(
    ("args", "output", "status"),
    [
        (["-c", "app"], "one\ntwo\nthree\n", 0),
        (["-c", "app", "--tail", "1"], "three\n", 0),
        (["-c", "app", "--tail", "0"], "", 0),
        (["--container", "proxy"], "listening\n", 0),
        (
            [],
            "Error from server (BadRequest): a container name must be specified for pod web, "
            "choose one of: [app proxy]\n",
            1,
        ),
        (
            ["-c", "db"],
            "Error from server (BadRequest): container db is not valid for pod web\n",
            1,
        ),
    ],
    ids=["all", "tail", "tail 0", "other container", "no container", "unknown container"],
)
def test_logs_of_a_container(pod: RunningApi, args: list[str], output: str, status: int) -> None:
    result = osm(pod, "logs", "-n", "shop", "web", *args)
    assert (result.output, result.exit_code) == (output, status)


def test_a_missing_pod(api: RunningApi) -> None:
    result = osm(api, "logs", "-n", "shop", "web")
    assert (result.output, result.exit_code) == (
        'Error from server (NotFound): pods "web" not found\n',
        1,
    )


def test_follow_prints_new_output_until_the_pod_goes(pod: RunningApi) -> None:
    results: list[Result] = []
    following = threading.Thread(
        target=lambda: results.append(osm(pod, "logs", "-n", "shop", "web", "-c", "app", "-f"))
    )
    following.start()
    time.sleep(0.5)
    with pod.log_file("shop", "web", "app").open("a") as log:
        log.write("four\n")
    time.sleep(1.0)  # the server looks for new output every 0.2 s
    with Api.connect(pod.kubeconfig) as client:
        client.delete("Pod", "shop", "web")
    following.join(10)
    assert not following.is_alive(), "the follow ends when the pod is deleted"
    assert (results[0].output, results[0].exit_code) == ("one\ntwo\nthree\nfour\n", 0)
