"""Properties of both stream machines against a simulated client that ACKs or NACKs at
random while snapshots change: it never has two responses of a type to answer, a rejected
version is never pushed straight back, and once the client accepts everything it holds
exactly the last snapshot."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from osm.ads import delta, sotw
from osm.ads.resources import MappingSnapshot
from tests.unit.ads.adstesting import CDS, EDS, delta_request, request, resource_names, snap

NAMES = ("a", "b", "c")

contents = st.dictionaries(st.sampled_from(NAMES), st.integers(1, 3))
snapshots = st.builds(
    lambda cds, eds: (cds, eds),
    contents,
    contents,
)
actions = st.lists(
    st.one_of(snapshots, st.sampled_from(["ack", "nack"])),
    max_size=25,
)


def as_snapshot(step: int, cds: dict[str, int], eds: dict[str, int]) -> MappingSnapshot:
    def specs(content: dict[str, int]) -> str:
        return " ".join(f"{name}@{variant}" for name, variant in sorted(content.items()))

    return snap(f"s{step}", CDS=specs(cds), EDS=specs(eds))


def final_snapshot(
    step: int, cds: dict[str, int], eds: dict[str, int]
) -> tuple[MappingSnapshot, dict[str, int], dict[str, int]]:
    """Variant 4 never appears before: every resource of it is new to the client."""
    cds = dict.fromkeys(cds, 4)
    eds = dict.fromkeys(eds, 4)
    return as_snapshot(step, cds, eds), cds, eds


def expected_bytes(snapshot: MappingSnapshot, type_url: str) -> dict[str, bytes]:
    return {n: snapshot.packed(type_url, n).value for n in snapshot.resource_versions(type_url)}


@settings(max_examples=150, deadline=None)
@given(actions, snapshots)
def test_sotw_converges_and_never_pushes_back_a_rejected_version(
    steps: list[Any], last: tuple[dict[str, int], dict[str, int]]
) -> None:
    stream = sotw.SotwStream()
    pending: dict[str, Any] = {}
    view: dict[str, dict[str, bytes]] = {CDS: {}, EDS: {}}
    rejected: dict[str, str] = {}
    current: MappingSnapshot | None = None

    def take(responses: list[Any]) -> None:
        for response in responses:
            assert response.type_url not in pending, "two responses of a type in flight"
            assert rejected.get(response.type_url) != response.version_info, "resent a NACK"
            pending[response.type_url] = response

    def answer(accept: bool) -> None:
        type_url = sorted(pending)[0]
        response = pending.pop(type_url)
        names = list(NAMES) if type_url == EDS else []
        if accept:
            got = dict(
                zip(resource_names(response), (p.value for p in response.resources), strict=True)
            )
            view[type_url] = got if type_url == CDS else {**view[type_url], **got}
            stream.receive(request("CDS" if type_url == CDS else "EDS", names, response.nonce))
            rejected.pop(type_url, None)
        else:
            rejected[type_url] = response.version_info
            stream.receive(
                request("CDS" if type_url == CDS else "EDS", names, response.nonce, error="no")
            )
        take(stream.respond(current))

    stream.receive(request("CDS"))
    stream.receive(request("EDS", NAMES))
    for number, step in enumerate(steps):
        if isinstance(step, tuple):
            current = as_snapshot(number, *step)
            take(stream.respond(current))
        elif pending:
            answer(step == "ack")
    current, _, eds = final_snapshot(len(steps), *last)
    take(stream.respond(current))
    for _ in range(10):
        if not pending:
            break
        answer(True)
    assert not pending
    assert view[CDS] == expected_bytes(current, CDS)
    for name, value in expected_bytes(current, EDS).items():
        assert view[EDS][name] == value
    assert set(eds) <= set(view[EDS])


@settings(max_examples=150, deadline=None)
@given(actions, snapshots)
def test_delta_converges_and_never_pushes_back_a_rejected_resource(
    steps: list[Any], last: tuple[dict[str, int], dict[str, int]]
) -> None:
    stream = delta.DeltaStream()
    pending: dict[str, Any] = {}
    view: dict[str, dict[str, str]] = {CDS: {}, EDS: {}}
    rejected: dict[tuple[str, str], tuple[str, str | None]] = {}
    current: MappingSnapshot | None = None

    def take(responses: list[Any]) -> None:
        for response in responses:
            type_url = response.type_url
            assert type_url not in pending, "two responses of a type in flight"
            for resource in response.resources:
                key = (type_url, resource.name)
                if key in rejected and rejected[key][0] == resource.version:
                    assert view[type_url].get(resource.name) != rejected[key][1], "resent a NACK"
            pending[type_url] = response

    def answer(accept: bool) -> None:
        type_url = sorted(pending)[0]
        response = pending.pop(type_url)
        short = "CDS" if type_url == CDS else "EDS"
        if accept:
            # Once the client holds another version of a name (or its removal), a later
            # push of the rejected version is a new change, not a resend.
            for resource in response.resources:
                view[type_url][resource.name] = resource.version
                rejected.pop((type_url, resource.name), None)
            for name in response.removed_resources:
                view[type_url].pop(name, None)
                rejected.pop((type_url, name), None)
            stream.receive(delta_request(short, nonce=response.nonce))
        else:
            for resource in response.resources:
                key = (type_url, resource.name)
                rejected[key] = (resource.version, view[type_url].get(resource.name))
            stream.receive(delta_request(short, nonce=response.nonce, error="no"))
        take(stream.respond(current))

    stream.receive(delta_request("CDS"))
    stream.receive(delta_request("EDS", NAMES))
    for number, step in enumerate(steps):
        if isinstance(step, tuple):
            current = as_snapshot(number, *step)
            take(stream.respond(current))
        elif pending:
            answer(step == "ack")
    current, _, _ = final_snapshot(len(steps), *last)
    take(stream.respond(current))
    for _ in range(10):
        if not pending:
            break
        answer(True)
    assert not pending
    assert view[CDS] == dict(current.resource_versions(CDS))
    assert view[EDS] == dict(current.resource_versions(EDS))
