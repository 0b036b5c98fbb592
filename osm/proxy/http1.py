"""HTTP/1.1 without I/O: bytes in, events out (after h11), on top of httptools (llhttp).

The one idea: a parser object is fed whatever bytes arrived and returns the events they
completed: a head (`RequestHead` / `ResponseHead`), zero or more `Data` chunks, then
`EndOfMessage`. Bodies are streamed, never buffered here. Errors are `ProtocolError`s that
say whose fault they are and which status answers them (400 malformed, 431 headers too
large, 502 for a bad upstream response). Serialising is a few pure functions.

After an upgrade (a `101` answer to an `Upgrade` request) the connection stops being HTTP:
`upgraded` becomes true and `trailing` holds the bytes that followed the head.

Between messages, a read that holds exactly one whole message of a strict, common subset
(origin-form request or 2xx-5xx response, HTTP/1.1, token header names, visible-ASCII
values, at most one Content-Length and its whole body, no Connection, Transfer-Encoding,
Upgrade or Expect) is recognised by two regular expressions instead of llhttp's callbacks
(`_fast_request` / `_fast_response`): the events are equal to llhttp's (a property test
holds the two to it), and anything outside the subset goes to llhttp. This is the sidecar's
hot path: one C regex pass touches far less memory than a Python callback per header,
and a proxy that sleeps between requests runs with cold caches (measured: parsing a
request costs 2.6 us warm and 22-53 us after other processes ran).

Why one module of ~780 lines: the llhttp path, the regex fast path and the serialisers
share the event classes and must stay equal to one another; kept side by side, a change to
one is made looking at the other.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import httptools

Framing = Literal["none", "length", "chunked", "close"]

# Hop-by-hop headers (RFC 9110 7.6.1, plus the ones Envoy also strips).
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    }
)

REASONS: Final = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


H2_PREFACE_START = b"PRI * HTTP/2.0"
H2C_REFUSED = (
    "HTTP/2 over cleartext (h2c prior knowledge) is not supported by this sidecar; "
    "send HTTP/1.1 (the Python sidecar speaks HTTP/2 only as gRPC, tunnelled as TCP)"
)


class ProtocolError(Exception):
    """The peer broke HTTP/1.1. `status` answers it; `peer` says whose fault it is."""

    def __init__(self, status: int, message: str, peer: Literal["downstream", "upstream"]):
        super().__init__(message)
        self.status = status
        self.message = message
        self.peer = peer


# The events are made per request: each writes its own `__init__` (init=False), which mypyc
# compiles, where the dataclass-generated one stays interpreted. The dataclass still gives
# `__eq__` and `__repr__`.
@dataclass(slots=True, init=False)
class RequestHead:
    """A request head. Header names are lower case; values are latin-1 strings."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    keep_alive: bool
    upgrade: str | None  # the Upgrade token when the request asks to switch protocols
    expect_continue: bool
    framing: Framing
    content_length: int | None

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[str, str]],
        keep_alive: bool,
        upgrade: str | None,
        expect_continue: bool,
        framing: Framing,
        content_length: int | None,
    ):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.expect_continue = expect_continue
        self.framing = framing
        self.content_length = content_length

    def header(self, name: str) -> str | None:
        """The value of `name` (lower case); repeated headers are joined with ','."""
        found: str | None = None
        for key, value in self.headers:
            if key == name:
                found = value if found is None else f"{found},{value}"
        return found

    @property
    def authority(self) -> str:
        return self.header("host") or ""

    @property
    def path(self) -> str:
        return self.target


@dataclass(slots=True, init=False)
class ResponseHead:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    keep_alive: bool
    framing: Framing
    content_length: int | None

    def __init__(
        self,
        status: int,
        reason: str,
        version: str,
        headers: list[tuple[str, str]],
        keep_alive: bool,
        framing: Framing,
        content_length: int | None,
    ):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.framing = framing
        self.content_length = content_length

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True, init=False)
class Data:
    data: bytes

    def __init__(self, data: bytes):
        self.data = data


@dataclass(slots=True)
class EndOfMessage:
    pass


END: Final = EndOfMessage()

Event = RequestHead | ResponseHead | Data | EndOfMessage


class _Stop(Exception):
    """Raised inside a callback to stop llhttp; carries the error to report."""

    def __init__(self, error: ProtocolError | None = None):
        super().__init__()
        self.error = error


def _framing_of(headers: list[tuple[str, str]], has_body: bool) -> tuple[Framing, int | None]:
    if not has_body:
        return "none", None
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == "transfer-encoding" and value.lower().rstrip().endswith("chunked"):
            chunked = True
        elif name == "content-length":
            length = int(value.split(",")[0].strip())
    if chunked:
        return "chunked", None
    if length is not None:
        return ("length" if length else "none"), length
    return "close", None


# The subset the recognisers accept (RFC 9110/9112 grammar, narrowed): each header line
# is `token ":" OWS value CRLF` with a value of visible ASCII and inner spaces/tabs that
# ends in a visible character (llhttp strips leading OWS; trailing OWS never matches).
# Every quantifier is possessive: each part is followed by a character it cannot contain,
# so backtracking could never find another match, and sre skips its bookkeeping (about a
# third of the match time). tests/unit/proxy/test_proxy_http1.py checks the language
# against the plain (backtracking) form of the same grammar.
_FIELDS: Final = (
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]++:[ \t]*+(?:[!-~]++(?:[ \t]++[!-~]++)*+)?+\r\n)*+)\r\n"
)
_REQUEST_HEAD: Final = re.compile(
    rb"(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (/[A-Za-z0-9._~:/?@!$&'()*+,;=%-]*+) HTTP/1\.1\r\n"
    + _FIELDS
)
_RESPONSE_HEAD: Final = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9]) ([ \t!-~]*+)\r\n" + _FIELDS)
# Headers that make a request (or response) leave the subset: they change keep-alive,
# framing or the exchange, which llhttp decides.
_NOT_FAST_REQUEST: Final = frozenset({"connection", "transfer-encoding", "upgrade", "expect"})
_NOT_FAST_RESPONSE: Final = frozenset({"connection", "transfer-encoding", "upgrade"})


class _FieldMemo:
    """A bounded memo of what header lines parse to.

    A keep-alive client sends the same header lines request after request, and an app
    answers with the same ones (content-type, content-length, server), so most lines on
    the hot path were parsed moments ago: looking one up (a hash and a dict probe) costs
    about half of decoding, slicing and lower-casing it again (bench/instructions.py:
    ~3,500 instructions less per request). Entries are immutable, so sharing them is
    safe. A line seen once (an x-request-id) takes a slot until the memo is full, then
    the memo is emptied: its size, and what a peer sending unique lines costs, stay
    bounded."""

    def __init__(self, size: int) -> None:
        self.size = size
        # The tuples are typed `object` on purpose: mypyc keeps a `tuple[str, str]` in a C
        # struct and boxes it into a new tuple each time it is stored in a list; as
        # objects, the memo's tuples are handed out as they are.
        self.parsed: dict[bytes, object] = {}

    def parse(self, line: bytes) -> object:
        """`name ":" OWS value` (a line `_FIELDS` matched) -> (lower-case name, value)."""
        field = self.parsed.get(line)
        if field is None:
            text = line.decode("latin-1")
            colon = text.find(":")  # the regex matched: there is one, after the name
            field = (text[:colon].lower(), text[colon + 1 :].lstrip(" \t"))
            if len(self.parsed) >= self.size:
                self.parsed.clear()
            self.parsed[line] = field
        return field


_FIELD_MEMO: Final = _FieldMemo(512)


def _fields(block: bytes) -> list[tuple[str, str]]:
    """The (lower-case name, value) pairs of a fields block that `_FIELDS` matched: lines
    of `token ":" OWS value CRLF` (split, not matched again by a second regex)."""
    memo = _FIELD_MEMO
    fields: list[Any] = []  # of the memo's tuples, not copies: see _FieldMemo
    for line in block.split(b"\r\n"):
        if line:
            fields.append(memo.parse(line))
    return fields


def _content_length(value: str) -> int | None:
    """A Content-Length value of the subset (1-15 ASCII digits; values are ASCII here)."""
    if 0 < len(value) <= 15 and value.isdigit():
        return int(value)
    return None


def _fast_request(data: bytes, limit: int) -> list[Event] | None:
    """The events of `data` if it is exactly one whole request of the subset, else None."""
    match = _REQUEST_HEAD.match(data)
    if match is None:
        return None
    end = match.end()
    if end > limit:
        return None
    headers = _fields(match[3])
    hosts = 0
    content_length: str | None = None
    for name, _value in headers:
        if name == "host":
            hosts += 1
        elif name == "content-length":
            if content_length is not None:
                return None
            content_length = _value
        elif name in _NOT_FAST_REQUEST:
            return None
    if hosts != 1:
        return None
    length: int | None = None
    if content_length is not None:
        length = _content_length(content_length)
        if length is None:
            return None
    if len(data) - end != (length or 0):
        return None
    method = match[1].decode("latin-1")
    target = match[2].decode("latin-1")
    head = RequestHead(
        method, target, "1.1", headers, True, None, False, "length" if length else "none", length
    )
    if length:
        return [head, Data(data[end:]), END]
    return [head, END]


def _fast_response(data: bytes, method: str, limit: int) -> list[Event] | None:
    """The events of `data` if it is exactly one whole response of the subset (with a
    Content-Length body, to a request other than HEAD), else None."""
    if method == "HEAD":
        return None
    match = _RESPONSE_HEAD.match(data)
    if match is None:
        return None
    status = int(match[1])
    if status == 204 or status == 304:
        return None
    headers = _fields(match[3])
    content_length: str | None = None
    for name, _value in headers:
        if name == "content-length":
            if content_length is not None:
                return None
            content_length = _value
        elif name in _NOT_FAST_RESPONSE:
            return None
    length = _content_length(content_length) if content_length is not None else None
    if length is None:
        return None
    end = match.end()
    if end > limit or len(data) - end != length:
        return None
    head = ResponseHead(
        status,
        match[2].decode("latin-1"),
        "1.1",
        headers,
        True,
        "length" if length else "none",
        length,
    )
    if length:
        return [head, Data(data[end:]), END]
    return [head, END]


class _Parser:
    """What the request and response parsers share: callbacks and limits."""

    _peer: Literal["downstream", "upstream"]

    def __init__(self, max_header_bytes: int):
        self.max_header_bytes = max_header_bytes
        self.upgraded = False
        self.trailing = b""
        self._events: list[Event] = []
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._in_head = True
        self._head_started = False
        self._pending_head_bytes = 0

    # llhttp callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = []
        self._head_bytes = 0
        self._in_head = True
        self._head_started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # trailers: dropped, as Envoy does for HTTP/1 by default
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.max_header_bytes:
            raise _Stop(self._too_large())
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        self._events.append(END)

    def _too_large(self) -> ProtocolError:
        return ProtocolError(431, "request headers too large", self._peer)

    def _feed(
        self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser, data: bytes
    ) -> list[Event]:
        if self.upgraded:
            raise RuntimeError("the connection was upgraded; relay the bytes instead")
        head_in_progress = self._in_head and self._head_started
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded = True
            self.trailing = data[int(upgrade.args[0]) :]
        except httptools.HttpParserCallbackError as error:
            context = error.__context__
            if isinstance(context, _Stop):
                if context.error is not None:
                    raise context.error from None
            else:
                raise ProtocolError(self._bad_status, str(error), self._peer) from None
        except httptools.HttpParserError as error:
            if data.startswith(H2_PREFACE_START) and not head_in_progress:
                raise ProtocolError(505, H2C_REFUSED, self._peer) from None
            raise ProtocolError(self._bad_status, str(error) or "malformed", self._peer) from None
        except ValueError as error:  # a header we could not interpret (Content-Length)
            raise ProtocolError(self._bad_status, str(error), self._peer) from None
        if head_in_progress and self._in_head:
            # The whole chunk was head bytes that httptools may be holding as a partial
            # header: bound them (one chunk may escape the count; reads are bounded).
            self._pending_head_bytes += len(data)
            if self._pending_head_bytes > self.max_header_bytes:
                raise self._too_large()
        events, self._events = self._events, []
        return events

    _bad_status = 400

    def _head_complete(self) -> None:
        self._in_head = False
        self._head_started = False
        self._pending_head_bytes = 0


class RequestParser(_Parser):
    """Server side: parses requests from a downstream client.

    `feed(bytes) -> [events]`; raises ProtocolError (400 / 431, the downstream's fault).
    Pipelined requests come out in order; the caller answers them in order.
    """

    _peer: Literal["downstream", "upstream"] = "downstream"

    def __init__(self, max_header_bytes: int = 60 * 1024):
        super().__init__(max_header_bytes)
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []

    def on_message_begin(self) -> None:
        self._headers = []
        self._head_bytes = 0
        self._in_head = True
        self._head_started = True
        self._url = []
        self._in_message = True

    def on_message_complete(self) -> None:
        self._in_message = False
        self._events.append(END)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.max_header_bytes:
            raise _Stop(self._too_large())
        self._url.append(url)

    def on_headers_complete(self) -> None:
        # One pass over the headers for Upgrade, Expect, Host and the framing (the same
        # rules as `_framing_of`); the head is built positionally (cheaper than keywords).
        self._in_head = False
        self._head_started = False
        self._pending_head_bytes = 0
        parser = self._parser
        method = parser.get_method().decode("latin-1")
        if method == "CONNECT":
            raise _Stop(ProtocolError(405, "CONNECT is not supported", "downstream"))
        headers = self._headers
        upgrade: str | None = None
        expect = False
        host_count = 0
        content_length: str | None = None
        chunked = False
        for name, value in headers:
            if name == "host":
                host_count += 1
            elif name == "content-length":
                content_length = value
            elif name == "transfer-encoding":
                if value.lower().rstrip().endswith("chunked"):
                    chunked = True
            elif name == "upgrade":
                upgrade = value
            elif name == "expect" and value.lower() == "100-continue":
                expect = True
        version = parser.get_http_version()
        if host_count > 1 or (host_count == 0 and version == "1.1"):
            raise _Stop(ProtocolError(400, "exactly one Host header is required", "downstream"))
        length = None if content_length is None else int(content_length.split(",")[0].strip())
        framing: Framing
        if chunked:
            framing, length = "chunked", None
        elif length:
            framing = "length"
        else:
            framing = "none"  # no body; requests without framing have none either
        url = self._url
        self._events.append(
            RequestHead(
                method,
                (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1"),
                version,
                headers,
                parser.should_keep_alive(),
                upgrade if upgrade is not None and parser.should_upgrade() else None,
                expect,
                framing,
                length,
            )
        )

    _in_message = False

    def feed(self, data: bytes) -> list[Event]:
        if not self._in_message and not self.upgraded:
            events = _fast_request(data, self.max_header_bytes)
            if events is not None:
                return events
        return self._feed(self._parser, data)


class ResponseParser(_Parser):
    """Client side: parses responses from an upstream server.

    Call `expect(method)` before each request's response (HEAD responses have no body).
    1xx interim responses other than 101 are skipped. A close-delimited body ends with
    `feed_eof()`. Errors are the upstream's fault (502).
    """

    _peer: Literal["downstream", "upstream"] = "upstream"
    _bad_status = 502

    def __init__(self, max_header_bytes: int = 60 * 1024):
        super().__init__(max_header_bytes)
        self._parser = httptools.HttpResponseParser(self)
        self._method = "GET"
        self._reason = b""
        self._framing: Framing = "none"
        self._in_message = False
        self._restart = False

    def _too_large(self) -> ProtocolError:
        return ProtocolError(502, "upstream response headers too large", "upstream")

    def expect(self, method: str) -> None:
        self._method = method

    def on_message_begin(self) -> None:
        self._headers = []
        self._head_bytes = 0
        self._in_head = True
        self._head_started = True
        self._reason = b""
        self._in_message = True

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = False
        self._pending_head_bytes = 0
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._skip_interim = True
            return
        self._skip_interim = False
        headers = self._headers
        has_body = not (self._method == "HEAD" or status in (204, 304) or 100 <= status < 200)
        framing, length = _framing_of(headers, has_body)
        self._framing = framing
        self._events.append(
            ResponseHead(
                status,
                self._reason.decode("latin-1"),
                parser.get_http_version(),
                headers,
                parser.should_keep_alive() and framing != "close",
                framing,
                length,
            )
        )
        if self._method == "HEAD":
            # llhttp cannot be told "no body" from Python: end the message here and
            # start a fresh parser for the next response on this connection.
            self._events.append(END)
            self._in_message = False
            self._restart = True
            raise _Stop()

    _skip_interim = False

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._skip_interim:
            self._skip_interim = False
            return
        self._events.append(END)

    def feed(self, data: bytes) -> list[Event]:
        if not self._in_message and not self.upgraded:
            events = _fast_response(data, self._method, self.max_header_bytes)
            if events is not None:
                self._framing = "length"
                return events
        events = self._feed(self._parser, data)
        if self._restart:
            self._restart = False
            self._parser = httptools.HttpResponseParser(self)
        return events

    def feed_eof(self) -> list[Event]:
        """The upstream closed: ends a close-delimited body, else an error if mid-message."""
        if not self._in_message:
            return []
        if self._framing == "close" and not self._in_head:
            self._in_message = False
            return [END]
        raise ProtocolError(502, "upstream closed the connection mid-response", "upstream")


# ---------------------------------------------------------------------------------------------
# Serialising


def _head(parts: list[str], headers: list[tuple[str, str]]) -> bytes:
    """`parts` (the start line) then the header fields and the blank line, as bytes: one
    join of the pieces, not a string built per field (per request, this is hot)."""
    for name, value in headers:
        parts.append(name)
        parts.append(": ")
        parts.append(value)
        parts.append("\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    return _head([method, " ", target, " HTTP/1.1\r\n"], headers)


def response_head(
    status: int, headers: list[tuple[str, str]], reason: str = "", version: str = "1.1"
) -> bytes:
    reason = reason or REASONS.get(status, "")
    return _head([f"HTTP/{version} {status} {reason}\r\n"], headers)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def local_reply(
    status: int, body: str, keep_alive: bool, extra: list[tuple[str, str]] | None = None
) -> bytes:
    """A complete response the proxy answers by itself (Envoy's local replies)."""
    payload = body.encode()
    headers = [("content-length", str(len(payload)))]
    if payload:
        headers.append(("content-type", "text/plain"))
    if extra:
        headers.extend(extra)
    if not keep_alive:
        headers.append(("connection", "close"))
    return response_head(status, headers) + payload


_NO_TOKENS: Final[frozenset[str]] = frozenset()


def connection_tokens(headers: list[tuple[str, str]]) -> frozenset[str]:
    """The lower-case tokens of the Connection header(s): the headers they nominate are
    hop-by-hop too."""
    tokens: set[str] | None = None
    for name, value in headers:
        if name == "connection":
            if tokens is None:
                tokens = set()
            for token in value.split(","):
                tokens.add(token.strip().lower())
    return _NO_TOKENS if tokens is None else frozenset(tokens)


def strip_hop_by_hop(
    headers: list[tuple[str, str]], keep_upgrade: bool = False
) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers and those the Connection header nominates.

    With `keep_upgrade`, Upgrade and `Connection: upgrade` survive (a WebSocket handshake).
    Without it, and with nothing to drop, the result is `headers` itself: do not mutate it.
    """
    nominated = connection_tokens(headers)
    if not keep_upgrade:
        dropping = False
        for name, _value in headers:
            if name in HOP_BY_HOP or name in nominated:
                dropping = True
                break
        if not dropping:
            return headers
    result = [
        (name, value) for name, value in headers if name not in HOP_BY_HOP and name not in nominated
    ]
    if keep_upgrade:
        result.extend((name, value) for name, value in headers if name == "upgrade")
        result.append(("connection", "upgrade"))
    return result


def _request_id_prefix() -> str:
    """The first four groups of a random version 4 UUID, with the dash that follows."""
    version_4 = 0x4000 << 64 | 0x8000 << 48  # the version (4) and variant (RFC 4122) bits
    mask = ~(0xF000 << 64 | 0xC000 << 48)
    text = "%032x" % (random.getrandbits(128) & mask | version_4)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-"


_REQUEST_ID_PREFIX: Final = _request_id_prefix()
_COUNTER_MASK: Final = (1 << 48) - 1
_LOW_HEX: Final = tuple(f"{low:02x}" for low in range(256))


class _RequestIds:
    """A 48-bit counter written as the UUID's last group, 12 hex digits.

    The text of the counter's upper 40 bits (after the prefix) changes every 256 ids and is
    kept; each id is that text plus one of 256 two-digit strings: one concatenation per
    request instead of an int's format (which cost ~5,000 instructions, bench/instructions.py).
    """

    def __init__(self, start: int) -> None:
        self.counter = start & _COUNTER_MASK
        self.head = self._head()

    def _head(self) -> str:
        return f"{_REQUEST_ID_PREFIX}{self.counter >> 8:010x}"

    def next(self) -> str:
        counter = self.counter = (self.counter + 1) & _COUNTER_MASK
        low = counter & 0xFF
        if low == 0:
            self.head = self._head()
        return self.head + _LOW_HEX[low]


_REQUEST_IDS: Final = _RequestIds(random.getrandbits(48))


def new_request_id() -> str:
    """An `x-request-id` in the form of a version 4 UUID: 74 random bits drawn once per
    process, then a 48-bit counter (from a random start) in the last group.

    Unique within the process for 2^48 requests and, by the random part, across processes;
    a request id is a correlation token, not a secret (Envoy's is from a non-cryptographic
    generator too). Drawing 128 random bits and formatting them cost ~1 us warm and ~11 us
    with cold caches, on every request."""
    return _REQUEST_IDS.next()
