"""The OpenAPI v3 schemas of the mesh's own kinds (SMI, OSM's policies, MeshConfig), as CRDs
state them.

One schema per (kind, apiVersion), of the whole object, built declaratively from the same
constants the parsers check (`smi`, `config`, `fields`): the API server publishes them
(`osm.apiserver.openapi`, for ``kubectl explain`` and client tooling) and CRDs are
generated from them. They are *structural* (Kubernetes' rule for CRD schemas): every node
has a ``type`` except the few marked ``x-kubernetes-preserve-unknown-fields``, no
``$ref``, no ``additionalProperties`` beside ``properties``, and ``metadata`` is left to
the API server. They say what a schema can say (types, required fields, enums, ranges,
name patterns); the parsers stay the authority and also check what a schema cannot
(regexes Envoy accepts, unique names, cross-field rules). Tests keep the two honest: every
example manifest the model accepts validates here, and wrong types the model refuses are
refused here too. Defaults are stated in descriptions, not as ``default`` (the model
applies them; a CRD default would be written into stored objects). Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from osm.base import wellknown
from osm.model import config, policy, smi
from osm.model.fields import DNS1123_LABEL, DNS1123_SUBDOMAIN

Schema = dict[str, Any]

MAX_WEIGHT = 2**31 - 1
PORT_MIN, PORT_MAX = 1, 65535
DURATION_PATTERN = r"^\s*(0|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+)?\s*$"
"""A Go duration (``24h``, ``1h30m``, ``500ms``, ``0``) or empty (the default), as
`osm.model.fields.parse_duration` reads it."""
APEX_PATTERN = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?|.*\..*)$"
"""A TrafficSplit's root service: a DNS label, or any name with a dot (an FQDN)."""


# -- building blocks ----------------------------------------------------------------------
def string(
    description: str,
    *,
    enum: Sequence[str] | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> Schema:
    node: Schema = {"type": "string", "description": description}
    if enum is not None:
        node["enum"] = list(enum)
    if pattern is not None:
        node["pattern"] = pattern
    if min_length is not None:
        node["minLength"] = min_length
    if max_length is not None:
        node["maxLength"] = max_length
    return node


def integer(description: str, *, minimum: int | None = None, maximum: int | None = None) -> Schema:
    node: Schema = {"type": "integer", "description": description}
    if maximum is not None and maximum <= 2**31 - 1:
        node["format"] = "int32"
    if minimum is not None:
        node["minimum"] = minimum
    if maximum is not None:
        node["maximum"] = maximum
    return node


def number(
    description: str, *, minimum: float | None = None, maximum: float | None = None
) -> Schema:
    node: Schema = {"type": "number", "description": description}
    if minimum is not None:
        node["minimum"] = minimum
    if maximum is not None:
        node["maximum"] = maximum
    return node


def boolean(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def array(items: Schema, description: str, *, min_items: int | None = None) -> Schema:
    node: Schema = {"type": "array", "description": description, "items": items}
    if min_items is not None:
        node["minItems"] = min_items
    return node


def obj(
    description: str, properties: Mapping[str, Schema], *, required: Sequence[str] = ()
) -> Schema:
    missing = set(required) - set(properties)
    assert not missing, f"required fields without a schema: {sorted(missing)}"
    node: Schema = {"type": "object", "description": description, "properties": dict(properties)}
    if required:
        node["required"] = list(required)
    return node


def opaque_object(description: str) -> Schema:
    """An object the mesh keeps as written and does not read (its fields are not listed)."""
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def dns_label(description: str) -> Schema:
    return string(description, pattern=DNS1123_LABEL.pattern, max_length=63)


def dns_subdomain(description: str) -> Schema:
    return string(description, pattern=DNS1123_SUBDOMAIN.pattern, max_length=253)


def port(description: str) -> Schema:
    return integer(description, minimum=PORT_MIN, maximum=PORT_MAX)


def duration(description: str) -> Schema:
    return string(description, pattern=DURATION_PATTERN)


def _default(value: object) -> str:
    if isinstance(value, bool):
        return f" Default: {str(value).lower()}."
    if isinstance(value, tuple):
        return " Default: empty." if not value else f" Default: {list(value)}."
    return f' Default: "{value}".' if isinstance(value, str) else f" Default: {value}."


def _root(description: str, spec: Schema, *, spec_required: bool) -> Schema:
    return obj(
        description,
        {
            "apiVersion": string(
                "The versioned schema of this representation of an object; the API server "
                "converts recognized schemas to the latest internal value."
            ),
            "kind": string("The REST resource this object represents, in CamelCase."),
            "metadata": {"type": "object", "description": "Standard object's metadata."},
            "spec": spec,
        },
        required=("spec",) if spec_required else (),
    )


# -- SMI: TrafficTarget (access.smi-spec.io/v1alpha3) ---------------------------------------
def _identity(role: str) -> Schema:
    return obj(
        f"{role}: a workload identity, the service account its pods run as.",
        {
            "kind": string(
                "The kind of identity; the mesh knows ServiceAccount.",
                enum=smi.IDENTITY_KINDS,
            ),
            "name": dns_subdomain("The name of the service account."),
            "namespace": dns_label(
                "The namespace of the service account. Default: the TrafficTarget's own "
                "namespace (for the destination it must be that namespace)."
            ),
        },
        required=("kind", "name"),
    )


def _traffic_target() -> Schema:
    rule = obj(
        "Names a route group (HTTPRouteGroup) or TCP route (TCPRoute) that the sources may "
        "use towards the destination.",
        {
            "kind": string("The kind of the route resource.", enum=smi.RULE_KINDS),
            "name": dns_subdomain("The name of the route resource, in this namespace."),
            "matches": array(
                string("The name of one match of the HTTPRouteGroup."),
                "The names of the HTTPRouteGroup's matches allowed; empty means all of "
                "them. HTTPRouteGroup rules only.",
            ),
        },
        required=("kind", "name"),
    )
    spec = obj(
        "Who may reach the destination's pods, and on which routes.",
        {
            "destination": _identity(
                "The identity whose pods receive the traffic (in the TrafficTarget's namespace)"
            ),
            "sources": array(
                _identity("A source"),
                "The identities allowed to send traffic to the destination.",
                min_items=1,
            ),
            "rules": array(
                rule,
                "The routes the sources may use; traffic matching none of them is denied.",
                min_items=1,
            ),
        },
        required=("destination", "sources", "rules"),
    )
    return _root(
        "TrafficTarget allows traffic from source service accounts to the pods of a "
        "destination service account, on the routes its rules name (SMI access control). "
        "Outside permissive traffic mode, traffic no TrafficTarget allows is denied.",
        spec,
        spec_required=True,
    )


# -- SMI: HTTPRouteGroup, TCPRoute (specs.smi-spec.io/v1alpha4) -------------------------------
def _http_route_group() -> Schema:
    match = obj(
        "One named HTTP match; its conditions are ANDed, an absent condition matches anything.",
        {
            "name": string(
                "The match's name, unique in the group; TrafficTarget rules and "
                "TrafficSplit matches refer to it.",
                min_length=1,
            ),
            "pathRegex": string(
                "A regular expression (RE2 syntax, as Envoy reads it) that the whole request "
                "path must match. Empty or absent: any path."
            ),
            "methods": array(
                string("An HTTP method, or * for any.", enum=smi.HTTP_METHODS),
                "The HTTP methods matched; empty or containing * means any method.",
            ),
            "headers": {
                "description": (
                    "Header conditions, all of which must match: header name to a regular "
                    "expression that the whole value must match. Written as a map "
                    '({"x-beta": "true"}) or as a list of single-key maps '
                    '([{"x-beta": "true"}]), as SMI\'s prose and its CRD write it.'
                ),
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
        required=("name",),
    )
    spec = obj(
        "The group's HTTP matches.",
        {"matches": array(match, "The named matches of this group.", min_items=1)},
        required=("matches",),
    )
    return _root(
        "HTTPRouteGroup names HTTP traffic patterns (path, methods, headers) that "
        "TrafficTargets allow and TrafficSplits split (SMI traffic specs).",
        spec,
        spec_required=True,
    )


def _tcp_route() -> Schema:
    matches = obj(
        "The TCP traffic this route matches.",
        {
            "name": string("A name for the match."),
            "ports": array(
                port("A destination port."),
                "The destination ports matched; [] means every port of the destination's services.",
            ),
        },
        required=("ports",),
    )
    spec = obj("The TCP traffic this route describes.", {"matches": matches}, required=("matches",))
    return _root(
        "TCPRoute describes TCP traffic to a destination's ports, for TrafficTarget rules "
        "(SMI traffic specs).",
        spec,
        spec_required=True,
    )


# -- SMI: TrafficSplit (split.smi-spec.io/v1alpha4 and v1alpha2) ------------------------------
def _traffic_split(with_matches: bool) -> Schema:
    backend = obj(
        "A service that receives a share of the root service's traffic.",
        {
            "service": dns_label("The name of the backend service, in this namespace."),
            "weight": integer(
                "The backend's share, relative to the sum of all weights; 0 sends it nothing.",
                minimum=0,
                maximum=MAX_WEIGHT,
            ),
        },
        required=("service", "weight"),
    )
    properties: dict[str, Schema] = {
        "service": string(
            "The root service that clients connect to: a service name in this namespace, "
            "or a name with a dot in it (its FQDN).",
            pattern=APEX_PATTERN,
        ),
        "backends": array(
            backend,
            "The services the root service's traffic is split between; at least one "
            "needs a weight above 0, and each service appears once.",
            min_items=1,
        ),
    }
    if with_matches:
        properties["matches"] = array(
            obj(
                "An HTTPRouteGroup whose matches select the traffic that is split.",
                {
                    "kind": string("The kind of the route resource.", enum=("HTTPRouteGroup",)),
                    "name": dns_subdomain("The name of the HTTPRouteGroup, in this namespace."),
                },
                required=("kind", "name"),
            ),
            "Route groups that select which requests are split; empty means every request.",
        )
    spec = obj(
        "The root service and how its traffic is split.",
        properties,
        required=("service", "backends"),
    )
    return _root(
        "TrafficSplit splits the traffic that clients send to a root service between "
        "backend services by weight (SMI traffic split).",
        spec,
        spec_required=True,
    )


# -- MeshConfig (config.openservicemesh.io/v1alpha2) ------------------------------------------
def _mesh_config() -> Schema:
    side = config.SidecarSettings()
    traffic = config.TrafficSettings()
    observed = config.ObservabilitySettings()
    tracing = config.TracingSettings()
    certs = config.CertificateSettings()
    flags = config.FeatureFlags()

    def flag(description: str, value: bool) -> Schema:
        return boolean(description + _default(value))

    def port_list(description: str) -> Schema:
        return array(port("A port number."), description + " Default: empty.")

    def text_list(item: str, description: str) -> Schema:
        return array(string(item), description + " Default: empty.")

    sidecar = obj(
        "Settings of the sidecar proxies.",
        {
            "enablePrivilegedInitContainer": flag(
                "Runs the init container that sets up traffic interception as privileged.",
                side.enable_privileged_init_container,
            ),
            "logLevel": string(
                "The sidecars' log level." + _default(side.log_level), enum=config.LOG_LEVELS
            ),
            "maxDataPlaneConnections": integer(
                "The most data plane connections a proxy accepts; 0 means no limit."
                + _default(side.max_data_plane_connections),
                minimum=0,
            ),
            "configResyncInterval": duration(
                "How often the control plane pushes every proxy's configuration again even "
                'without a change, as a Go duration ("90s"); 0 or empty means never.'
            ),
            "tlsMinProtocolVersion": string(
                "The lowest TLS version between proxies; not above tlsMaxProtocolVersion."
                + _default(side.tls_min_protocol_version),
                enum=config.TLS_VERSIONS,
            ),
            "tlsMaxProtocolVersion": string(
                "The highest TLS version between proxies."
                + _default(side.tls_max_protocol_version),
                enum=config.TLS_VERSIONS,
            ),
            "cipherSuites": text_list(
                "A cipher suite name.", "The TLS cipher suites proxies offer (TLS 1.2 and below)."
            ),
            "ecdhCurves": text_list("An ECDH curve name.", "The ECDH curves proxies offer."),
            "localProxyMode": string(
                "The address a sidecar uses to reach its own pod's application: Localhost "
                "(127.0.0.1) or PodIP." + _default(side.local_proxy_mode),
                enum=config.LOCAL_PROXY_MODES,
            ),
            "envoyImage": string("The Envoy image (Kubernetes mode only; ignored locally)."),
            "envoyWindowsImage": string(
                "The Envoy image for Windows nodes (Kubernetes mode only; ignored locally)."
            ),
            "initContainerImage": string(
                "The init container's image (Kubernetes mode only; ignored locally)."
            ),
            "resources": opaque_object(
                "The sidecar container's resource requirements (Kubernetes mode only; "
                "ignored locally)."
            ),
        },
    )
    traffic_settings = obj(
        "Traffic policy settings of the mesh.",
        {
            "enableEgress": flag(
                "Lets pods reach destinations outside the mesh.", traffic.enable_egress
            ),
            "enablePermissiveTrafficPolicyMode": flag(
                "Allows all traffic between meshed services, without SMI TrafficTargets.",
                traffic.enable_permissive_traffic_policy_mode,
            ),
            "outboundPortExclusionList": port_list(
                "Outbound destination ports that bypass the sidecar."
            ),
            "inboundPortExclusionList": port_list("Inbound ports that bypass the sidecar."),
            "outboundIPRangeExclusionList": text_list(
                'A CIDR, e.g. "10.0.0.0/8".', "Outbound destination ranges that bypass the sidecar."
            ),
            "outboundIPRangeInclusionList": text_list(
                'A CIDR, e.g. "10.0.0.0/8".',
                "If set, only outbound traffic to these ranges goes through the sidecar.",
            ),
            "networkInterfaceExclusionList": text_list(
                "A network interface name.",
                "Network interfaces whose traffic bypasses the sidecar.",
            ),
            "inboundExternalAuthorization": opaque_object(
                "External authorization of inbound traffic (not implemented by this mesh; "
                "accepted as written)."
            ),
        },
    )
    tracing_settings = obj(
        "Distributed tracing (Zipkin) settings.",
        {
            "enable": flag("Sends spans to the tracing collector.", tracing.enable),
            "address": string(
                "The tracing collector's host name or address. Default: the jaeger Service "
                "of the control plane's namespace (jaeger.<namespace>.svc.cluster.local)."
            ),
            "port": port("The tracing collector's port." + _default(tracing.port)),
            "endpoint": string(
                "The collector's HTTP path for spans (Zipkin v2 JSON)."
                + _default(tracing.endpoint),
                pattern=r"^(/.*)?$",
            ),
            "samplingPercentage": number(
                "The percentage of requests that start a sampled trace, from 0 to 100 "
                "(Envoy's random sampling; requests that arrive with a sampling decision "
                "keep it)." + _default(tracing.sampling_percentage),
                minimum=0,
                maximum=100,
            ),
        },
    )
    observability = obj(
        "Logging, debugging and tracing of the control plane and the proxies.",
        {
            "osmLogLevel": string(
                "The control plane's log level." + _default(observed.osm_log_level),
                enum=config.LOG_LEVELS,
            ),
            "enableDebugServer": flag(
                "Serves the control plane's debug endpoints.", observed.enable_debug_server
            ),
            "tracing": tracing_settings,
        },
    )
    certificate = obj(
        "Settings of the certificates the mesh issues.",
        {
            "serviceCertValidityDuration": duration(
                "How long a proxy's certificate is valid, as a Go duration, at least 1m; "
                "certificates are renewed at half of it."
                + _default(config.go_duration(certs.service_cert_validity_duration))
            ),
            "certKeyBitSize": integer(
                "The RSA key size of issued certificates." + _default(certs.cert_key_bit_size),
                minimum=2048,
                maximum=4096,
            ),
            "ingressGateway": opaque_object(
                "The ingress gateway's certificate (Kubernetes mode only; ignored locally)."
            ),
        },
    )
    feature_flags = obj(
        "Optional features, each on or off.",
        {
            "enableWASMStats": flag("Enables WASM-based statistics.", flags.enable_wasm_stats),
            "enableEgressPolicy": flag(
                "Enables the Egress policy API.", flags.enable_egress_policy
            ),
            "enableSnapshotCacheMode": flag(
                "Serves proxy configuration from a snapshot cache.",
                flags.enable_snapshot_cache_mode,
            ),
            "enableAsyncProxyServiceMapping": flag(
                "Maps proxies to services asynchronously.",
                flags.enable_async_proxy_service_mapping,
            ),
            "enableIngressBackendPolicy": flag(
                "Enables the IngressBackend policy API.", flags.enable_ingress_backend_policy
            ),
            "enableEnvoyActiveHealthChecks": flag(
                "Enables Envoy's active health checks.", flags.enable_envoy_active_health_checks
            ),
            "enableRetryPolicy": flag("Enables the Retry policy API.", flags.enable_retry_policy),
            "enableMeshRootCertificate": flag(
                "Enables the MeshRootCertificate API.", flags.enable_mesh_root_certificate
            ),
        },
    )
    spec = obj(
        "The mesh's settings; every field is optional and takes OSM's default when absent.",
        {
            "sidecar": sidecar,
            "traffic": traffic_settings,
            "observability": observability,
            "certificate": certificate,
            "featureFlags": feature_flags,
        },
    )
    return _root(
        "MeshConfig holds the mesh-wide settings of Open Service Mesh; the control plane "
        f'reads the one named "{wellknown.MESH_CONFIG_NAME}" in its namespace.',
        spec,
        spec_required=False,
    )


# -- OSM's policies (policy.openservicemesh.io/v1alpha1) -------------------------------------
def any_case(choices: Sequence[str]) -> str:
    """A pattern matching any of ``choices`` in any letter case (OSM lower-cases them)."""

    def letters(word: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)

    return "^(" + "|".join(letters(choice) for choice in choices) + ")$"


def _policy_port(description: str, protocols: Sequence[str]) -> Schema:
    return obj(
        description,
        {
            "number": port("The port number."),
            "protocol": string(
                "The protocol served on the port, in any letter case: "
                + ", ".join(protocols)
                + ".",
                pattern=any_case(protocols),
            ),
        },
        required=("number", "protocol"),
    )


def _policy_matches(description: str) -> Schema:
    groups = ", ".join(f"{kind} ({group})" for group, kind in policy.MATCH_KINDS.items())
    return array(
        obj(
            "An object in the policy's namespace, by API group (with its version) and kind: "
            + groups
            + ".",
            {
                "apiGroup": string(
                    "The referenced object's API group and version.",
                    enum=tuple(policy.MATCH_KINDS),
                ),
                "kind": string(
                    "The referenced object's kind.", enum=tuple(policy.MATCH_KINDS.values())
                ),
                "name": dns_subdomain("The referenced object's name."),
            },
            required=("apiGroup", "kind", "name"),
        ),
        description,
    )


def _service_account_ref(role: str) -> Schema:
    return obj(
        f"{role}: a service account.",
        {
            "kind": string("The kind of the reference.", enum=policy.SOURCE_KINDS),
            "name": dns_subdomain("The service account's name."),
            "namespace": dns_label("The service account's namespace."),
        },
        required=("kind", "name", "namespace"),
    )


def _egress() -> Schema:
    spec = obj(
        "Which pods may reach which destinations outside the mesh, on which ports.",
        {
            "sources": array(
                _service_account_ref("A source whose pods the policy lets out"),
                "The service accounts whose pods the policy applies to.",
            ),
            "hosts": array(
                string("A host name; a leading *. matches any subdomain."),
                "External hosts allowed: matched against the Host header (HTTP) or the TLS "
                "SNI (HTTPS); ignored for TCP.",
            ),
            "ipAddresses": array(
                string('A CIDR, e.g. "203.0.113.0/24".'),
                "External address ranges allowed (matched against the destination address).",
            ),
            "ports": array(
                _policy_port("A destination port and its protocol.", policy.EGRESS_PROTOCOLS),
                "The destination ports allowed.",
                min_items=1,
            ),
            "matches": _policy_matches(
                "HTTPRouteGroups that narrow HTTP traffic, and at most one "
                "UpstreamTrafficSetting applied to it."
            ),
        },
        required=("sources", "ports"),
    )
    return _root(
        "Egress lets pods reach endpoints outside the mesh (OSM's egress policy); without "
        "MeshConfig's enableEgress, traffic out of the mesh needs one.",
        spec,
        spec_required=True,
    )


def _ingress_backend() -> Schema:
    tls = obj(
        "TLS between the ingress and the backend.",
        {
            "skipClientCertValidation": boolean(
                "Accepts clients without checking their certificate."
            ),
            "sniHosts": array(
                string("A host name."), "The SNI names the backend accepts; empty means any."
            ),
        },
        required=("skipClientCertValidation",),
    )
    backend = obj(
        "A service of this namespace that accepts ingress traffic on a port.",
        {
            "name": dns_label("The service's name."),
            "port": _policy_port("The backend's port.", policy.INGRESS_PROTOCOLS),
            "tls": tls,
        },
        required=("name", "port"),
    )
    source = obj(
        "A client allowed: a Service (its endpoints), an AuthenticatedPrincipal (the SAN "
        "of its client certificate) or an IPRange (a CIDR in name).",
        {
            "kind": string("The kind of source.", enum=policy.INGRESS_SOURCE_KINDS),
            "name": string("The source's name, principal or CIDR.", min_length=1),
            "namespace": dns_label("A Service source's namespace (required for Service)."),
        },
        required=("kind", "name"),
    )
    spec = obj(
        "Which backends accept ingress traffic, and from whom.",
        {
            "backends": array(backend, "The backends (each name and port once).", min_items=1),
            "sources": array(source, "The clients allowed.", min_items=1),
            "matches": _policy_matches("Objects that narrow or shape the ingress traffic."),
        },
        required=("backends", "sources"),
    )
    return _root(
        "IngressBackend lets traffic from outside the mesh (an ingress controller) reach "
        "backend services (OSM's ingress policy).",
        spec,
        spec_required=True,
    )


def _retry() -> Schema:
    destination = obj(
        "A destination service.",
        {
            "kind": string("The kind of destination.", enum=policy.RETRY_DESTINATION_KINDS),
            "name": dns_label("The service's name."),
            "namespace": dns_label("The service's namespace."),
        },
        required=("kind", "name", "namespace"),
    )
    retry_policy = obj(
        "When and how often a failed request is retried (Envoy's route retry policy).",
        {
            "retryOn": string(
                "Envoy's retry conditions, comma-separated, e.g. 5xx,retriable-4xx.",
                min_length=1,
            ),
            "perTryTimeout": duration(
                "The time one attempt may take, as a Go duration; 0s: the route's timeout."
            ),
            "numRetries": integer(
                "The most retries of one request.", minimum=0, maximum=policy.UINT32_MAX
            ),
            "retryBackoffBaseInterval": duration(
                "The base interval of the jittered exponential back-off, at least 1ms; the "
                "longest wait is 10 times it."
            ),
        },
        required=("retryOn", "perTryTimeout", "numRetries", "retryBackoffBaseInterval"),
    )
    spec = obj(
        "Whose requests to which services are retried, and how.",
        {
            "source": _service_account_ref("The client whose requests are retried"),
            "destinations": array(destination, "The services called.", min_items=1),
            "retryPolicy": retry_policy,
        },
        required=("source", "destinations", "retryPolicy"),
    )
    return _root(
        "Retry retries failed requests from a service account's pods to services (OSM's "
        "retry policy; read with MeshConfig's featureFlags.enableRetryPolicy).",
        spec,
        spec_required=True,
    )


def _count(description: str, minimum: int = 0) -> Schema:
    return integer(description, minimum=minimum, maximum=policy.UINT32_MAX)


def _unit() -> Schema:
    return string("The period the rate is given per.", enum=policy.RATE_LIMIT_UNITS)


def _http_local_rate_limit(description: str) -> Schema:
    return obj(
        description,
        {
            "requests": _count("Requests allowed per unit.", minimum=1),
            "unit": _unit(),
            "burst": _count("Requests allowed above the rate in a short time. Default: 0."),
            "responseStatusCode": integer(
                "The status of a limited request's response, one of Envoy's status codes."
                + _default(policy.DEFAULT_RATE_LIMIT_STATUS),
                minimum=400,
                maximum=599,
            ),
            "responseHeadersToAdd": array(
                obj(
                    "A header name and value.",
                    {
                        "name": string("The header's name.", min_length=1),
                        "value": string("The header's value.", min_length=1),
                    },
                    required=("name", "value"),
                ),
                "Headers added to a limited request's response.",
            ),
        },
        required=("requests", "unit"),
    )


def _global_refused() -> Schema:
    return opaque_object(
        "Global rate limiting: not supported by this mesh (refused: "
        + policy.GLOBAL_RATE_LIMIT_OUT_OF_SCOPE
        + ")."
    )


def _upstream_traffic_setting() -> Schema:
    connection_settings = obj(
        "Circuit breaking of the connections and requests to the host.",
        {
            "tcp": obj(
                "TCP connection limits (for HTTP too).",
                {
                    "maxConnections": _count("The most connections. Default: 4294967295."),
                    "connectTimeout": duration('The connect timeout. Default: "5s".'),
                },
            ),
            "http": obj(
                "HTTP request limits.",
                {
                    "maxRequests": _count("The most requests at once. Default: 4294967295."),
                    "maxRequestsPerConnection": _count(
                        "The most requests on one connection. Default: no limit."
                    ),
                    "maxPendingRequests": _count(
                        "The most requests waiting for a connection. Default: 4294967295."
                    ),
                    "maxRetries": _count("The most retries at once. Default: 4294967295."),
                },
            ),
        },
    )
    rate_limit = obj(
        "Rate limits of the traffic to the host.",
        {
            "local": obj(
                "Limits each proxy of the host enforces by itself (token buckets).",
                {
                    "tcp": obj(
                        "Connections per unit of time.",
                        {
                            "connections": _count("Connections allowed per unit.", minimum=1),
                            "unit": _unit(),
                            "burst": _count(
                                "Connections allowed above the rate in a short time. Default: 0."
                            ),
                        },
                        required=("connections", "unit"),
                    ),
                    "http": _http_local_rate_limit("Requests per unit of time, for every route."),
                },
            ),
            "global": _global_refused(),
        },
    )
    route = obj(
        "Settings of the requests to the host whose path matches.",
        {
            "path": string(
                "A regular expression (RE2 syntax, as Envoy reads it) the whole path matches.",
                min_length=1,
            ),
            "rateLimit": obj(
                "The route's rate limit.",
                {
                    "local": _http_local_rate_limit("Requests per unit of time on this route."),
                    "global": _global_refused(),
                },
            ),
        },
        required=("path",),
    )
    spec = obj(
        "The host and the settings of the traffic to it.",
        {
            "host": string(
                "The upstream host, an FQDN (name.namespace.svc.cluster.local for a mesh "
                "service); one UpstreamTrafficSetting per host.",
                pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$",
                max_length=253,
            ),
            "connectionSettings": connection_settings,
            "rateLimit": rate_limit,
            "httpRoutes": array(route, "Per-route settings (each path once)."),
        },
        required=("host",),
    )
    return _root(
        "UpstreamTrafficSetting sets circuit breaking and local rate limits for the traffic "
        "to one host (OSM's upstream traffic settings).",
        spec,
        spec_required=True,
    )


_BUILDERS = {
    ("TrafficTarget", "access.smi-spec.io/v1alpha3"): _traffic_target,
    ("HTTPRouteGroup", "specs.smi-spec.io/v1alpha4"): _http_route_group,
    ("TCPRoute", "specs.smi-spec.io/v1alpha4"): _tcp_route,
    ("TrafficSplit", "split.smi-spec.io/v1alpha4"): lambda: _traffic_split(True),
    ("TrafficSplit", "split.smi-spec.io/v1alpha2"): lambda: _traffic_split(False),
    ("Egress", policy.API_VERSION): _egress,
    ("IngressBackend", policy.API_VERSION): _ingress_backend,
    ("Retry", policy.API_VERSION): _retry,
    ("UpstreamTrafficSetting", policy.API_VERSION): _upstream_traffic_setting,
    ("MeshConfig", config.API_VERSION): _mesh_config,
}
SCHEMAS: tuple[tuple[str, str], ...] = tuple(_BUILDERS)
"""Every (kind, apiVersion) with a schema: the mesh's own kinds at each version served."""


def schema(kind: str, api_version: str) -> dict[str, Any]:
    """The OpenAPI v3 schema of a whole ``kind`` object at ``api_version``; the caller owns
    the returned dict. KeyError for a kind or version without one (Kubernetes' built-in
    kinds have none here)."""
    builder = _BUILDERS.get((kind, api_version))
    if builder is None:
        known = ", ".join(f"{k} {v}" for k, v in SCHEMAS)
        raise KeyError(f"no schema for {kind} {api_version}; schemas exist for: {known}")
    return builder()
