"""The sidecar's bootstrap file: who the proxy is, where its xDS server is, how to reach it.

The one idea: like Envoy's bootstrap, this is the only static configuration a sidecar has;
everything else arrives over ADS. It is YAML (so JSON too) and is read once, into a frozen
`Bootstrap`; every mistake raises `BootstrapError` naming the file, the field path and what
would be valid. Relative paths are resolved against the file's directory. Whoever
injects a sidecar writes its bootstrap (`osm.runtime.bootstrap` in local mode).

Reading is on the sidecar's start path, so it stays cheap: a JSON document (what the
writers produce) is parsed with `json`, and PyYAML is imported only for a YAML one.

    node:
      id: bookbuyer-0.sidecar.bookbuyer.bookbuyer   # <pod>.sidecar.<sa>.<ns>
      cluster: bookbuyer                            # optional (default: the service account)
      metadata: {pod_ip: 10.1.0.4}                  # optional, any JSON-able mapping
    xds:
      address: 127.0.0.1:15128
      tls: {cert: cert.pem, key: key.pem, ca: ca.pem, server_name: localhost}
      # or: insecure: true
      protocol: auto                                # auto (delta, else SotW) | delta | sotw
      max_receive_message_length: 4194304           # optional: bytes (default: grpcio's 4 MiB)
    admin: {address: 127.0.0.1, port: 15000}       # optional; these are the defaults
    access_log: access.log                          # optional; one JSON line per request
    listeners:                                      # optional bind overrides (tests)
      outbound-listener: 127.0.0.1:0
      liveness_listener: 127.0.0.1:0                # the probe ports too (osm.proxy.health)
    drain_seconds: 5                                # optional: grace on SIGTERM
    health_probes:                                  # optional: the app's original probes
      - {kind: liveness, scheme: HTTP, port: 14001, path: /healthz, timeout_seconds: 1}
      - {kind: startup, scheme: HTTPS, port: 8443}  # path "/" and timeout 1 s by default

``health_probes`` are what the injector rewrote (`osm.injector.probes`): the kubelet now
probes the sidecar on the kind's port, and the sidecar forwards there (`osm.proxy.health`),
one probe per kind.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from osm.base import address, wellknown
from osm.base.identity import InvalidNodeId, NodeId, ProxyKind

DEFAULT_ADMIN_HOST = wellknown.LOCALHOST
DEFAULT_ADMIN_PORT = wellknown.PROXY_ADMIN_PORT
DEFAULT_DRAIN_SECONDS = 5.0
DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH = 4 * 1024 * 1024
"""The largest xDS response accepted, in bytes: grpcio's default (the sidecar's transport,
grpclib, has none). Envoy's name for it: ``EnvoyGrpc.max_receive_message_length``."""
MAX_MESSAGE_LENGTH = 2**32 - 1
"""gRPC frames a message with a 32-bit length: no message is longer."""
PROTOCOLS = ("auto", "delta", "sotw")
PROBE_KINDS = ("liveness", "readiness", "startup")
PROBE_SCHEMES = ("HTTP", "HTTPS")

Protocol = Literal["auto", "delta", "sotw"]
ProbeKind = Literal["liveness", "readiness", "startup"]
ProbeScheme = Literal["HTTP", "HTTPS"]


class BootstrapError(Exception):
    """The bootstrap file is unreadable or invalid (the user's fault); says where and why."""

    def __init__(self, source: str, field_path: str, message: str) -> None:
        self.source = source
        self.field_path = field_path
        self.message = message
        where = f"{source}: {field_path}" if field_path else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of the proxy's client certificate, its key, and the roots it trusts."""

    cert: Path
    key: Path
    ca: Path
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class XdsServer:
    """The ADS server; `tls` None means plaintext (only with an insecure controller).
    A response longer than `max_receive_message_length` bytes ends the stream
    RESOURCE_EXHAUSTED."""

    host: str
    port: int
    tls: TlsFiles | None
    protocol: Protocol = "auto"
    max_receive_message_length: int = DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH

    @property
    def target(self) -> str:
        """The gRPC target (``host:port``, IPv6 in brackets)."""
        return address.join_host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """An app's probe as it was before the injector pointed it at the sidecar: the kubelet
    probes the sidecar's port for `kind`, which forwards to 127.0.0.1:`port` (HTTP: with
    the request's path prefix replaced by `path`, answered within `timeout_seconds`;
    HTTPS: passed through as TCP)."""

    kind: ProbeKind
    scheme: ProbeScheme
    port: int
    path: str = "/"
    timeout_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """A validated bootstrap. `source` is the file it came from (for messages)."""

    node_id: str
    xds: XdsServer
    node_cluster: str = ""
    node_metadata: Mapping[str, Any] = field(default_factory=dict)
    admin_host: str = DEFAULT_ADMIN_HOST
    admin_port: int = DEFAULT_ADMIN_PORT
    access_log: Path | None = None
    bind_overrides: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    health_probes: tuple[HealthProbe, ...] = ()
    source: str = "<bootstrap>"

    @property
    def node(self) -> NodeId:
        return NodeId.parse(self.node_id)


# ---------------------------------------------------------------------------------------------
# Reading


class _Reader:
    """Field access with error messages that carry the file and the field path."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def fail(self, path: str, message: str) -> BootstrapError:
        return BootstrapError(self.source, path, message)

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path or "(top level)", f"expected a mapping, got {_kind(value)}")
        unknown = sorted(str(key) for key in value if key not in allowed)
        if unknown:
            prefix = f"{path}." if path else ""
            raise self.fail(
                prefix + unknown[0], f"unknown field; valid fields here: {', '.join(allowed)}"
            )
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        return value

    def file(self, value: Any, path: str) -> Path:
        text = self.string(value, path)
        resolved = Path(text) if os.path.isabs(text) else self.base / text
        if not resolved.is_file():
            raise self.fail(path, f"file {str(resolved)!r} does not exist (a PEM file path)")
        return resolved

    def port(self, value: Any, path: str, allow_zero: bool = False) -> int:
        low = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
            raise self.fail(path, f"expected a port number {low}-65535, got {value!r}")
        return value

    def host(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            if not all(part.replace("-", "").isalnum() for part in text.split(".")):
                raise self.fail(
                    path, f"expected an IP address or a host name, got {text!r}"
                ) from None
        return text

    def host_port(self, value: Any, path: str, allow_zero: bool = False) -> tuple[str, int]:
        text = self.string(value, path)
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            example = f"{wellknown.LOCALHOST}:{wellknown.XDS_PORT}"
            raise self.fail(path, f"expected HOST:PORT (e.g. {example}), got {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return self.host(host, path), self.port(int(port_text), path, allow_zero)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"{type(value).__name__} {value!r}"
    )


_TOP = ("node", "xds", "admin", "access_log", "listeners", "drain_seconds", "health_probes")
_PROBE_FIELDS = ("kind", "scheme", "port", "path", "timeout_seconds")


def _health_probes(reader: _Reader, value: Any) -> tuple[HealthProbe, ...]:
    """The ``health_probes`` list: one probe per kind, each a mapping of `_PROBE_FIELDS`."""
    if not isinstance(value, list):
        raise reader.fail("health_probes", f"expected a list of probes, got {_kind(value)}")
    probes: list[HealthProbe] = []
    for index, item in enumerate(value):
        where = f"health_probes[{index}]"
        probe = reader.mapping(item, where, _PROBE_FIELDS)
        for required in ("kind", "scheme", "port"):
            if required not in probe:
                raise reader.fail(f"{where}.{required}", "required field is missing")
        kind = probe["kind"]
        if kind not in PROBE_KINDS:
            raise reader.fail(
                f"{where}.kind", f"expected one of {', '.join(PROBE_KINDS)}, got {kind!r}"
            )
        if any(earlier.kind == kind for earlier in probes):
            raise reader.fail(
                f"{where}.kind", f"a second {kind} probe; the sidecar forwards one per kind"
            )
        scheme = probe["scheme"]
        if scheme not in PROBE_SCHEMES:
            raise reader.fail(
                f"{where}.scheme", f"expected one of {', '.join(PROBE_SCHEMES)}, got {scheme!r}"
            )
        port = reader.port(probe["port"], f"{where}.port")
        path = probe.get("path", "/")
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or not (path.isascii() and path.isprintable())
            or " " in path
        ):
            raise reader.fail(
                f"{where}.path",
                f"expected a request path starting with / (printable ASCII, no spaces), "
                f"got {path!r}",
            )
        timeout = probe.get("timeout_seconds", 1)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise reader.fail(
                f"{where}.timeout_seconds", f"expected a number of seconds > 0, got {timeout!r}"
            )
        probes.append(HealthProbe(kind, scheme, port, path, float(timeout)))
    return tuple(probes)


def parse(document: Any, source: str = "<bootstrap>", base: Path | None = None) -> Bootstrap:
    """Validate a loaded document; raises `BootstrapError` for the first mistake."""
    reader = _Reader(source, base or Path.cwd())
    top = reader.mapping(document, "", _TOP)
    for required in ("node", "xds"):
        if required not in top:
            raise reader.fail(required, "required field is missing")
    node = reader.mapping(top["node"], "node", ("id", "cluster", "metadata"))
    node_id = reader.string(node.get("id"), "node.id")
    try:
        parsed = NodeId.parse(node_id)
    except InvalidNodeId as error:
        raise reader.fail("node.id", str(error)) from None
    if parsed.kind is not ProxyKind.SIDECAR:
        raise reader.fail(
            "node.id", f"the sidecar's node id must be <pod>.sidecar.<sa>.<ns>, got {node_id!r}"
        )
    cluster = node.get("cluster", parsed.identity.service_account)
    cluster = reader.string(cluster, "node.cluster")
    metadata = node.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise reader.fail("node.metadata", f"expected a mapping of strings, got {_kind(metadata)}")

    xds = reader.mapping(
        top["xds"], "xds", ("address", "tls", "insecure", "protocol", "max_receive_message_length")
    )
    host, port = reader.host_port(xds.get("address"), "xds.address")
    insecure = xds.get("insecure", False)
    if not isinstance(insecure, bool):
        raise reader.fail("xds.insecure", f"expected true or false, got {_kind(insecure)}")
    tls: TlsFiles | None = None
    if "tls" in xds:
        if insecure:
            raise reader.fail("xds", "give either tls or insecure: true, not both")
        block = reader.mapping(xds["tls"], "xds.tls", ("cert", "key", "ca", "server_name"))
        for required in ("cert", "key", "ca"):
            if required not in block:
                raise reader.fail(f"xds.tls.{required}", "required field is missing")
        server_name = block.get("server_name")
        tls = TlsFiles(
            reader.file(block["cert"], "xds.tls.cert"),
            reader.file(block["key"], "xds.tls.key"),
            reader.file(block["ca"], "xds.tls.ca"),
            reader.host(server_name, "xds.tls.server_name") if server_name is not None else None,
        )
    elif not insecure:
        raise reader.fail(
            "xds", "needs tls: {cert, key, ca} (mTLS with the mesh CA), or insecure: true"
        )
    protocol = xds.get("protocol", "auto")
    if protocol not in PROTOCOLS:
        raise reader.fail(
            "xds.protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    max_receive = xds.get("max_receive_message_length", DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH)
    if (
        isinstance(max_receive, bool)
        or not isinstance(max_receive, int)
        or not 1 <= max_receive <= MAX_MESSAGE_LENGTH
    ):
        raise reader.fail(
            "xds.max_receive_message_length",
            f"expected a number of bytes 1-{MAX_MESSAGE_LENGTH}, got {max_receive!r}",
        )

    admin = reader.mapping(top.get("admin", {}), "admin", ("address", "port"))
    admin_host = reader.host(admin.get("address", DEFAULT_ADMIN_HOST), "admin.address")
    admin_port = reader.port(admin.get("port", DEFAULT_ADMIN_PORT), "admin.port", True)

    access_log: Path | None = None
    if top.get("access_log") is not None:
        text = reader.string(top["access_log"], "access_log")
        access_log = Path(text) if os.path.isabs(text) else reader.base / text

    overrides: dict[str, tuple[str, int]] = {}
    listeners = top.get("listeners", {})
    if not isinstance(listeners, dict):
        raise reader.fail(
            "listeners", f"expected a mapping of name: HOST:PORT, got {_kind(listeners)}"
        )
    for name, bind in listeners.items():
        overrides[str(name)] = reader.host_port(bind, f"listeners.{name}", allow_zero=True)

    drain = top.get("drain_seconds", DEFAULT_DRAIN_SECONDS)
    if isinstance(drain, bool) or not isinstance(drain, int | float) or drain < 0:
        raise reader.fail("drain_seconds", f"expected a number of seconds >= 0, got {drain!r}")

    health_probes = _health_probes(reader, top.get("health_probes", []))

    return Bootstrap(
        node_id=node_id,
        xds=XdsServer(host, port, tls, protocol, max_receive),
        node_cluster=cluster,
        node_metadata=dict(metadata),
        admin_host=admin_host,
        admin_port=admin_port,
        access_log=access_log,
        bind_overrides=overrides,
        drain_seconds=float(drain),
        health_probes=health_probes,
        source=source,
    )


def load(path: Path) -> Bootstrap:
    """Read and validate a bootstrap file; raises `BootstrapError`."""
    source = str(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise BootstrapError(source, "", f"cannot read: {error.strerror or error}") from None
    return parse(_document(text, source), source, path.resolve().parent)


def _document(text: str, source: str) -> Any:
    """JSON without importing PyYAML (the common case: `write` writes JSON), else YAML."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style, or a mistake: YAML says which
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise BootstrapError(source, "", f"not valid YAML or JSON: {error}") from None
