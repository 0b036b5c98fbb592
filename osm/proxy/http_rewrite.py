"""What the proxy changes in an HTTP/1.1 message on its way through (the connection manager's
header and framing rules), as pure functions of the message and the session's facts.

The one idea: a request goes upstream with its hop-by-hop fields dropped, `Expect` answered
by the proxy, X-Forwarded-Proto / -For and X-Request-Id added, and its path rewritten as the
route says; a response comes back with its hop-by-hop fields dropped, re-framed (chunked
towards an HTTP/1.1 client when the upstream's body has no length) and with a
`Connection` field that says whether the client's connection stays open. Both of the HTTP
session's paths (callbacks and coroutine) build their messages here, so they cannot differ.
Per request: compiled by mypyc.
"""

from __future__ import annotations

from typing import Any

from osm.proxy import http1, model


def upstream_headers(
    head: http1.RequestHead,
    tunnel: bool,
    scheme: str,
    remote: str,
    manager: model.HttpConnectionManager,
) -> list[tuple[str, str]]:
    """The request headers sent upstream: hop-by-hop ones dropped (Upgrade kept for a
    tunnel), `Expect` answered here, X-Forwarded-Proto / -For and X-Request-Id added.
    `scheme` is the downstream connection's (http or https), `remote` its peer's address."""
    headers = head.headers
    nominated = http1.connection_tokens(headers)
    hop_by_hop = http1.HOP_BY_HOP
    has_proto = has_id = False
    forwarded_for: str | None = None
    # Kept fields are appended as they are: typed as objects, mypyc does not unpack
    # each `tuple[str, str]` into a C struct and box it into a new tuple to append it.
    fields: list[Any] = headers
    result: list[Any] = []
    for field in fields:
        name: str = field[0]
        if name in hop_by_hop or name in nominated or name == "expect":
            continue  # Expect is answered here with 100 Continue, as Envoy does
        if name == "x-forwarded-proto":
            has_proto = True
        elif name == "x-request-id":
            has_id = True
        elif name == "x-forwarded-for":
            value: str = field[1]
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            continue
        result.append(field)
    if tunnel:
        result.extend((name, value) for name, value in headers if name == "upgrade")
        result.append(("connection", "upgrade"))
    if not has_proto:
        result.append(("x-forwarded-proto", scheme))
    if manager.use_remote_address and remote:
        forwarded_for = f"{forwarded_for}, {remote}" if forwarded_for else remote
    if forwarded_for is not None:
        result.append(("x-forwarded-for", forwarded_for))
    if not has_id and manager.generate_request_id:
        result.append(("x-request-id", http1.new_request_id()))
    return result


def upstream_target(head: http1.RequestHead, route: model.Route) -> str:
    """The request target sent upstream: the route's prefix rewrite applied, if any."""
    target = head.target
    rewrite = route.action.prefix_rewrite
    if rewrite is not None and route.match.path_kind in ("prefix", "path"):
        target = rewrite + target[len(route.match.value) :]
    return target


def response_start(
    head: http1.RequestHead, response: http1.ResponseHead, keep_alive: bool
) -> tuple[bytes, bool, bool]:
    """Serialise an upstream response's head for the client that sent `head`, whose
    connection may stay open if `keep_alive`; -> (head bytes, keep the connection alive,
    re-frame the body as chunked)."""
    headers = http1.strip_hop_by_hop(response.headers)  # may be the same list: copy
    chunk_down = False
    if response.framing == "length":
        pass  # content-length is not hop-by-hop: it is still there
    elif response.framing in ("chunked", "close"):
        if head.version == "1.1":
            chunk_down = True
            headers = [(n, v) for n, v in headers if n != "content-length"]
            headers.append(("transfer-encoding", "chunked"))
        else:
            keep_alive = False
    if not keep_alive:
        headers = [*headers, ("connection", "close")]
    elif head.version == "1.0":
        headers = [*headers, ("connection", "keep-alive")]
    start = http1.response_head(response.status, headers, response.reason, "1.1")
    return start, keep_alive, chunk_down
