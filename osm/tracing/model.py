"""Zipkin v2 spans as values: parsing with Zipkin's normalization, the JSON Zipkin writes, and
the pure rules of its query API (which traces a query matches, how shared spans merge, which
service calls which).

The one idea: a span is validated and normalized once, when it is collected, exactly as
openzipkin's ``zipkin2.Span.Builder`` and its JSON v2 decoder do (lower-hex ids left-padded
to 16 or 32 characters, a 32-character trace id whose high half is zero shortened to 16,
an all-zero parent id dropped, lowercase span and service names, a zero timestamp or
duration meaning absent, annotations sorted and deduplicated, unknown fields ignored); what
is stored is the normalized span's JSON (`Span.to_json`), so every reader reads it without
checking again. Where Zipkin silently drops a malformed value (a negative duration, an IP
that does not parse) we refuse the span instead, and say why: a client sending that has a
bug worth seeing. Ids in upper case are accepted and lowercased.

Errors (`SpansError`) name the span's index in the POSTed list and the field, and say what
would be valid, e.g. ``span[2].traceId: 'xyz' is not hex; valid: 16 or 32 lower-hex
characters``; the collector answers them with 400, as Zipkin does. No other exception
escapes `parse_spans` for any input.

Query rules (`Query`, `matches`) follow ``zipkin2.storage.QueryRequest``; `merge_trace`
follows ``zipkin2.internal.Trace.merge`` and `dependency_links` ``DependencyLinker``. All
times are Zipkin's: span timestamps and durations in microseconds since the epoch, a query's
``endTs`` and ``lookback`` in milliseconds.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

KINDS: Final = ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")
MAX_INT64: Final = 2**63 - 1
DEFAULT_LOOKBACK_MS: Final = 86_400_000
"""Zipkin's ``QUERY_LOOKBACK`` default: one day."""
DEFAULT_LIMIT: Final = 10
HEX: Final = frozenset("0123456789abcdef")


class SpansError(ValueError):
    """A POSTed span list that Zipkin's collector would answer with 400: the message says
    which span and field, and what would be valid. The sender's fault."""


class QueryError(ValueError):
    """A query parameter that Zipkin's API would answer with 400 (the caller's fault)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.service_name is not None:
            out["serviceName"] = self.service_name
        if self.ipv4 is not None:
            out["ipv4"] = self.ipv4
        if self.ipv6 is not None:
            out["ipv6"] = self.ipv6
        if self.port is not None:
            out["port"] = self.port
        return out


@dataclass(frozen=True, slots=True)
class Annotation:
    timestamp: int
    value: str


@dataclass(frozen=True, slots=True, eq=True)
class Span:
    """One normalized Zipkin v2 span (fields as ``zipkin2.Span``; absent is None/empty)."""

    trace_id: str
    id: str
    parent_id: str | None = None
    kind: str | None = None
    name: str | None = None
    timestamp: int | None = None
    duration: int | None = None
    local_endpoint: Endpoint | None = None
    remote_endpoint: Endpoint | None = None
    annotations: tuple[Annotation, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    debug: bool = False
    shared: bool = False

    @property
    def local_service_name(self) -> str | None:
        return self.local_endpoint.service_name if self.local_endpoint else None

    @property
    def remote_service_name(self) -> str | None:
        return self.remote_endpoint.service_name if self.remote_endpoint else None

    def to_json(self) -> dict[str, Any]:
        """The span as Zipkin's ``SpanBytesEncoder.JSON_V2`` writes it (its field order;
        absent fields, ``debug``/``shared`` when false, omitted)."""
        out: dict[str, Any] = {"traceId": self.trace_id}
        if self.parent_id is not None:
            out["parentId"] = self.parent_id
        out["id"] = self.id
        if self.kind is not None:
            out["kind"] = self.kind
        if self.name is not None:
            out["name"] = self.name
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.duration is not None:
            out["duration"] = self.duration
        if self.local_endpoint is not None:
            out["localEndpoint"] = self.local_endpoint.to_json()
        if self.remote_endpoint is not None:
            out["remoteEndpoint"] = self.remote_endpoint.to_json()
        if self.annotations:
            out["annotations"] = [
                {"timestamp": a.timestamp, "value": a.value} for a in self.annotations
            ]
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.debug:
            out["debug"] = True
        if self.shared:
            out["shared"] = True
        return out

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_spans(body: bytes | str) -> list[Span]:
    """The spans of a ``POST /api/v2/spans`` body (a JSON list of Zipkin v2 spans), normalized;
    raises `SpansError` (and nothing else) for anything Zipkin would refuse."""
    try:
        text = body.decode() if isinstance(body, bytes) else body
        document = json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise SpansError(
            f"the body is not JSON ({error}); valid: a JSON list of Zipkin v2 spans"
        ) from None
    if not isinstance(document, list):
        raise SpansError(
            f"the body is a JSON {_json_type(document)}; valid: a JSON list of Zipkin v2 spans "
            "(Zipkin's JSON_V2 encoding)"
        )
    return [parse_span(item, index) for index, item in enumerate(document)]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_span(document: object, index: int = 0) -> Span:
    """One span of a POSTed list (``index`` for the error messages); raises `SpansError`."""
    where = f"span[{index}]"
    if not isinstance(document, dict):
        raise SpansError(f"{where}: a JSON {_json_type(document)}; valid: a JSON object")

    def present(key: str) -> Any:
        return document.get(key)

    trace_id = present("traceId")
    if trace_id is None:
        raise SpansError(f"{where}.traceId: missing; valid: 16 or 32 lower-hex characters")
    span_id = present("id")
    if span_id is None:
        raise SpansError(f"{where}.id: missing; valid: 16 lower-hex characters")
    kind = present("kind")
    if kind is not None and kind not in KINDS:
        raise SpansError(f"{where}.kind: {_show(kind)}; valid: one of {', '.join(KINDS)}")
    name = _string(present("name"), f"{where}.name")
    tags = present("tags")
    return _built(
        Span(
            trace_id=_trace_id(trace_id, f"{where}.traceId"),
            id=_required(_span_id(span_id, f"{where}.id", required=True)),
            parent_id=_span_id(present("parentId"), f"{where}.parentId", required=False),
            kind=kind,
            name=name.lower() if name else None,
            timestamp=_micros(present("timestamp"), f"{where}.timestamp"),
            duration=_micros(present("duration"), f"{where}.duration"),
            local_endpoint=_endpoint(present("localEndpoint"), f"{where}.localEndpoint"),
            remote_endpoint=_endpoint(present("remoteEndpoint"), f"{where}.remoteEndpoint"),
            annotations=_annotations(present("annotations"), f"{where}.annotations"),
            tags=_tags(tags, f"{where}.tags"),
            debug=_flag(present("debug"), f"{where}.debug"),
            shared=_flag(present("shared"), f"{where}.shared"),
        )
    )


def _built(span: Span) -> Span:
    """Zipkin's ``Span.Builder.build``: a span that names itself as its parent is a root."""
    if span.parent_id == span.id:
        return replace(span, parent_id=None)
    return span


def span_from_stored(text: str) -> Span:
    """A span this store wrote with `Span.to_json_text`: trusted, already normalized, so
    built without the checks of `parse_span` (several times faster)."""
    document = json.loads(text)
    local, remote = document.get("localEndpoint"), document.get("remoteEndpoint")
    return Span(
        trace_id=document["traceId"],
        id=document["id"],
        parent_id=document.get("parentId"),
        kind=document.get("kind"),
        name=document.get("name"),
        timestamp=document.get("timestamp"),
        duration=document.get("duration"),
        local_endpoint=_stored_endpoint(local) if local else None,
        remote_endpoint=_stored_endpoint(remote) if remote else None,
        annotations=tuple(
            Annotation(a["timestamp"], a["value"]) for a in document.get("annotations", ())
        ),
        tags=document.get("tags", {}),
        debug=document.get("debug", False),
        shared=document.get("shared", False),
    )


def _stored_endpoint(document: dict[str, Any]) -> Endpoint:
    return Endpoint(
        document.get("serviceName"),
        document.get("ipv4"),
        document.get("ipv6"),
        document.get("port"),
    )


def normalize_trace_id(value: object, where: str = "traceId") -> str:
    """Zipkin's ``Span.normalizeTraceId``; raises `SpansError` naming ``where``."""
    return _trace_id(value, where)


def _hex(value: object, where: str, valid: str, longest: int) -> str:
    if not isinstance(value, str):
        raise SpansError(f"{where}: a JSON {_json_type(value)}; valid: {valid}")
    text = value.lower()
    if not text:
        raise SpansError(f"{where}: empty; valid: {valid}")
    if len(text) > longest:
        raise SpansError(f"{where}: {_show(value)} has {len(text)} characters; valid: {valid}")
    if not HEX.issuperset(text):
        raise SpansError(f"{where}: {_show(value)} is not hex; valid: {valid}")
    return text


def _trace_id(value: object, where: str) -> str:
    valid = "16 or 32 lower-hex characters, not all zeros"
    text = _hex(value, where, valid, 32)
    if text.count("0") == len(text):
        raise SpansError(f"{where}: all zeros; valid: {valid}")
    if len(text) <= 16:
        return text.rjust(16, "0")
    text = text.rjust(32, "0")
    return text[16:] if text.startswith("0" * 16) else text


def _span_id(value: object, where: str, *, required: bool) -> str | None:
    if value is None:
        return None
    valid = "16 lower-hex characters, not all zeros"
    text = _hex(value, where, valid, 16)
    if text.count("0") == len(text):
        if required:
            raise SpansError(f"{where}: all zeros; valid: {valid}")
        return None  # Zipkin: an all-zero parent id means no parent
    return text.rjust(16, "0")


def _required(value: str | None) -> str:
    assert value is not None
    return value


def _integer(value: object, where: str, valid: str) -> int:
    """A JSON number (or a string of digits, which Zipkin's reader also takes) that is an
    integer; raises `SpansError` otherwise."""
    number: int
    if isinstance(value, bool):
        raise SpansError(f"{where}: a JSON boolean; valid: {valid}")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and math.isfinite(value) and value.is_integer()) or (
        isinstance(value, str)
        and len(value) <= 20
        and value.isascii()
        and value.removeprefix("-").isdigit()
    ):
        number = int(value)
    else:
        raise SpansError(f"{where}: {_show(value)}; valid: {valid}")
    return number


def _micros(value: object, where: str) -> int | None:
    if value is None:
        return None
    valid = "a whole number of microseconds, 0 <= n < 2^63 (0: absent)"
    number = _integer(value, where, valid)
    if not 0 <= number <= MAX_INT64:
        raise SpansError(f"{where}: {number}; valid: {valid}")
    return number or None


def _string(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise SpansError(f"{where}: a JSON {_json_type(value)}; valid: a string")


def _flag(value: object, where: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise SpansError(f"{where}: {_show(value)}; valid: true or false")


def _endpoint(value: object, where: str) -> Endpoint | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpansError(
            f"{where}: a JSON {_json_type(value)}; valid: an object with serviceName, ipv4, "
            "ipv6, port"
        )
    service = _string(value.get("serviceName"), f"{where}.serviceName")
    ipv4 = _string(value.get("ipv4"), f"{where}.ipv4") or None
    ipv6 = _string(value.get("ipv6"), f"{where}.ipv6") or None
    if ipv4 is not None:
        try:
            ipv4 = str(ipaddress.IPv4Address(ipv4))
        except ValueError:
            raise SpansError(f"{where}.ipv4: {_show(ipv4)}; valid: an IPv4 address") from None
    if ipv6 is not None:
        try:
            address = ipaddress.IPv6Address(ipv6)
        except ValueError:
            raise SpansError(f"{where}.ipv6: {_show(ipv6)}; valid: an IPv6 address") from None
        if address.ipv4_mapped is not None:  # Zipkin: an IPv4-mapped address is the IPv4 one
            ipv4, ipv6 = ipv4 or str(address.ipv4_mapped), None
        else:
            ipv6 = str(address)
    port: int | None = None
    if value.get("port") is not None:
        valid = "a port number 0-65535 (0: absent)"
        port = _integer(value["port"], f"{where}.port", valid)
        if not 0 <= port <= 65535:
            raise SpansError(f"{where}.port: {port}; valid: {valid}")
        port = port or None
    endpoint = Endpoint(service.lower() if service else None, ipv4, ipv6, port)
    return None if endpoint == Endpoint() else endpoint


def _annotations(value: object, where: str) -> tuple[Annotation, ...]:
    if value is None:
        return ()
    valid = "a list of {timestamp: microseconds > 0, value: non-empty string}"
    if not isinstance(value, list):
        raise SpansError(f"{where}: a JSON {_json_type(value)}; valid: {valid}")
    found: set[Annotation] = set()
    for position, item in enumerate(value):
        here = f"{where}[{position}]"
        if not isinstance(item, dict):
            raise SpansError(f"{here}: a JSON {_json_type(item)}; valid: {valid}")
        timestamp = _micros(item.get("timestamp"), f"{here}.timestamp")
        text = _string(item.get("value"), f"{here}.value")
        if timestamp is None or not text:
            raise SpansError(f"{here}: incomplete; valid: {valid}")
        found.add(Annotation(timestamp, text))
    return tuple(sorted(found, key=lambda a: (a.timestamp, a.value)))


def _tags(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpansError(f"{where}: a JSON {_json_type(value)}; valid: an object of strings")
    for key, tag in value.items():
        if not isinstance(tag, str):
            raise SpansError(
                f"{where}.{key}: a JSON {_json_type(tag)}; valid: a string (Zipkin's tags are "
                "strings)"
            )
    return dict(value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _show(value: object) -> str:
    if not isinstance(value, str | int | float | bool):
        return f"a JSON {_json_type(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------
# Queries (zipkin2.storage.QueryRequest)


@dataclass(frozen=True, slots=True)
class Query:
    """``GET /api/v2/traces``' parameters, normalized as Zipkin's ``QueryRequest``."""

    end_ts: int
    """Milliseconds since the epoch: the newest trace timestamp wanted."""
    lookback: int = DEFAULT_LOOKBACK_MS
    limit: int = DEFAULT_LIMIT
    service_name: str | None = None
    remote_service_name: str | None = None
    span_name: str | None = None
    annotation_query: Mapping[str, str] = field(default_factory=dict)
    """Tag key → value; an empty value matches any value of the tag or an annotation."""
    min_duration: int | None = None
    max_duration: int | None = None

    @property
    def window_us(self) -> tuple[int, int]:
        """The trace timestamps (µs) a match may have, both ends included."""
        return (self.end_ts - self.lookback) * 1000, self.end_ts * 1000

    @classmethod
    def from_params(cls, params: Mapping[str, str], now_ms: int) -> Query:
        """The query of the request's parameters; raises `QueryError` naming the parameter."""
        end_ts = _positive(params, "endTs", now_ms, "milliseconds since the epoch")
        lookback = _positive(params, "lookback", DEFAULT_LOOKBACK_MS, "milliseconds")
        limit = _positive(params, "limit", DEFAULT_LIMIT, "a number of traces")
        min_duration = _optional_positive(params, "minDuration")
        max_duration = _optional_positive(params, "maxDuration")
        if max_duration is not None and min_duration is None:
            raise QueryError("maxDuration: minDuration is required when specifying maxDuration")
        if max_duration is not None and min_duration is not None and max_duration < min_duration:
            raise QueryError("maxDuration: less than minDuration; valid: >= minDuration")
        span_name = _name(params.get("spanName"))
        return cls(
            end_ts=end_ts,
            lookback=min(lookback, end_ts),
            limit=limit,
            service_name=_name(params.get("serviceName")),
            remote_service_name=_name(params.get("remoteServiceName")),
            span_name=None if span_name == "all" else span_name,
            annotation_query=parse_annotation_query(params.get("annotationQuery", "")),
            min_duration=min_duration,
            max_duration=max_duration,
        )


def _name(value: str | None) -> str | None:
    return value.lower() if value else None


def _positive(params: Mapping[str, str], key: str, default: int, unit: str) -> int:
    text = params.get(key)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or int(text) <= 0 or int(text) > MAX_INT64:
        raise QueryError(f"{key}: {text!r}; valid: a positive whole number ({unit})")
    return int(text)


def _optional_positive(params: Mapping[str, str], key: str) -> int | None:
    if not params.get(key):
        return None
    return _positive(params, key, 0, "microseconds")


def parse_annotation_query(text: str) -> dict[str, str]:
    """Zipkin's ``annotationQuery``: terms joined by `` and ``; ``key=value`` matches a tag,
    a bare ``key`` an annotation's value or any value of the tag ``key``."""
    terms: dict[str, str] = {}
    for term in text.split(" and "):
        key, equals, value = term.partition("=")
        key = key.strip()
        if not key:
            continue
        if equals:
            terms[key] = value.strip()
        else:
            terms.setdefault(key, "")
    return terms


def trace_timestamp(spans: Iterable[Span]) -> int | None:
    """The trace's time for queries (µs): its root span's timestamp, else its earliest.
    (Zipkin takes the first root it meets; with several roots we take the earliest.)"""
    earliest: int | None = None
    root: int | None = None
    for span in spans:
        if span.timestamp is None:
            continue
        if span.parent_id is None and (root is None or span.timestamp < root):
            root = span.timestamp
        if earliest is None or span.timestamp < earliest:
            earliest = span.timestamp
    return root if root is not None else earliest


def matches(query: Query, spans: Sequence[Span]) -> bool:
    """Whether a trace (its raw spans) is an answer to ``query``: ``QueryRequest.test``.

    Every criterion must hold for some span of the service (any span without one), not
    necessarily the same span; the trace's timestamp must be in the window."""
    timestamp = trace_timestamp(spans)
    low, high = query.window_us
    if timestamp is None or not low <= timestamp <= high:
        return False
    service_seen = query.service_name is None
    remote_seen = query.remote_service_name is None
    name_seen = query.span_name is None
    duration_seen = query.min_duration is None and query.max_duration is None
    remaining = dict(query.annotation_query)
    for span in spans:
        if query.service_name is not None and span.local_service_name != query.service_name:
            continue
        service_seen = True
        for annotation in span.annotations:
            if remaining.get(annotation.value) == "":
                del remaining[annotation.value]
        for key, value in span.tags.items():
            wanted = remaining.get(key)
            if wanted is not None and wanted in ("", value):
                del remaining[key]
        if not remote_seen and span.remote_service_name == query.remote_service_name:
            remote_seen = True
        if not name_seen and span.name == query.span_name:
            name_seen = True
        if not duration_seen and query.min_duration is not None:
            duration = span.duration or 0
            duration_seen = duration >= query.min_duration and (
                query.max_duration is None or duration <= query.max_duration
            )
    return service_seen and remote_seen and name_seen and duration_seen and not remaining


# ---------------------------------------------------------------------------------------------
# Merging a trace's spans (zipkin2.internal.Trace.merge)


def merge_trace(spans: Sequence[Span]) -> list[Span]:
    """The trace's spans with parts of one span (same id, same side) merged into one, the
    longest trace id everywhere, and a server span sharing its client's id marked
    ``shared`` and given the client's parent when it had none: Zipkin's ``Trace.merge``.
    The result is sorted by id, the unshared side first."""
    if len(spans) <= 1:
        return list(spans)
    ordered = sorted(spans, key=_cleanup_key)
    trace_id = max((span.trace_id for span in ordered), key=len)
    result: list[Span] = []
    for span in ordered:
        if len(span.trace_id) != len(trace_id):
            span = replace(span, trace_id=trace_id)
        last = result[-1] if result else None
        if last is not None and last.id == span.id:
            if (
                last.shared == span.shared
                and last.parent_id == span.parent_id
                and _same_endpoint(last.local_endpoint, span.local_endpoint)
            ):
                result[-1] = _merged(last, span)
                continue
            if last.kind == "CLIENT" and span.kind == "SERVER" and not span.shared:
                span = replace(span, shared=True)
            if span.shared and span.parent_id is None and last.parent_id is not None:
                span = replace(span, parent_id=last.parent_id)
        result.append(span)
    return result


def _cleanup_key(span: Span) -> tuple[str, bool, int, str]:
    """Zipkin's ``CLEANUP_COMPARATOR`` (id, unshared first, local endpoint), with a client
    before a server of the same id, so that its shared flag is backfilled whatever the
    services' names."""
    return span.id, span.shared, span.kind != "CLIENT", span.local_service_name or ""


def _same_endpoint(left: Endpoint | None, right: Endpoint | None) -> bool:
    return left is None or right is None or left.service_name == right.service_name


def _merged(span: Span, other: Span) -> Span:
    """Zipkin's ``Span.Builder.merge``: the first's fields, the other's where they are absent."""
    tags = {**span.tags, **other.tags}
    annotations = tuple(
        sorted(set(span.annotations) | set(other.annotations), key=lambda a: (a.timestamp, a.value))
    )
    name = span.name if span.name not in (None, "", "unknown") else other.name or span.name
    return replace(
        span,
        parent_id=span.parent_id or other.parent_id,
        kind=span.kind or other.kind,
        name=name,
        timestamp=span.timestamp or other.timestamp,
        duration=span.duration or other.duration,
        local_endpoint=_merged_endpoint(span.local_endpoint, other.local_endpoint),
        remote_endpoint=_merged_endpoint(span.remote_endpoint, other.remote_endpoint),
        annotations=annotations,
        tags=tags,
        debug=span.debug or other.debug,
        shared=span.shared or other.shared,
    )


def _merged_endpoint(left: Endpoint | None, right: Endpoint | None) -> Endpoint | None:
    if left is None or right is None:
        return left or right
    return Endpoint(
        left.service_name or right.service_name,
        left.ipv4 or right.ipv4,
        left.ipv6 or right.ipv6,
        left.port or right.port,
    )


# ---------------------------------------------------------------------------------------------
# Dependencies (zipkin2.internal.DependencyLinker)


@dataclass(frozen=True, slots=True)
class DependencyLink:
    parent: str
    child: str
    call_count: int
    error_count: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parent": self.parent, "child": self.child}
        out["callCount"] = self.call_count
        if self.error_count:
            out["errorCount"] = self.error_count
        return out


@dataclass(slots=True)
class _Node:
    span: Span | None
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)


def _tree(spans: Sequence[Span]) -> _Node:
    """``SpanNode.Builder``: nodes keyed by (id, shared); a shared span's parent is the
    unshared span of its id, else its parentId's; orphans hang under a synthetic root."""
    merged = merge_trace(spans)
    nodes: dict[tuple[str, bool], _Node] = {}
    extra: list[_Node] = []
    for span in merged:
        if (span.id, span.shared) in nodes:
            extra.append(_Node(span))  # another side of an id: under its first
        else:
            nodes[span.id, span.shared] = _Node(span)
    roots: list[_Node] = []
    for node in extra:
        assert node.span is not None
        node.parent = nodes[node.span.id, node.span.shared]
        node.parent.children.append(node)
    for (span_id, shared), node in nodes.items():
        assert node.span is not None
        parent: _Node | None = None
        if shared:
            parent = nodes.get((span_id, False))
        if parent is None and node.span.parent_id is not None:
            parent = nodes.get((node.span.parent_id, True)) or nodes.get(
                (node.span.parent_id, False)
            )
        if parent is None or parent is node:
            roots.append(node)
        else:
            node.parent = parent
            parent.children.append(node)
    if len(roots) == 1:
        return roots[0]
    root = _Node(None)
    for node in roots:
        node.parent = root
        root.children.append(node)
    return root


def _walk(root: _Node) -> Iterable[_Node]:
    queue = [root]
    while queue:
        node = queue.pop(0)
        yield node
        queue.extend(node.children)


def _first_remote_ancestor(node: _Node) -> Span | None:
    ancestor = node.parent
    while ancestor is not None:
        if ancestor.span is not None and ancestor.span.kind is not None:
            return ancestor.span
        ancestor = ancestor.parent
    return None


def dependency_links(traces: Iterable[Sequence[Span]]) -> list[DependencyLink]:
    """Which service calls which, how often and how often with an ``error`` tag, over
    ``traces`` (each a trace's raw spans): ``DependencyLinker``. Sorted by parent, child."""
    calls: dict[tuple[str, str], list[int]] = {}

    def link(parent: str, child: str, error: bool) -> None:
        counts = calls.setdefault((parent, child), [0, 0])
        counts[0] += 1
        counts[1] += int(error)

    for spans in traces:
        if not spans:
            continue
        root = _tree(spans)
        for node in _walk(root):
            span = node.span
            if span is None:
                continue
            kind = span.kind
            if kind == "CLIENT" and node.children:
                continue  # the server side names the link
            service, remote = span.local_service_name, span.remote_service_name
            if kind is None:
                if service is None or remote is None:
                    continue
                kind = "CLIENT"
            if kind in ("SERVER", "CONSUMER"):
                child, parent = service, remote
                if node is root and parent is None:
                    continue
            else:
                parent, child = service, remote
            error = "error" in span.tags
            if kind in ("PRODUCER", "CONSUMER"):
                if parent is not None and child is not None:
                    link(parent, child, error)
                continue
            ancestor = _first_remote_ancestor(node)
            ancestor_service = ancestor.local_service_name if ancestor else None
            if ancestor is not None and ancestor_service is not None:
                if kind == "CLIENT" and service is not None and ancestor_service != service:
                    link(ancestor_service, service, False)  # a missing link to this client
                if kind == "SERVER" or parent is None:
                    parent = ancestor_service
                direct = node.parent is not None and node.parent.span is ancestor
                if not error and ancestor.kind == "CLIENT" and direct:
                    error = "error" in ancestor.tags
            if parent is None or child is None:
                continue
            link(parent, child, error)
    return [
        DependencyLink(parent, child, counts[0], counts[1])
        for (parent, child), counts in sorted(calls.items())
    ]
