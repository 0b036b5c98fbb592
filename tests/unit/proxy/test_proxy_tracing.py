"""The sidecar's tracer (`osm.proxy.tracing`) in-process: how a request's B3 headers become
a span and the upstream request's B3 fields, sampled or not, and the ids it makes. The
same rules against real Envoy: tests/integration/test_proxy_tracing.py."""

from __future__ import annotations

import pytest

from osm.proxy import http1, model, stats, tracing

T, S, P = "463ac35c9f6413ad", "a2fb4a1d1a96d312", "0020000000000001"
LONG_T = "0af7651916cd43dd8448eb211c80319c"
START = 0x3FA2C0E1D4B5A6FE  # the tracer's id counter starts here: its ids are START + 1, ...
NEW1, NEW2 = f"{START + 1:016x}", f"{START + 2:016x}"
SERVER = model.Tracing("envoy-tracing-cluster", "/api/v2/spans", 100.0, True)
CLIENT = model.Tracing("envoy-tracing-cluster", "/api/v2/spans", 100.0, False)


def head(headers: list[tuple[str, str]]) -> http1.RequestHead:
    return http1.RequestHead("GET", "/", "1.1", headers, True, None, False, "none", None)


def tracer(draws: list[float] | None = None) -> tracing.Tracer:
    """A tracer whose ids start at START and whose dice give `draws` (in [0, 1)) in turn."""
    pending = list(draws or [])
    return tracing.Tracer(
        stats.Stats(), lambda _: None, randbits=lambda _: START, sample=lambda: pending.pop(0)
    )


# -- extract: what a request's B3 headers say -------------------------------------------------
# (headers, (trace, span, parent, sampled, single)) or None: the context does not parse
EXTRACTED = [
    ([], (None, None, None, None, False)),
    ([("x-b3-traceid", T), ("x-b3-spanid", S)], (T, S, None, None, False)),
    ([("x-b3-traceid", T.upper()), ("x-b3-spanid", S)], (T, S, None, None, False)),
    ([("x-b3-traceid", LONG_T), ("x-b3-spanid", S)], (LONG_T, S, None, None, False)),
    ([("x-b3-traceid", T), ("x-b3-spanid", S), ("x-b3-parentspanid", P)], (T, S, P, None, False)),
    ([("x-b3-sampled", "1")], (None, None, None, True, False)),
    ([("x-b3-sampled", "true")], (None, None, None, True, False)),
    ([("x-b3-sampled", "0")], (None, None, None, False, False)),
    ([("x-b3-sampled", "d")], (None, None, None, False, False)),  # only 1 or true sample
    ([("x-b3-flags", "1")], (None, None, None, None, False)),  # flags decide nothing
    ([("x-b3-traceid", T)], (None, None, None, None, False)),  # half a context: a new trace
    ([("x-b3-traceid", T), ("x-b3-parentspanid", S)], (None, None, None, None, False)),
    ([("x-b3-traceid", "zz"), ("x-b3-spanid", S)], None),
    ([("x-b3-traceid", T), ("x-b3-spanid", LONG_T)], None),  # a span id is 64-bit
    ([("x-b3-traceid", T), ("x-b3-spanid", S), ("x-b3-parentspanid", "zz")], None),
    ([("x-b3-traceid", f"0x{T[2:]}"), ("x-b3-spanid", S)], None),  # hex digits only
    ([("b3", f"{T}-{S}")], (T, S, None, None, True)),
    ([("b3", f"{T}-{S}-1")], (T, S, None, True, True)),
    ([("b3", f"{T}-{S}-d")], (T, S, None, True, True)),
    ([("b3", f"{T}-{S}-0-{P}")], (T, S, P, False, True)),
    ([("b3", f"{LONG_T}-{S}-1")], (LONG_T, S, None, True, True)),
    ([("b3", "0")], (None, None, None, False, True)),
    ([("b3", "d")], (None, None, None, True, True)),
    ([("b3", f"{T}-{S}-0"), ("x-b3-traceid", P), ("x-b3-spanid", P)], (T, S, None, False, True)),
    ([("b3", "garbage")], None),
    ([("b3", f"{T}-{S}-x")], None),
    ([("b3", f"{T}-{S}-")], None),
    ([("b3", f"{T}-{S}-1-zz")], None),
    ([("b3", f"{T}-{S}-1-{P}-1")], None),
]


@pytest.mark.parametrize(("headers", "expected"), EXTRACTED)
def test_extract(
    headers: list[tuple[str, str]],
    expected: tuple[str | None, str | None, str | None, bool | None, bool] | None,
) -> None:
    context = tracing.extract(headers)
    if expected is None:
        assert context is None
    else:
        assert context is not None
        found = (context.trace_id, context.span_id, context.parent_id, context.sampled)
        assert (*found, context.single) == expected


# -- start and inject: the upstream request's B3 fields ---------------------------------------
# (listener, the request's headers, the dice's draws, the upstream request's headers); the
# request's other fields (here x-request-id) go on as they were
PROPAGATED = [
    # no B3: a new trace; the dice decide (draw * 100 < 1%: sampled)
    (
        "1%",
        [],
        [0.5],
        [("x-b3-traceid", NEW1), ("x-b3-spanid", NEW1), ("x-b3-sampled", "0")],
    ),
    (
        "1%",
        [],
        [0.001],
        [("x-b3-traceid", NEW1), ("x-b3-spanid", NEW1), ("x-b3-sampled", "1")],
    ),
    # the caller's decision wins over the dice (no draw); CLIENT: a child of the caller's span
    (
        "1%",
        [("x-b3-traceid", T), ("x-b3-spanid", S), ("x-b3-sampled", "1")],
        [],
        [
            ("x-b3-traceid", T),
            ("x-b3-spanid", NEW1),
            ("x-b3-parentspanid", S),
            ("x-b3-sampled", "1"),
        ],
    ),
    # SERVER: the caller's span, shared
    (
        "server",
        [("x-b3-traceid", T), ("x-b3-spanid", S), ("x-b3-parentspanid", P)],
        [],
        [("x-b3-traceid", T), ("x-b3-spanid", S), ("x-b3-parentspanid", P), ("x-b3-sampled", "1")],
    ),
    # fields not written go on: x-b3-flags, and a parent a new root does not overwrite
    (
        "1%",
        [("x-b3-flags", "1"), ("x-b3-parentspanid", P)],
        [0.5],
        [
            ("x-b3-flags", "1"),
            ("x-b3-parentspanid", P),
            ("x-b3-traceid", NEW1),
            ("x-b3-spanid", NEW1),
            ("x-b3-sampled", "0"),
        ],
    ),
    # the single header: b3 alone, the x-b3-* fields beside it untouched
    ("1%", [("b3", f"{T}-{S}-0")], [], [("b3", f"{T}-{NEW1}-0-{S}")]),
    ("1%", [("b3", "1")], [], [("b3", f"{NEW1}-{NEW1}-1")]),
    ("server", [("b3", f"{T}-{S}-d-{P}")], [], [("b3", f"{T}-{S}-1-{P}")]),
    (
        "1%",
        [("x-b3-sampled", "1"), ("b3", f"{T}-{S}-0")],
        [],
        [("x-b3-sampled", "1"), ("b3", f"{T}-{NEW1}-0-{S}")],
    ),
    # a context that does not parse: no span, nothing written
    ("1%", [("b3", "garbage")], [], [("b3", "garbage")]),
    ("1%", [("x-b3-traceid", "zz"), ("x-b3-spanid", S)], [], None),
]
LISTENERS = {
    "1%": model.Tracing("envoy-tracing-cluster", "/api/v2/spans", 1.0, False),
    "server": SERVER,
}


@pytest.mark.parametrize(("listener", "request_headers", "draws", "upstream"), PROPAGATED)
def test_propagation(
    listener: str,
    request_headers: list[tuple[str, str]],
    draws: list[float],
    upstream: list[tuple[str, str]] | None,
) -> None:
    sidecar = tracer(draws)
    request = [("x-request-id", "req-1"), *request_headers]
    span = sidecar.start(LISTENERS[listener], head(request), "http")
    headers = list(request)
    if span is not None:
        sidecar.inject(span, headers)
    assert headers == [
        ("x-request-id", "req-1"),
        *(request_headers if upstream is None else upstream),
    ]


def test_a_sampled_span_notes_the_request_id_an_unsampled_one_reads_nothing() -> None:
    sidecar = tracer([0.5, 0.001])
    unsampled = sidecar.start(LISTENERS["1%"], head([]), "http")
    sampled = sidecar.start(LISTENERS["1%"], head([]), "http")
    assert unsampled is not None and sampled is not None
    for span in (unsampled, sampled):
        sidecar.inject(span, [("x-request-id", "req-1")])
    assert (unsampled.sampled, unsampled.request_id, unsampled.start_us) == (False, "", 0)
    assert (sampled.sampled, sampled.request_id) == (True, "req-1") and sampled.start_us > 0


@pytest.mark.parametrize(("percentage", "sampled"), [(0.0, False), (100.0, True)])
def test_no_draw_at_0_or_100_percent(percentage: float, sampled: bool) -> None:
    sidecar = tracer([])  # a draw would fail: no draws left
    listener = model.Tracing("envoy-tracing-cluster", "/api/v2/spans", percentage, False)
    span = sidecar.start(listener, head([]), "http")
    assert span is not None and span.sampled is sampled


# -- ids ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "ids"),
    [
        (START, [NEW1, NEW2]),
        (0xFE, ["00000000000000ff", "0000000000000100", "0000000000000101"]),  # the head moves
        ((1 << 64) - 2, ["ffffffffffffffff", "0000000000000001"]),  # wraps, never zero
        (-1, ["0000000000000001"]),  # a start beyond 64 bits is cut to them
    ],
)
def test_span_ids_count_from_a_random_start_in_16_hex_digits(start: int, ids: list[str]) -> None:
    generator = tracing.SpanIds(start)
    assert [generator.next() for _ in ids] == ids
