"""The validating webhook: the model's strict kinds are refused with every problem and
its field path in one message; a valid one is allowed (with the model's warnings); a Pod
UPDATE keeps what the injector added; what is not the mesh's is allowed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from osm.base import wellknown
from osm.webhook import review, validator
from tests.unit.injector.injector_support import pod
from tests.unit.webhook.reviews import body, request

GOOD_SPLIT = yaml.safe_load("""
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: web-canary, namespace: shop}
spec:
  service: web
  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]
""")
BAD_SPLIT = yaml.safe_load("""
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: web-canary, namespace: shop}
spec:
  backends: [{service: web-v1, weight: -1}, {weight: 10}]
  colour: blue
""")


async def _answer(review_: dict[str, Any]) -> dict[str, Any]:
    response = await validator.validate(review.decode(body(review_)))
    answer: dict[str, Any] = response.to_json()["response"]
    return answer


async def test_a_bad_traffic_split_is_denied_with_every_field_path() -> None:
    answer = await _answer(request(BAD_SPLIT, namespace="shop"))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 422
    message = answer["status"]["message"]
    assert message.startswith("TrafficSplit shop/web-canary is invalid (")
    for path in (
        "spec.service",
        "spec.backends[0].weight",
        "spec.backends[1].service",
        "spec.colour",
    ):
        assert f"{path}: " in message, path


async def test_a_good_traffic_split_is_allowed() -> None:
    assert (await _answer(request(GOOD_SPLIT, namespace="shop")))["allowed"] is True


async def test_an_object_without_namespace_is_in_the_requests() -> None:
    split = copy.deepcopy(GOOD_SPLIT)
    del split["metadata"]["namespace"]
    assert (await _answer(request(split, namespace="shop")))["allowed"] is True


def _injected() -> dict[str, Any]:
    injected = pod()
    injected["metadata"]["labels"] = {wellknown.PROXY_UUID_LABEL: "6f1c5a4e"}
    return injected


def _relabelled() -> dict[str, Any]:
    changed = _injected()
    changed["metadata"]["labels"][wellknown.PROXY_UUID_LABEL] = "other"
    return changed


def _new_image() -> dict[str, Any]:
    changed = _injected()
    changed["spec"]["containers"][0]["image"] = "bookstore:v2"
    return changed


def _new_port() -> dict[str, Any]:
    changed = _injected()
    changed["spec"]["containers"][0]["ports"][0]["containerPort"] = 1
    return changed


POD_UPDATES = [
    # (case, updated, allowed, the message names)
    ("the image changes", _new_image, True, ""),
    ("the proxy's UUID changes", _relabelled, False, wellknown.PROXY_UUID_LABEL),
    ("a port changes", _new_port, False, "spec.containers[0].ports[0].containerPort"),
]


@pytest.mark.parametrize(
    ("updated", "allowed", "names"), [c[1:] for c in POD_UPDATES], ids=[c[0] for c in POD_UPDATES]
)
async def test_a_pod_update_keeps_what_kubernetes_and_the_injector_fix(
    updated: Any, allowed: bool, names: str
) -> None:
    answer = await _answer(request(updated(), operation="UPDATE", old=_injected()))
    assert answer["allowed"] is allowed
    if not allowed:
        assert names in answer["status"]["message"]


NOT_OURS = [
    ("a Pod create", request(pod())),
    ("a delete of a bad split", request(None, operation="DELETE", old=BAD_SPLIT)),
    ("a Secret", request({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})),
]


@pytest.mark.parametrize("sent", [c[1] for c in NOT_OURS], ids=[c[0] for c in NOT_OURS])
async def test_what_is_not_the_meshs_to_validate_is_allowed(sent: dict[str, Any]) -> None:
    assert (await _answer(sent))["allowed"] is True
