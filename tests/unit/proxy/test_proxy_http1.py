"""HTTP/1.1 sans-IO: framing edge cases, keep-alive rules, errors that name the culprit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osm.proxy import http1


def feed_all(
    parser: http1.RequestParser | http1.ResponseParser, data: bytes, step: int = 0
) -> list[http1.Event]:
    if not step:
        return parser.feed(data)
    events: list[http1.Event] = []
    for index in range(0, len(data), step):
        events.extend(parser.feed(data[index : index + step]))
    return events


def body_of(events: list[http1.Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, http1.Data))


@pytest.mark.parametrize(
    ("request_line", "extra", "keep_alive"),
    [
        ("HTTP/1.1", "", True),
        ("HTTP/1.1", "Connection: close\r\n", False),
        ("HTTP/1.0", "", False),
        ("HTTP/1.0", "Connection: keep-alive\r\n", True),
    ],
)
def test_keep_alive_rules(request_line: str, extra: str, keep_alive: bool) -> None:
    data = f"GET / {request_line}\r\nHost: a\r\n{extra}\r\n".encode()
    head = http1.RequestParser().feed(data)[0]
    assert isinstance(head, http1.RequestHead)
    assert head.keep_alive is keep_alive


@pytest.mark.parametrize("step", [0, 1, 7])
def test_chunked_body_with_extensions_and_trailers(step: int) -> None:
    data = (
        b"POST /up?q=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    events = feed_all(http1.RequestParser(), data, step)
    head = events[0]
    assert isinstance(head, http1.RequestHead)
    assert (head.method, head.target, head.framing) == ("POST", "/up?q=1", "chunked")
    assert body_of(events) == b"hello world"
    assert events[-1] is http1.END
    assert ("x-trailer", "t") not in head.headers  # trailers are dropped


def test_pipelined_requests_come_out_in_order() -> None:
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    events = http1.RequestParser().feed(data)
    heads = [event.target for event in events if isinstance(event, http1.RequestHead)]
    assert heads == ["/1", "/2", "/3"]
    assert body_of(events) == b"abc"
    assert sum(event is http1.END for event in events) == 3


def test_content_length_body_streams_across_feeds() -> None:
    parser = http1.RequestParser()
    first = parser.feed(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    assert isinstance(first[0], http1.RequestHead) and first[0].content_length == 10
    assert body_of(first) == b"01234" and http1.END not in first
    second = parser.feed(b"56789")
    assert body_of(second) == b"56789" and second[-1] is http1.END


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host in HTTP/1.1
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_requests_are_the_downstreams_fault(data: bytes) -> None:
    with pytest.raises(http1.ProtocolError) as caught:
        http1.RequestParser().feed(data)
    assert caught.value.status == 400
    assert caught.value.peer == "downstream"


def test_content_length_mismatch_makes_the_next_request_malformed() -> None:
    parser = http1.RequestParser()
    with pytest.raises(http1.ProtocolError):
        parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nabcdef\r\n\r\n")


@pytest.mark.parametrize("step", [0, 1000])
def test_oversized_headers_answer_431(step: int) -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (index, b"v" * 1000) for index in range(70)
    )
    with pytest.raises(http1.ProtocolError) as caught:
        feed_all(http1.RequestParser(), data + b"\r\n", step)
    assert caught.value.status == 431


def test_one_endless_header_line_is_bounded() -> None:
    parser = http1.RequestParser(max_header_bytes=1024)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ")
    with pytest.raises(http1.ProtocolError) as caught:
        for _ in range(100):
            parser.feed(b"a" * 100)
    assert caught.value.status == 431


def test_expect_continue_is_flagged() -> None:
    head = http1.RequestParser().feed(
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    )[0]
    assert isinstance(head, http1.RequestHead) and head.expect_continue


def test_upgrade_switches_to_raw_bytes() -> None:
    parser = http1.RequestParser()
    events = parser.feed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nRAW"
    )
    head = events[0]
    assert isinstance(head, http1.RequestHead) and head.upgrade == "websocket"
    assert parser.upgraded and parser.trailing == b"RAW"
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_connect_is_refused() -> None:
    with pytest.raises(http1.ProtocolError) as caught:
        http1.RequestParser().feed(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n")
    assert caught.value.status == 405


def test_response_to_head_has_no_body_and_the_next_response_parses() -> None:
    parser = http1.ResponseParser()
    parser.expect("HEAD")
    events = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(events[0], http1.ResponseHead) and events[0].framing == "none"
    assert events[-1] is http1.END
    parser.expect("GET")
    events = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert body_of(events) == b"ok" and events[-1] is http1.END


def test_interim_responses_are_skipped_and_204_has_no_body() -> None:
    parser = http1.ResponseParser()
    events = parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert [type(event) for event in events] == [http1.ResponseHead, http1.EndOfMessage]
    head = events[0]
    assert isinstance(head, http1.ResponseHead) and head.status == 204


def test_close_delimited_response_ends_at_eof() -> None:
    parser = http1.ResponseParser()
    events = parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome body")
    head = events[0]
    assert isinstance(head, http1.ResponseHead)
    assert head.framing == "close" and not head.keep_alive
    assert parser.feed_eof() == [http1.END]


def test_upstream_closing_mid_response_is_the_upstreams_fault() -> None:
    parser = http1.ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(http1.ProtocolError) as caught:
        parser.feed_eof()
    assert (caught.value.status, caught.value.peer) == (502, "upstream")


def test_hop_by_hop_headers_are_removed() -> None:
    headers = [
        ("host", "a"),
        ("connection", "keep-alive, x-private"),
        ("keep-alive", "timeout=5"),
        ("x-private", "secret"),
        ("transfer-encoding", "chunked"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("x-kept", "1"),
    ]
    assert http1.strip_hop_by_hop(headers) == [("host", "a"), ("x-kept", "1")]
    upgraded = http1.strip_hop_by_hop(headers, keep_upgrade=True)
    assert ("upgrade", "websocket") in upgraded and ("connection", "upgrade") in upgraded


def test_serialising() -> None:
    assert http1.request_head("GET", "/", [("host", "a")]) == b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"
    assert http1.chunk(b"hello") == b"5\r\nhello\r\n"
    reply = http1.local_reply(403, "RBAC: access denied", keep_alive=False)
    assert reply.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"connection: close" in reply and reply.endswith(b"RBAC: access denied")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_random_bytes_give_events_or_a_protocol_error(chunks: list[bytes]) -> None:
    parser = http1.RequestParser(max_header_bytes=2048)
    try:
        for data in chunks:
            if parser.upgraded:
                break
            parser.feed(data)
    except http1.ProtocolError as error:
        assert error.status in (400, 405, 431)


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "G@T", ""]),
    target=st.sampled_from(["/", "/a?b=c", "*", "", "/ spaces", "http://x/y"]),
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x"]),
    headers=st.lists(st.tuples(_token, st.text(max_size=20)), max_size=6),
    body=st.binary(max_size=50),
    framing=st.sampled_from(["none", "length", "bad-length", "chunked"]),
    split=st.integers(min_value=1, max_value=64),
)
def test_near_valid_requests(
    method: str,
    target: str,
    version: str,
    headers: list[tuple[str, str]],
    body: bytes,
    framing: str,
    split: int,
) -> None:
    lines = [f"{method} {target} {version}", "Host: a"]
    lines += [f"{name}: {value}" for name, value in headers]
    payload = b""
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "bad-length":
        lines.append(f"Content-Length: {len(body) + 1}x")
        payload = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        payload = http1.chunk(body) + http1.LAST_CHUNK if body else http1.LAST_CHUNK
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace") + payload
    parser = http1.RequestParser()
    try:
        events = feed_all(parser, data, split)
    except http1.ProtocolError as error:
        assert error.status in (400, 405, 431)
        return
    heads = [event for event in events if isinstance(event, http1.RequestHead)]
    assert len(heads) <= 1
