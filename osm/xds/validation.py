"""Envoy's field rules, checked in Python: what protoc-gen-validate would say, and more.

The one idea: Envoy's protos carry their validation rules as ``(validate.rules)``
options (protoc-gen-validate); `pgv` reads those options from the descriptors and
interprets them, recursing into ``Any`` (which PGV itself does not do). PGV's own
Python runtime needs protobuf 6 and stops at the first error; this checker reports
every violation with a field path.

Honest scope:

* PGV rules interpreted: strings (min/max length and bytes, prefix, suffix,
  contains, pattern, in/not_in, well-known HTTP header name/value, ``ignore_empty``),
  numbers and their wrappers (const, lt, lte, gt, gte, in, not_in), bools (const),
  bytes (min/max length), enums (defined_only, in, not_in), messages (required),
  repeated (min/max items, unique, per-item rules), maps (min/max pairs, key and
  value rules), durations (required, const, lt, lte, gt, gte), Any (required, in,
  not_in), and required oneofs. Not interpreted (rare in Envoy, unused by us):
  timestamps, email/hostname/uri well-knowns, and PGV's "outside the range" form
  of lt < gt.
* Envoy's own semantic checks that are not PGV rules (`SEMANTIC`): an HCM's
  ``http_filters`` end with the router (and only there); weighted clusters have a
  positive total; regexes are ones Envoy's RE2 accepts (`osm.model.regex.check`,
  program-size limit included); a route
  configuration's virtual host names and domains are unique; a listener has chains
  (unless it is an API listener) with unique names and distinct matches; cluster
  discovery types have what they need (EDS config, a load assignment,
  CLUSTER_PROVIDED only with ORIGINAL_DST); endpoint addresses are IPs with a port
  (DNS clusters' may be DNS names, which Envoy resolves).
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from validate import validate_pb2

from osm.model import regex
from osm.xds.resources import unpack

_WRAPPERS = {
    "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.Int32Value": "int32",
    "google.protobuf.Int64Value": "int64",
    "google.protobuf.DoubleValue": "double",
    "google.protobuf.FloatValue": "float",
    "google.protobuf.BoolValue": "bool",
    "google.protobuf.StringValue": "string",
    "google.protobuf.BytesValue": "bytes",
}
_HEADER_NAME = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
_HEADER_VALUE = re.compile(r"^[^\x00\n\r]*$")
_rules_cache: dict[str, Any] = {}
_COMPARISONS: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
    ("const", operator.eq, "must equal"),
    ("lt", operator.lt, "must be <"),
    ("lte", operator.le, "must be <="),
    ("gt", operator.gt, "must be >"),
    ("gte", operator.ge, "must be >="),
)


def validate(message: Message) -> list[str]:
    """Every violation in ``message`` (``Any`` unpacked), as ``path: problem``."""
    problems: list[str] = []
    _check(message, message.DESCRIPTOR.name, problems)
    return problems


def _field_rules(field: FieldDescriptor) -> Any:
    key = field.full_name
    if key not in _rules_cache:
        options = field.GetOptions()
        _rules_cache[key] = (
            options.Extensions[validate_pb2.rules]
            if options.HasExtension(validate_pb2.rules)
            else None
        )
    return _rules_cache[key]


def _check(message: Message, path: str, problems: list[str]) -> None:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Any":
        assert isinstance(message, any_pb2.Any)
        inner = unpack(message)
        if inner is None:
            problems.append(f"{path}: Any of unknown type {message.type_url!r}")
        else:
            _check(inner, f"{path}<{inner.DESCRIPTOR.name}>", problems)
        return
    semantic = SEMANTIC.get(descriptor.full_name)
    if semantic is not None:
        semantic(message, path, problems)
    for oneof in descriptor.oneofs:
        options = oneof.GetOptions()
        if (
            options.HasExtension(validate_pb2.required)
            and options.Extensions[validate_pb2.required]
            and message.WhichOneof(oneof.name) is None
        ):
            problems.append(f"{path}: one of {oneof.name} ({_oneof_fields(oneof)}) is required")
    for field in descriptor.fields:
        rules = _field_rules(field)
        value = getattr(message, field.name)
        where = f"{path}.{field.name}"
        is_map = field.type == field.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        if is_map:
            _check_map(field, value, rules, where, problems)
        elif field.is_repeated:
            _check_repeated(field, value, rules, where, problems)
        elif field.type == field.TYPE_MESSAGE:
            present = message.HasField(field.name)
            if field.containing_oneof is not None and not present:
                continue  # rules of an unselected oneof member do not apply
            if rules is not None:
                _message_rules(field, value, present, rules, where, problems)
            if present:
                _check(value, where, problems)
        elif rules is not None:
            if (
                field.containing_oneof is not None
                and message.WhichOneof(field.containing_oneof.name) != field.name
            ):
                continue
            _scalar_rules(field, value, rules, where, problems)


def _in(rules: Any) -> Any:
    """PGV's ``in`` list (a Python keyword, so not an attribute name)."""
    return getattr(rules, "in")


def _oneof_fields(oneof: Any) -> str:
    return ", ".join(f.name for f in oneof.fields)


def _message_rules(
    field: FieldDescriptor, value: Any, present: bool, rules: Any, where: str, problems: list[str]
) -> None:
    kind = rules.WhichOneof("type")
    if rules.HasField("message") and rules.message.required and not present:
        problems.append(f"{where}: required")
    if not present:
        if kind in ("duration", "any") and getattr(rules, kind).required:
            problems.append(f"{where}: required")
        return
    wrapped = _WRAPPERS.get(field.message_type.full_name)
    if wrapped is not None and kind == wrapped:
        _number_or_string(kind, getattr(rules, kind), value.value, where, problems, field)
    elif kind == "duration":
        _duration_rules(rules.duration, value, where, problems)
    elif kind == "any":
        if _in(rules.any) and value.type_url not in _in(rules.any):
            problems.append(f"{where}: type {value.type_url} not allowed")
        if value.type_url in rules.any.not_in:
            problems.append(f"{where}: type {value.type_url} not allowed")


def _nanos(duration: Any) -> int:
    return int(duration.seconds) * 1_000_000_000 + int(duration.nanos)


def _duration_rules(rules: Any, value: Any, where: str, problems: list[str]) -> None:
    actual = _nanos(value)
    for name, compare, text in _COMPARISONS:
        if rules.HasField(name):
            bound = _nanos(getattr(rules, name))
            if not compare(actual, bound):
                problems.append(f"{where}: {text} {bound / 1e9}s (is {actual / 1e9}s)")


def _scalar_rules(
    field: FieldDescriptor, value: Any, rules: Any, where: str, problems: list[str]
) -> None:
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    if kind == "enum":
        enum_rules = rules.enum
        if enum_rules.defined_only and value not in field.enum_type.values_by_number:
            problems.append(f"{where}: {value} is not a defined {field.enum_type.name}")
        if _in(enum_rules) and value not in _in(enum_rules):
            problems.append(f"{where}: {value} not in {list(getattr(enum_rules, 'in'))}")
        if value in enum_rules.not_in:
            problems.append(f"{where}: {value} not allowed")
        return
    _number_or_string(kind, getattr(rules, kind), value, where, problems, field)


def _number_or_string(
    kind: str, rules: Any, value: Any, where: str, problems: list[str], field: FieldDescriptor
) -> None:
    if kind == "string":
        _string_rules(rules, value, where, problems)
    elif kind == "bytes":
        if getattr(rules, "ignore_empty", False) and not value:
            return
        if rules.HasField("min_len") and len(value) < rules.min_len:
            problems.append(f"{where}: at least {rules.min_len} bytes required")
        if rules.HasField("max_len") and len(value) > rules.max_len:
            problems.append(f"{where}: at most {rules.max_len} bytes allowed")
    elif kind == "bool":
        if rules.HasField("const") and value != rules.const:
            problems.append(f"{where}: must be {rules.const}")
    elif kind in ("uint32", "uint64", "int32", "int64", "sint32", "sint64", "double", "float"):
        if getattr(rules, "ignore_empty", False) and not value:
            return
        for name, compare, text in _COMPARISONS:
            if rules.HasField(name) and not compare(value, getattr(rules, name)):
                problems.append(f"{where}: {text} {getattr(rules, name)} (is {value})")
        if _in(rules) and value not in _in(rules):
            problems.append(f"{where}: {value} not in {list(getattr(rules, 'in'))}")
        if value in rules.not_in:
            problems.append(f"{where}: {value} not allowed")


def _string_rules(rules: Any, value: str, where: str, problems: list[str]) -> None:
    if rules.ignore_empty and not value:
        return
    if rules.HasField("min_len") and len(value) < rules.min_len:
        problems.append(f"{where}: at least {rules.min_len} characters required (is {value!r})")
    if rules.HasField("max_len") and len(value) > rules.max_len:
        problems.append(f"{where}: at most {rules.max_len} characters allowed")
    encoded = value.encode()
    if rules.HasField("min_bytes") and len(encoded) < rules.min_bytes:
        problems.append(f"{where}: at least {rules.min_bytes} bytes required (is {value!r})")
    if rules.HasField("max_bytes") and len(encoded) > rules.max_bytes:
        problems.append(f"{where}: at most {rules.max_bytes} bytes allowed")
    if rules.HasField("prefix") and not value.startswith(rules.prefix):
        problems.append(f"{where}: must start with {rules.prefix!r}")
    if rules.HasField("suffix") and not value.endswith(rules.suffix):
        problems.append(f"{where}: must end with {rules.suffix!r}")
    if rules.HasField("contains") and rules.contains not in value:
        problems.append(f"{where}: must contain {rules.contains!r}")
    if rules.HasField("pattern") and not re.search(rules.pattern, value):
        problems.append(f"{where}: must match {rules.pattern!r} (is {value!r})")
    if _in(rules) and value not in _in(rules):
        problems.append(f"{where}: {value!r} not in {list(getattr(rules, 'in'))}")
    if value in rules.not_in:
        problems.append(f"{where}: {value!r} not allowed")
    if rules.WhichOneof("well_known") == "well_known_regex":
        header = (
            _HEADER_NAME
            if rules.well_known_regex == validate_pb2.HTTP_HEADER_NAME
            else _HEADER_VALUE
        )
        if value and not header.match(value):
            problems.append(f"{where}: {value!r} is not a valid HTTP header name/value")


def _check_repeated(
    field: FieldDescriptor, values: Any, rules: Any, where: str, problems: list[str]
) -> None:
    repeated = rules.repeated if rules is not None and rules.HasField("repeated") else None
    if repeated is not None:
        if repeated.HasField("min_items") and len(values) < repeated.min_items:
            problems.append(f"{where}: at least {repeated.min_items} item(s) required")
        if repeated.HasField("max_items") and len(values) > repeated.max_items:
            problems.append(f"{where}: at most {repeated.max_items} item(s) allowed")
        unique = repeated.unique and field.type != field.TYPE_MESSAGE
        if unique and len(set(values)) != len(values):
            problems.append(f"{where}: items must be unique")
    items = repeated.items if repeated is not None and repeated.HasField("items") else None
    for index, value in enumerate(values):
        item_where = f"{where}[{index}]"
        if field.type == field.TYPE_MESSAGE:
            if items is not None:
                _message_rules(field, value, True, items, item_where, problems)
            _check(value, item_where, problems)
        elif items is not None:
            _scalar_rules(field, value, items, item_where, problems)


def _check_map(
    field: FieldDescriptor, values: Any, rules: Any, where: str, problems: list[str]
) -> None:
    map_rules = rules.map if rules is not None and rules.HasField("map") else None
    if map_rules is not None:
        if map_rules.HasField("min_pairs") and len(values) < map_rules.min_pairs:
            problems.append(f"{where}: at least {map_rules.min_pairs} pair(s) required")
        if map_rules.HasField("max_pairs") and len(values) > map_rules.max_pairs:
            problems.append(f"{where}: at most {map_rules.max_pairs} pair(s) allowed")
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    for key in values:
        item_where = f"{where}[{key!r}]"
        if map_rules is not None and map_rules.HasField("keys"):
            _scalar_rules(key_field, key, map_rules.keys, item_where, problems)
        value = values[key]
        if value_field.type == value_field.TYPE_MESSAGE:
            if map_rules is not None and map_rules.HasField("values"):
                _message_rules(value_field, value, True, map_rules.values, item_where, problems)
            _check(value, item_where, problems)
        elif map_rules is not None and map_rules.HasField("values"):
            _scalar_rules(value_field, value, map_rules.values, item_where, problems)


# -- Envoy's semantic checks ----------------------------------------------------------
ROUTER = "envoy.extensions.filters.http.router.v3.Router"


def _hcm(message: Any, path: str, problems: list[str]) -> None:
    filters = list(message.http_filters)
    if not filters:
        problems.append(f"{path}.http_filters: empty (the router filter must end the list)")
        return
    for index, http_filter in enumerate(filters):
        is_router = http_filter.typed_config.type_url.endswith("/" + ROUTER)
        if is_router and index != len(filters) - 1:
            problems.append(f"{path}.http_filters[{index}]: the router must be the last filter")
        if not is_router and index == len(filters) - 1:
            problems.append(f"{path}.http_filters: the last filter must be the router")


def _weights(message: Any, path: str, problems: list[str]) -> None:
    names = [c.name for c in message.clusters]
    if not names:
        problems.append(f"{path}.clusters: at least one cluster required")
    if len(set(names)) != len(names):
        problems.append(f"{path}.clusters: cluster names repeat")
    total = sum(
        c.weight.value if hasattr(c.weight, "value") else c.weight for c in message.clusters
    )
    if total <= 0:
        problems.append(f"{path}: weights sum to {total}; it must be > 0")


def _regex(message: Any, path: str, problems: list[str]) -> None:
    # An empty regex is PGV's to report (min_len); everything else is Envoy's RE2 verdict.
    if message.regex and (complaint := regex.check(message.regex)) is not None:
        problems.append(f"{path}.regex: {complaint}")


def _route_configuration(message: Any, path: str, problems: list[str]) -> None:
    seen_names: set[str] = set()
    seen_domains: dict[str, str] = {}
    for host in message.virtual_hosts:
        if host.name in seen_names:
            problems.append(f"{path}: virtual host name {host.name!r} repeats")
        seen_names.add(host.name)
        for domain in host.domains:
            if domain in seen_domains:
                problems.append(
                    f"{path}: domain {domain!r} in both {seen_domains[domain]!r} and {host.name!r}"
                )
            seen_domains[domain] = host.name


def _listener(message: Any, path: str, problems: list[str]) -> None:
    if message.HasField("api_listener"):
        return
    if not message.HasField("address"):
        problems.append(f"{path}.address: required (not an API listener)")
    if not message.filter_chains and not message.HasField("default_filter_chain"):
        problems.append(f"{path}: no filter chains")
    names: set[str] = set()
    matches: set[bytes] = set()
    for index, chain in enumerate(message.filter_chains):
        if chain.name and chain.name in names:
            problems.append(f"{path}.filter_chains[{index}]: name {chain.name!r} repeats")
        names.add(chain.name)
        match = _normalized_match(chain.filter_chain_match)
        if match in matches:
            problems.append(
                f"{path}.filter_chains[{index}]: same filter_chain_match as an earlier chain"
            )
        matches.add(match)


def _normalized_match(match: Any) -> bytes:
    copy = type(match)()
    copy.CopyFrom(match)
    ranges = sorted((r.address_prefix, r.prefix_len.value) for r in copy.prefix_ranges)
    del copy.prefix_ranges[:]
    names = sorted(copy.server_names)
    del copy.server_names[:]
    return bytes(copy.SerializeToString(deterministic=True)) + repr((ranges, names)).encode()


def _cluster(message: Any, path: str, problems: list[str]) -> None:
    kind = message.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[message.type].name
    provided = (
        message.DESCRIPTOR.fields_by_name["lb_policy"]
        .enum_type.values_by_name["CLUSTER_PROVIDED"]
        .number
    )
    if kind == "EDS" and not message.eds_cluster_config.HasField("eds_config"):
        problems.append(f"{path}.eds_cluster_config.eds_config: required for an EDS cluster")
    if kind in ("STATIC", "STRICT_DNS", "LOGICAL_DNS") and not message.HasField("load_assignment"):
        problems.append(f"{path}.load_assignment: required for a {kind} cluster")
    if kind == "ORIGINAL_DST" and message.lb_policy != provided:
        problems.append(f"{path}.lb_policy: an ORIGINAL_DST cluster needs CLUSTER_PROVIDED")
    if kind != "ORIGINAL_DST" and message.lb_policy == provided:
        problems.append(f"{path}.lb_policy: CLUSTER_PROVIDED needs an ORIGINAL_DST cluster")
    if not message.HasField("connect_timeout"):
        problems.append(f"{path}.connect_timeout: must be set and > 0")
    dns = kind in ("STRICT_DNS", "LOGICAL_DNS")
    for index, locality in enumerate(message.load_assignment.endpoints):
        for inner, lb_endpoint in enumerate(locality.lb_endpoints):
            address = lb_endpoint.endpoint.address.socket_address.address
            where = (
                f"{path}.load_assignment.endpoints[{index}].lb_endpoints[{inner}]"
                ".endpoint.address.socket_address.address"
            )
            if not _is_ip(address) and not (dns and _is_dns_name(address)):
                wanted = "an IP address or a DNS name" if dns else "an IP address"
                problems.append(f"{where}: {address!r} is not {wanted}")


def _load_assignment(message: Any, path: str, problems: list[str]) -> None:
    weighted = [locality.HasField("load_balancing_weight") for locality in message.endpoints]
    if any(weighted) and not all(weighted):
        problems.append(f"{path}.endpoints: locality weights must be set on all or none")
    for index, locality in enumerate(message.endpoints):
        if locality.HasField("load_balancing_weight") and locality.load_balancing_weight.value < 1:
            problems.append(f"{path}.endpoints[{index}].load_balancing_weight: must be >= 1")
        for inner, lb_endpoint in enumerate(locality.lb_endpoints):
            where = f"{path}.endpoints[{index}].lb_endpoints[{inner}].endpoint.address"
            address = lb_endpoint.endpoint.address.socket_address
            if not lb_endpoint.endpoint.HasField("address"):
                problems.append(f"{where}: required")
            elif not 1 <= address.port_value <= 65535:
                problems.append(f"{where}.port_value: {address.port_value} is not a port")


def _socket_address(message: Any, path: str, problems: list[str]) -> None:
    """An IP address, unless a resolver is named; a cluster's own load assignment is
    checked by `_cluster` (DNS clusters take names)."""
    if ".load_assignment." in path:
        return
    if not message.resolver_name and not _is_ip(message.address):
        problems.append(f"{path}.address: {message.address!r} is not an IP address")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _is_dns_name(value: str) -> bool:
    labels = value.removesuffix(".").split(".")
    return len(value) <= 253 and all(_DNS_LABEL.match(label) for label in labels)


def _secret(message: Any, path: str, problems: list[str]) -> None:
    if message.WhichOneof("type") is None:
        problems.append(f"{path}: a secret needs a certificate, key or validation context")


SEMANTIC: dict[str, Callable[[Any, str, list[str]], None]] = {
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": _hcm,
    "envoy.config.route.v3.WeightedCluster": _weights,
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster": _weights,
    "envoy.type.matcher.v3.RegexMatcher": _regex,
    "envoy.config.route.v3.RouteConfiguration": _route_configuration,
    "envoy.config.listener.v3.Listener": _listener,
    "envoy.config.cluster.v3.Cluster": _cluster,
    "envoy.config.endpoint.v3.ClusterLoadAssignment": _load_assignment,
    "envoy.config.core.v3.SocketAddress": _socket_address,
    "envoy.extensions.transport_sockets.tls.v3.Secret": _secret,
}
