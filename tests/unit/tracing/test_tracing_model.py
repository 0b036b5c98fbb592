"""The span model: Zipkin's normalization, its refusals (which span, which field, what is
valid), the query predicate, shared-span merging and dependency links.

Property tests: a valid span survives parse → to_json unchanged; any mutation of a valid
span list, and any bytes, give a `SpansError` or spans, never another exception."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osm.tracing import model
from osm.tracing.model import Query, Span, SpansError

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def parsed(**fields: Any) -> dict[str, Any]:
    """The normalized JSON of one span with ``fields`` over a minimal valid one."""
    document = {"traceId": TRACE, "id": SPAN, **fields}
    document = {k: v for k, v in document.items() if v is not ...}
    return model.parse_spans(json.dumps([document]))[0].to_json()


# -- normalization --------------------------------------------------------------------------

NORMALIZED = [
    # (what, given fields, field, normalized value)
    ("a 15-hex trace id is left-padded", {"traceId": "3ac35c9f6413ad4"}, "traceId",
     "03ac35c9f6413ad4"),
    ("upper-case ids are lowercased", {"traceId": TRACE.upper()}, "traceId", TRACE),
    ("a 20-hex trace id is padded to 32", {"traceId": "1" * 20}, "traceId", "0" * 12 + "1" * 20),
    ("a 128-bit id with a zero high half is 64-bit", {"traceId": "0" * 16 + "1" * 16},
     "traceId", "1" * 16),
    ("a 15-hex span id is left-padded", {"id": "2fb4a1d1a96d312"}, "id", "02fb4a1d1a96d312"),
    ("a parent id is left-padded", {"parentId": "1"}, "parentId", "0000000000000001"),
    ("an all-zero parent id is no parent", {"parentId": "0000000000000000"}, "parentId", None),
    ("a span that is its own parent is a root", {"parentId": SPAN}, "parentId", None),
    ("span names are lowercased", {"name": "GET /Books"}, "name", "get /books"),
    ("an empty name is absent", {"name": ""}, "name", None),
    ("a zero timestamp is absent", {"timestamp": 0}, "timestamp", None),
    ("a timestamp as a digit string is a number", {"timestamp": "1500"}, "timestamp", 1500),
    ("an integral float is a number", {"duration": 25.0}, "duration", 25),
    ("service names are lowercased", {"localEndpoint": {"serviceName": "BookStore"}},
     "localEndpoint", {"serviceName": "bookstore"}),
    ("an empty endpoint is absent", {"remoteEndpoint": {"serviceName": ""}}, "remoteEndpoint",
     None),
    ("a zero port is absent", {"localEndpoint": {"serviceName": "a", "port": 0}},
     "localEndpoint", {"serviceName": "a"}),
    ("an IPv4-mapped IPv6 address is IPv4", {"localEndpoint": {"ipv6": "::ffff:10.0.0.1"}},
     "localEndpoint", {"ipv4": "10.0.0.1"}),
    ("IPv6 is written compressed", {"localEndpoint": {"ipv6": "2001:db8:0:0:0:0:0:1"}},
     "localEndpoint", {"ipv6": "2001:db8::1"}),
    ("annotations are sorted and deduplicated",
     {"annotations": [{"timestamp": 2, "value": "b"}, {"timestamp": 1, "value": "a"},
                      {"timestamp": 2, "value": "b"}]},
     "annotations", [{"timestamp": 1, "value": "a"}, {"timestamp": 2, "value": "b"}]),
    ("null is absent", {"kind": None, "tags": None}, "kind", None),
    ("unknown fields are ignored", {"traceparent": "x"}, "traceparent", None),
    ("debug false is omitted", {"debug": False}, "debug", None),
    ("shared true is kept", {"shared": True}, "shared", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("given", "key", "expected"),
    [case[1:] for case in NORMALIZED],
    ids=[case[0] for case in NORMALIZED],
)
def test_spans_are_normalized_as_zipkin_does(
    given: dict[str, Any], key: str, expected: Any
) -> None:
    assert parsed(**given).get(key) == expected


def test_the_json_is_zipkins_field_order() -> None:
    document = {
        "shared": True, "debug": True, "tags": {"a": "b"},
        "annotations": [{"timestamp": 1, "value": "ws"}], "remoteEndpoint": {"port": 80},
        "localEndpoint": {"serviceName": "s"}, "duration": 2, "timestamp": 1, "name": "n",
        "kind": "SERVER", "id": SPAN, "parentId": "1", "traceId": TRACE,
    }  # fmt: skip
    assert list(parsed(**document)) == [
        "traceId", "parentId", "id", "kind", "name", "timestamp", "duration", "localEndpoint",
        "remoteEndpoint", "annotations", "tags", "debug", "shared",
    ]  # fmt: skip


# -- refusals -------------------------------------------------------------------------------

REFUSED = [
    # (what, body, the message's start, a part of what is valid)
    ("not JSON", b"[{", "the body is not JSON", "a JSON list of Zipkin v2 spans"),
    ("not UTF-8", b"\xff\xfe", "the body is not JSON", "a JSON list"),
    ("an object, not a list", {"traceId": TRACE}, "the body is a JSON object", "a JSON list"),
    ("NaN is not JSON", b'[{"traceId":"1","id":"1","duration":NaN}]', "the body is not JSON",
     "list"),
    ("a span that is not an object", [1], "span[0]: a JSON number", "a JSON object"),
    ("no trace id", [{"id": SPAN}], "span[0].traceId: missing", "16 or 32 lower-hex"),
    ("no span id", [{"traceId": TRACE}], "span[0].id: missing", "16 lower-hex"),
    ("a trace id too long", [{"traceId": "1" * 33, "id": SPAN}], "span[0].traceId: '111",
     "16 or 32 lower-hex"),
    ("a trace id not hex", [{"traceId": "xyz", "id": SPAN}], "span[0].traceId: 'xyz' is not hex",
     "16 or 32 lower-hex"),
    ("a prefixed trace id", [{"traceId": "0x" + SPAN[2:], "id": SPAN}], "span[0].traceId:",
     "lower-hex"),
    ("an all-zero trace id", [{"traceId": "0" * 16, "id": SPAN}], "span[0].traceId: all zeros",
     "not all zeros"),
    ("an all-zero span id", [{"traceId": TRACE, "id": "0"}], "span[0].id: all zeros", "not all"),
    ("a span id too long", [{"traceId": TRACE, "id": "1" * 17}], "span[0].id:", "16 lower-hex"),
    ("a numeric id", [{"traceId": TRACE, "id": 12}], "span[0].id: a JSON number", "16 lower-hex"),
    ("a bad parent id", [{"traceId": TRACE, "id": SPAN, "parentId": "g"}],
     "span[0].parentId: 'g' is not hex", "16 lower-hex"),
    ("the index of the bad span", [{"traceId": TRACE, "id": SPAN}, {"traceId": TRACE}],
     "span[1].id: missing", "16 lower-hex"),
    ("an unknown kind", [{"traceId": TRACE, "id": SPAN, "kind": "client"}],
     "span[0].kind: 'client'", "CLIENT, SERVER, PRODUCER, CONSUMER"),
    ("a negative duration", [{"traceId": TRACE, "id": SPAN, "duration": -1}],
     "span[0].duration: -1", "0 <= n < 2^63"),
    ("a fractional timestamp", [{"traceId": TRACE, "id": SPAN, "timestamp": 1.5}],
     "span[0].timestamp: 1.5", "whole number of microseconds"),
    ("a boolean timestamp", [{"traceId": TRACE, "id": SPAN, "timestamp": True}],
     "span[0].timestamp: a JSON boolean", "whole number"),
    ("a timestamp past int64", [{"traceId": TRACE, "id": SPAN, "timestamp": 2**63}],
     "span[0].timestamp:", "2^63"),
    ("a name that is not a string", [{"traceId": TRACE, "id": SPAN, "name": 5}],
     "span[0].name: a JSON number", "a string"),
    ("an endpoint that is a string", [{"traceId": TRACE, "id": SPAN, "localEndpoint": "a"}],
     "span[0].localEndpoint: a JSON string", "serviceName, ipv4, ipv6, port"),
    ("a bad IPv4", [{"traceId": TRACE, "id": SPAN, "localEndpoint": {"ipv4": "10.0.0"}}],
     "span[0].localEndpoint.ipv4: '10.0.0'", "an IPv4 address"),
    ("a bad IPv6", [{"traceId": TRACE, "id": SPAN, "remoteEndpoint": {"ipv6": "1::2::3"}}],
     "span[0].remoteEndpoint.ipv6:", "an IPv6 address"),
    ("a port out of range", [{"traceId": TRACE, "id": SPAN, "localEndpoint": {"port": 70000}}],
     "span[0].localEndpoint.port: 70000", "0-65535"),
    ("annotations that are an object", [{"traceId": TRACE, "id": SPAN, "annotations": {}}],
     "span[0].annotations: a JSON object", "a list of {timestamp"),
    ("an annotation without a value",
     [{"traceId": TRACE, "id": SPAN, "annotations": [{"timestamp": 1}]}],
     "span[0].annotations[0]: incomplete", "non-empty string"),
    ("an annotation without a timestamp",
     [{"traceId": TRACE, "id": SPAN, "annotations": [{"value": "cs"}]}],
     "span[0].annotations[0]: incomplete", "microseconds > 0"),
    ("a tag that is a number", [{"traceId": TRACE, "id": SPAN, "tags": {"http.status_code": 200}}],
     "span[0].tags.http.status_code: a JSON number", "a string"),
    ("tags that are a list", [{"traceId": TRACE, "id": SPAN, "tags": ["a"]}],
     "span[0].tags: a JSON list", "an object of strings"),
    ("debug that is a string", [{"traceId": TRACE, "id": SPAN, "debug": "true"}],
     "span[0].debug: 'true'", "true or false"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "start", "valid"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_bad_spans_are_refused_naming_the_span_the_field_and_what_is_valid(
    body: Any, start: str, valid: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(SpansError) as caught:
        model.parse_spans(raw)
    message = str(caught.value)
    assert message.startswith(start), message
    assert "valid: " in message and valid in message.split("valid: ", 1)[1], message


def test_an_empty_list_is_no_spans() -> None:
    assert model.parse_spans(b"[]") == []


# -- properties -----------------------------------------------------------------------------

hex_id = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")
trace_id = hex_id | st.integers(2**64, 2**128 - 1).map(lambda n: f"{n:032x}")
micros = st.integers(1, 2**63 - 1)
service = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=20)
endpoint = st.fixed_dictionaries(
    {},
    optional={
        "serviceName": service,
        "ipv4": st.ip_addresses(v=4).map(str),
        "ipv6": st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str),
        "port": st.integers(1, 65535),
    },
).filter(bool)
annotations = st.lists(
    st.fixed_dictionaries({"timestamp": micros, "value": st.text(min_size=1, max_size=10)}),
    min_size=1,
    max_size=4,
    unique_by=lambda a: (a["timestamp"], a["value"]),
).map(lambda items: sorted(items, key=lambda a: (a["timestamp"], a["value"])))
valid_span = st.builds(
    lambda required, optional: {**required, **optional},
    st.fixed_dictionaries({"traceId": trace_id, "id": hex_id}),
    st.fixed_dictionaries(
        {},
        optional={
            "parentId": hex_id,
            "kind": st.sampled_from(model.KINDS),
            "name": st.text("abcdefghijklmnopqrstuvwxyz0123456789 /:._-", min_size=1, max_size=20),
            "timestamp": micros,
            "duration": micros,
            "localEndpoint": endpoint,
            "remoteEndpoint": endpoint,
            "annotations": annotations,
            "tags": st.dictionaries(st.text(max_size=10), st.text(max_size=10), min_size=1),
            "debug": st.just(True),
            "shared": st.just(True),
        },
    ),
).filter(lambda span: span.get("parentId") != span["id"])


@given(valid_span)
@settings(max_examples=300)
def test_a_normalized_span_round_trips(span: dict[str, Any]) -> None:
    order = [
        "traceId", "parentId", "id", "kind", "name", "timestamp", "duration", "localEndpoint",
        "remoteEndpoint", "annotations", "tags", "debug", "shared",
    ]  # fmt: skip
    expected = {key: span[key] for key in order if key in span}
    (parsed_span,) = model.parse_spans(json.dumps([span]))
    assert parsed_span.to_json() == expected
    assert model.span_from_stored(parsed_span.to_json_text()) == parsed_span, "the trusted path"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["traceId", "id", "parentId", "kind", "name", "timestamp", "duration", "localEndpoint",
     "remoteEndpoint", "annotations", "tags", "debug", "shared", "other"]
)  # fmt: skip


@given(st.lists(valid_span, min_size=1, max_size=3), st.data())
@settings(max_examples=400)
def test_a_mutated_span_gives_an_error_never_an_exception(
    spans: list[dict[str, Any]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(spans) - 1))
    mutated = dict(spans[index])
    key = data.draw(field_names)
    if data.draw(st.booleans()) or key == "other":
        mutated[key] = data.draw(json_values)
    else:
        mutated.pop(key, None)
    spans[index] = mutated
    try:
        model.parse_spans(json.dumps(spans))
    except SpansError as error:
        assert str(error).startswith(("span[", "the body")), error


@given(st.binary(max_size=200))
def test_any_bytes_give_spans_or_an_error(body: bytes) -> None:
    with contextlib.suppress(SpansError):
        model.parse_spans(body)


# -- queries --------------------------------------------------------------------------------

NOW_MS = 1_700_000_000_000
NOW_US = NOW_MS * 1000


def span(span_id: str, service: str | None = None, **fields: Any) -> Span:
    document: dict[str, Any] = {"traceId": TRACE, "id": span_id, "timestamp": NOW_US, **fields}
    if service is not None:
        document["localEndpoint"] = {"serviceName": service}
    return model.parse_span(document)


FRONT = span("1", "front", name="get", duration=100, kind="CLIENT",
             remoteEndpoint={"serviceName": "back"}, tags={"http.method": "GET"})  # fmt: skip
BACK = span("2", "back", parentId="1", name="query", duration=40, tags={"error": "timeout"},
            annotations=[{"timestamp": NOW_US + 1, "value": "retry"}])  # fmt: skip
TRACE_SPANS = [FRONT, BACK]

MATCHES = [
    # (what, parameters, matches)
    ("no criteria", {}, True),
    ("the service", {"serviceName": "BACK"}, True),
    ("another service", {"serviceName": "other"}, False),
    ("a span name of the service", {"serviceName": "back", "spanName": "query"}, True),
    ("a span name of another service", {"serviceName": "back", "spanName": "get"}, False),
    ("spanName all is any name", {"spanName": "all"}, True),
    ("the remote service", {"remoteServiceName": "back"}, True),
    ("a tag key", {"annotationQuery": "error"}, True),
    ("a tag value", {"annotationQuery": "http.method=GET"}, True),
    ("a wrong tag value", {"annotationQuery": "http.method=POST"}, False),
    ("an annotation", {"annotationQuery": "retry"}, True),
    ("terms across spans", {"annotationQuery": "retry and http.method=GET"}, True),
    ("terms limited to the service", {"serviceName": "back", "annotationQuery": "http.method"},
     False),
    ("a minimum duration", {"minDuration": "100"}, True),
    ("a minimum no span reaches", {"minDuration": "101"}, False),
    ("a duration range", {"minDuration": "30", "maxDuration": "50"}, True),
    ("a range of the service",
     {"serviceName": "front", "minDuration": "30", "maxDuration": "50"}, False),
    ("a window before the trace", {"endTs": str(NOW_MS - 1)}, False),
    ("a window ending at the trace", {"endTs": str(NOW_MS), "lookback": "1"}, True),
    ("a window after the trace", {"endTs": str(NOW_MS + 10), "lookback": "5"}, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("parameters", "expected"), [case[1:] for case in MATCHES], ids=[case[0] for case in MATCHES]
)
def test_which_traces_a_query_matches(parameters: dict[str, str], expected: bool) -> None:
    query = Query.from_params(parameters, NOW_MS)
    assert model.matches(query, TRACE_SPANS) is expected


BAD_QUERIES = [
    ({"maxDuration": "5"}, "maxDuration: minDuration is required"),
    ({"minDuration": "5", "maxDuration": "4"}, "maxDuration: less than minDuration"),
    ({"limit": "0"}, "limit: '0'; valid: a positive whole number"),
    ({"endTs": "yesterday"}, "endTs: 'yesterday'; valid: a positive whole number"),
    ({"lookback": "-1"}, "lookback: '-1'; valid"),
]


@pytest.mark.parametrize(("parameters", "message"), BAD_QUERIES)
def test_bad_query_parameters_are_named(parameters: dict[str, str], message: str) -> None:
    with pytest.raises(model.QueryError, match=message):
        Query.from_params(parameters, NOW_MS)


def test_the_default_window_is_a_day_before_now() -> None:
    query = Query.from_params({}, NOW_MS)
    assert (query.end_ts, query.lookback, query.limit) == (NOW_MS, 86_400_000, 10)


def test_annotation_queries_split_on_and() -> None:
    assert model.parse_annotation_query("error and http.path=/a=b and  and x ") == {
        "error": "",
        "http.path": "/a=b",
        "x": "",
    }


# -- merging and dependencies ---------------------------------------------------------------


def test_a_server_sharing_its_clients_id_is_marked_shared_and_gets_its_parent() -> None:
    client = span("2", "front", parentId="1", kind="CLIENT")
    server = span("2", "back", kind="SERVER")
    merged = model.merge_trace([server, client])
    assert [(s.local_service_name, s.shared, s.parent_id) for s in merged] == [
        ("front", False, "0000000000000001"),
        ("back", True, "0000000000000001"),
    ]


def test_parts_of_one_span_are_merged() -> None:
    first = span("2", "front", kind="CLIENT", name="get", tags={"a": "1"}, timestamp=None)
    second = span("2", "front", duration=7, tags={"b": "2"})
    (merged,) = model.merge_trace([first, second])
    assert (merged.name, merged.duration, merged.timestamp, dict(merged.tags)) == (
        "get", 7, NOW_US, {"a": "1", "b": "2"},
    )  # fmt: skip


def test_the_longest_trace_id_wins() -> None:
    short = model.parse_span({"traceId": TRACE[16:], "id": "1"})
    long = model.parse_span({"traceId": TRACE, "id": "2", "parentId": "1"})
    assert {s.trace_id for s in model.merge_trace([short, long])} == {TRACE}


def test_dependencies_link_caller_to_callee_with_errors() -> None:
    """bookbuyer → bookstore → bookwarehouse as Envoy reports it: a client span per call and
    a server span with the client's id; the second call fails."""
    spans = [
        span("a", "bookbuyer", kind="CLIENT", remoteEndpoint={"serviceName": "bookstore"}),
        span("a", "bookstore", kind="SERVER"),
        span("b", "bookstore", parentId="a", kind="CLIENT", tags={"error": "true"}),
        span("b", "bookwarehouse", parentId="a", kind="SERVER", shared=True),
    ]
    links = model.dependency_links([spans, spans[:2]])
    assert [link.to_json() for link in links] == [
        {"parent": "bookbuyer", "child": "bookstore", "callCount": 2},
        {"parent": "bookstore", "child": "bookwarehouse", "callCount": 1, "errorCount": 1},
    ]


def test_a_root_server_span_with_no_known_client_is_no_link() -> None:
    assert model.dependency_links([[span("a", "front", kind="SERVER")]]) == []


def test_messaging_links_producer_and_consumer_through_the_broker() -> None:
    produce = span("a", "orders", kind="PRODUCER", remoteEndpoint={"serviceName": "kafka"})
    consume = span("b", "billing", parentId="a", kind="CONSUMER",
                   remoteEndpoint={"serviceName": "kafka"})  # fmt: skip
    assert [(link.parent, link.child) for link in model.dependency_links([[produce, consume]])] == [
        ("kafka", "billing"),
        ("orders", "kafka"),
    ]
