"""AdmissionReview v1 in and out: a request as kube-apiserver sends it decodes into every
field; responses encode as the API server reads them (uid echoed, a refusal's Status, a
base64 JSONPatch); and a body that is not an AdmissionReview v1 request is `Malformed`,
with the uid when it was readable, answered as ``allowed: false``, never an exception."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from osm.webhook import review
from tests.unit.injector.injector_support import pod
from tests.unit.webhook.reviews import body, request

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def test_a_request_decodes_into_every_field() -> None:
    sent = request(pod(), dry_run=True, uid=UID)
    sent["request"]["oldObject"] = {"kind": "Pod"}
    decoded = review.decode(body(sent))
    assert decoded == review.Request(
        uid=UID,
        kind=review.GroupVersionKind("", "v1", "Pod"),
        resource=review.GroupVersionResource("", "v1", "pods"),
        operation="CREATE",
        namespace="bookstore",
        name="bookstore-v1",
        object=pod(),
        old_object={"kind": "Pod"},
        dry_run=True,
        user_info=review.UserInfo("kubernetes-admin", "", ("system:masters",)),
    )


def test_optional_fields_may_be_absent() -> None:
    minimal = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"version": "v1", "kind": "Pod"},
            "resource": {"version": "v1", "resource": "pods"},
            "operation": "DELETE",
        },
    }
    decoded = review.decode(body(minimal))
    assert (decoded.object, decoded.old_object, decoded.dry_run, decoded.namespace) == (
        None,
        None,
        False,
        "",
    )


def _malformed(text: bytes) -> review.Malformed:
    with pytest.raises(review.Malformed) as caught:
        review.decode(text)
    return caught.value


def _review(**request_fields: Any) -> bytes:
    sent = request(pod(), uid=UID)
    for key, value in request_fields.items():
        if value is None:
            del sent["request"][key]
        else:
            sent["request"][key] = value
    return body(sent)


def _top(**fields: Any) -> bytes:
    sent = request(pod(), uid=UID)
    sent.update(fields)
    return body(sent)


MALFORMED = [
    # (case, body, the message says, uid echoed)
    ("empty", b"", "the body is empty", ""),
    ("whitespace", b" \n", "the body is empty", ""),
    ("not JSON", b"{apiVersion: v1", "not JSON", ""),
    ("not UTF-8", b"\xff\xfe{}", "not JSON", ""),
    ("a JSON array", b"[]", "JSON array, not an object", ""),
    ("v1beta1", _top(apiVersion="admission.k8s.io/v1beta1"), "speaks admission.k8s.io/v1", UID),
    ("another kind", _top(kind="ConversionReview"), "'ConversionReview'", UID),
    ("no request", _top(request=None), "request: missing", ""),
    ("missing uid", _review(uid=None), "request.uid: missing", ""),
    ("empty uid", _review(uid=""), "request.uid: missing", ""),
    ("a number as uid", _review(uid=7), "request.uid: missing", ""),
    ("unknown operation", _review(operation="PATCH"), "request.operation: 'PATCH'", UID),
    ("no kind", _review(kind=None), "request.kind: missing", UID),
    ("kind without kind", _review(kind={"version": "v1"}), "request.kind.kind: missing", UID),
    ("object is a list", _review(object=[1]), "request.object: a array", UID),
    ("dryRun a string", _review(dryRun="yes"), "request.dryRun: a string", UID),
    ("groups not strings", _review(userInfo={"groups": [1]}), "userInfo.groups", UID),
]


@pytest.mark.parametrize(
    ("body_", "says", "uid"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_a_malformed_body_is_refused_with_what_is_wrong(body_: bytes, says: str, uid: str) -> None:
    error = _malformed(body_)
    assert says in error.message
    assert error.uid == uid
    answer = review.malformed(error).to_json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == uid
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 400
    assert says in answer["response"]["status"]["message"]


def _decoded() -> review.Request:
    return review.decode(body(request(pod(), uid=UID)))


def test_allowed_is_the_uid_and_allowed_only() -> None:
    assert review.allowed(_decoded()).to_json() == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": UID, "allowed": True},
    }


def test_denied_carries_a_status_with_code_reason_and_message() -> None:
    answer = review.denied(_decoded(), "spec.x: bad", review.INVALID, ["careful"]).to_json()
    assert answer["response"] == {
        "uid": UID,
        "allowed": False,
        "status": {"code": 422, "reason": "Invalid", "message": "spec.x: bad"},
        "warnings": ["careful"],
    }


def test_denied_defaults_to_forbidden() -> None:
    status = review.denied(_decoded(), "no").to_json()["response"]["status"]
    assert (status["code"], status["reason"]) == (403, "Forbidden")


def test_a_patch_is_base64_json_with_its_type() -> None:
    operations = [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]
    answer = review.patched(_decoded(), operations).to_json()["response"]
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(answer["patch"])) == operations


def test_an_empty_patch_is_no_mutation() -> None:
    answer = review.patched(_decoded(), []).to_json()["response"]
    assert "patch" not in answer and "patchType" not in answer


def test_encode_is_the_json_of_the_review() -> None:
    response = review.denied(_decoded(), "no")
    assert json.loads(response.encode()) == response.to_json()
