"""Errors read as kubectl prints them (``Error from server (Reason): message``; a 422's
causes one per line), and the ones about reaching the API say what to do."""

from __future__ import annotations

import pytest

from osm.cli.client import describe
from osm.kube.errors import ApiError, Cause, ConnectionFailed, KubeConfigError, KubeError

INVALID_DETAILS = {"kind": "TrafficSplit", "name": "web"}


@pytest.mark.parametrize(
    ("error", "context", "text"),
    [
        (
            ApiError(404, "NotFound", 'trafficsplits.split.smi-spec.io "web" not found'),
            "",
            'Error from server (NotFound): trafficsplits.split.smi-spec.io "web" not found',
        ),
        (
            ApiError(404, "NotFound", 'namespaces "shop" not found'),
            'error when applying serviceaccount/a from "a.yaml"',
            'Error from server (NotFound): error when applying serviceaccount/a from "a.yaml": '
            'namespaces "shop" not found',
        ),
        (
            ApiError(
                422,
                "Invalid",
                "ignored: the causes say it",
                (Cause("spec.backends[0].weight", "must be an integer"),),
                INVALID_DETAILS,
            ),
            "",
            'The TrafficSplit "web" is invalid: spec.backends[0].weight: must be an integer',
        ),
        (
            ApiError(
                422,
                "Invalid",
                "two problems",
                (Cause("spec.service", "required"), Cause("", "no backends")),
                INVALID_DETAILS,
            ),
            "",
            'The TrafficSplit "web" is invalid: \n* spec.service: required\n* no backends',
        ),
        (
            ApiError(422, "Invalid", "spec: bad", (Cause("spec", "bad"),)),
            "",
            "The request is invalid: spec: bad",
        ),
        (
            ApiError(401, "Unauthorized", "Unauthorized"),
            "",
            "error: You must be logged in to the server (Unauthorized)",
        ),
        (ApiError(502, "", "bad gateway"), "", "Error from server: bad gateway"),
        (
            KubeConfigError("kubeconfig x (given explicitly) does not exist"),
            "",
            "error: kubeconfig x (given explicitly) does not exist",
        ),
        (KubeError("unknown kind"), "applying x", "error: applying x: unknown kind"),
    ],
    ids=[
        "not found",
        "not found while applying",
        "invalid, one cause",
        "invalid, two causes",
        "invalid, no object named",
        "no credentials",
        "no reason",
        "kubeconfig",
        "other",
    ],
)
def test_errors_read_as_kubectl_prints_them(error: KubeError, context: str, text: str) -> None:
    assert describe(error, context=context) == text


def test_a_server_that_does_not_answer_names_where_and_what_to_do() -> None:
    text = describe(ConnectionFailed("ConnectError: refused"), "https://127.0.0.1:6443")
    assert text.startswith(
        "error: the Kubernetes API at https://127.0.0.1:6443 does not answer: "
        "ConnectError: refused (is the mesh running? start local mode with `osm up`"
    )
    assert "KUBECONFIG or --kubeconfig" in text
