"""Invalid manifests, one mistake each: where the error points and what it says.

Every row is (manifest, field path, fragment of the message). Each manifest holds
exactly one mistake and must produce exactly one error (no cascades), at that path,
saying what would have been valid. Together the rows cover every check of the model.
"""

from __future__ import annotations

from typing import Any

import pytest

from osm.model import fields
from tests.unit.model import model_examples as ex


def head(api_version: str, kind: str, name: str, namespace: str = "shop") -> str:
    """The first lines of a manifest: apiVersion, kind and metadata."""
    metadata = f"{{name: {name}, namespace: {namespace}}}"
    return f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {metadata}\n"


NS = "apiVersion: v1\nkind: Namespace\n"
SA = "apiVersion: v1\nkind: ServiceAccount\n"
SVC = head("v1", "Service", "web")
DEP = head("apps/v1", "Deployment", "web")
POD = head("v1", "Pod", "web-1")
EP = head("v1", "Endpoints", "web")
TT = head("access.smi-spec.io/v1alpha3", "TrafficTarget", "t")
HRG = head("specs.smi-spec.io/v1alpha4", "HTTPRouteGroup", "g")
TCP = head("specs.smi-spec.io/v1alpha4", "TCPRoute", "r")
TS2 = head("split.smi-spec.io/v1alpha2", "TrafficSplit", "s")
TS4 = head("split.smi-spec.io/v1alpha4", "TrafficSplit", "s")
MC = head("config.openservicemesh.io/v1alpha2", "MeshConfig", "osm-mesh-config", "osm-system")

# Valid bodies that the rows below break in one place.
PORTS = "spec: {selector: {app: web}, ports: [%s]}"
POD_SPEC = (
    "spec:\n  selector: {matchLabels: {app: web}}\n"
    "  template:\n    metadata: {labels: {app: web}}\n    spec: %s"
)
CONTAINER = "{containers: [%s]}"
TT_SPEC = "spec:\n  destination: %s\n  sources: %s\n  rules: %s\n"
DEST = "{kind: ServiceAccount, name: web}"
SRCS = "[{kind: ServiceAccount, name: client}]"
RULES = "[{kind: HTTPRouteGroup, name: g}]"
MATCH = "spec: {matches: [%s]}"
BACKENDS = "spec: {service: web, backends: [%s]}"
V1, V2 = "{service: web-v1, weight: 50}", "{service: web-v2, weight: 50}"


def deployment(container: str) -> str:
    return DEP + POD_SPEC % (CONTAINER % container)


def target(destination: str = DEST, sources: str = SRCS, rules: str = RULES) -> str:
    return TT + TT_SPEC % (destination, sources, rules)


def mesh(section: str, body: str) -> str:
    return MC + f"spec: {{{section}: {body}}}"


def bad(manifest: str, path: str, fragment: str, id: str) -> Any:
    return pytest.param(manifest, path, fragment, id=id)


ROWS = [
    # -- the document itself -------------------------------------------------------------
    bad(
        "",
        "",
        "is empty; expected an object with apiVersion, kind and metadata",
        "an empty document given on its own is an error",
    ),
    bad(
        "- a list\n- of things", "", "must be an object, not a list", "a document must be an object"
    ),
    bad(
        "apiVersion: v1\nmetadata: {name: x}",
        "kind",
        "required field is missing",
        "kind is required",
    ),
    bad(
        "kind: Namespace\nmetadata: {name: x}",
        "apiVersion",
        "required field is missing",
        "apiVersion is required",
    ),
    bad(
        "apiVersion: v1\nkind: 7\nmetadata: {name: x}",
        "kind",
        "must be a string, not an integer",
        "kind must be a string",
    ),
    bad(
        "apiVersion: v1\nkind: Sevice\nmetadata: {name: x}",
        "kind",
        'unknown kind "Sevice" (did you mean "Service"?); supported kinds: Namespace, '
        "ServiceAccount, Service, Deployment, Pod, Endpoints, Secret, ConfigMap, "
        "CustomResourceDefinition, ClusterRole, ClusterRoleBinding, Role, RoleBinding, "
        "MutatingWebhookConfiguration, ValidatingWebhookConfiguration, "
        "TrafficTarget, HTTPRouteGroup, "
        "TCPRoute, TrafficSplit, Egress, IngressBackend, Retry, "
        "UpstreamTrafficSetting, MeshConfig",
        "an unknown kind names the supported ones with a suggestion",
    ),
    bad(
        "apiVersion: specs.smi-spec.io/v1alpha4\nkind: UDPRoute\nmetadata: {name: x}",
        "kind",
        "UDPRoute is not supported (the mesh, like OSM, proxies TCP only); supported kinds:",
        "a UDPRoute says it is unsupported rather than suggesting TCPRoute",
    ),
    bad(
        TT.replace("v1alpha3", "v1alpha2") + "spec: {}",
        "apiVersion",
        'TrafficTarget is not supported in "access.smi-spec.io/v1alpha2"; '
        "supported: access.smi-spec.io/v1alpha3",
        "an unsupported apiVersion names the supported one",
    ),
    bad(
        TS2.replace("v1alpha2", "v1alpha3") + "spec: {}",
        "apiVersion",
        "supported: split.smi-spec.io/v1alpha4, split.smi-spec.io/v1alpha2",
        "an unsupported TrafficSplit version names both supported ones",
    ),
    bad(
        DEP.replace("apps/v1", "extensions/v1beta1") + "spec: {}",
        "apiVersion",
        "supported: apps/v1",
        "a Deployment must be apps/v1",
    ),
    bad(
        TCP + "spec: {matches: {ports: []}}\nextra: 1",
        "extra",
        "unknown field; valid fields here: apiVersion, kind, metadata, spec, status",
        "an unknown top-level field of a CRD kind is an error",
    ),
    # -- metadata ------------------------------------------------------------------------
    bad(
        NS + "metadata: {}",
        "metadata.name",
        "required field is missing (expected a string)",
        "a name is required",
    ),
    bad(
        NS + "spec: {}",
        "metadata",
        "required field is missing (expected an object)",
        "metadata is required",
    ),
    bad(
        NS + "metadata: [name, x]",
        "metadata",
        "must be an object, not a list",
        "metadata must be an object",
    ),
    bad(
        NS + "metadata: {name: Web_1}",
        "metadata.name",
        '"Web_1" is not a valid name: use at most 253 lowercase letters',
        "a name must be a DNS subdomain",
    ),
    bad(
        NS + "metadata: {name: shop, namespace: shop}",
        "metadata.namespace",
        "this kind is cluster-scoped and takes no namespace",
        "a Namespace takes no namespace",
    ),
    bad(
        SA + "metadata: {name: web, namespace: Shop}",
        "metadata.namespace",
        '"Shop" is not a valid name: use at most 63 lowercase letters',
        "a namespace must be a DNS label",
    ),
    bad(
        SA + "metadata: {name: web, labels: {-app: web}}",
        "metadata.labels.-app",
        'label key "-app" is not valid: at most 63 letters',
        "a label key must start with a letter or digit",
    ),
    bad(
        SA + "metadata: {name: web, labels: {Bad_Prefix/app: web}}",
        "metadata.labels.Bad_Prefix/app",
        "the prefix must be a DNS subdomain",
        "a label key prefix must be a DNS subdomain",
    ),
    bad(
        SA + "metadata: {name: web, labels: {app: web app}}",
        "metadata.labels.app",
        'label value "web app" is not valid',
        "a label value has no spaces",
    ),
    bad(
        SA + "metadata: {name: web, labels: {version: 2}}",
        "metadata.labels.version",
        "must be a string, not an integer (quote numbers and booleans)",
        "a label value must be a quoted string",
    ),
    bad(
        SA + "metadata: {name: web, annotations: {enabled: true}}",
        "metadata.annotations.enabled",
        "must be a string, not a boolean",
        "an annotation value must be a string",
    ),
    bad(
        SA + "metadata: {name: web, labels: [app]}",
        "metadata.labels",
        "must be an object of strings, not a list",
        "labels must be a map",
    ),
    # -- Service -------------------------------------------------------------------------
    bad(SVC, "spec", "required field is missing (expected an object)", "a Service needs a spec"),
    bad(
        SVC + "spec: {selector: {app: web}}",
        "spec.ports",
        "a Service needs at least one port",
        "a Service needs ports",
    ),
    bad(
        SVC + "spec: {ports: {port: 80}}",
        "spec.ports",
        "must be a list, not an object",
        "ports must be a list",
    ),
    bad(
        SVC + PORTS % "80",
        "spec.ports[0]",
        "must be an object, not an integer",
        "a port must be an object",
    ),
    bad(
        SVC + PORTS % "{name: http}",
        "spec.ports[0].port",
        "required field is missing (expected an integer from 1 to 65535)",
        "a port needs a number",
    ),
    bad(
        SVC + PORTS % "{port: 0}",
        "spec.ports[0].port",
        "0 is out of range; expected an integer from 1 to 65535",
        "a port is at least 1",
    ),
    bad(
        SVC + PORTS % "{port: 65536}",
        "spec.ports[0].port",
        "65536 is out of range",
        "a port is at most 65535",
    ),
    bad(
        SVC + PORTS % '{port: "80"}',
        "spec.ports[0].port",
        "must be an integer from 1 to 65535, not a string",
        "a port number is not a string",
    ),
    bad(
        SVC + PORTS % "{port: 80.5}",
        "spec.ports[0].port",
        "not a number",
        "a port number is a whole number",
    ),
    bad(
        SVC + PORTS % "{name: a, port: 80}, {port: 81}",
        "spec.ports[1].name",
        "required field is missing",
        "with several ports each needs a name",
    ),
    bad(
        SVC + PORTS % "{name: http, port: 80}, {name: http, port: 81}",
        "spec.ports[1].name",
        'duplicate port name "http"; port names must be unique',
        "port names are unique",
    ),
    bad(
        SVC + PORTS % "{name: a, port: 80}, {name: b, port: 80}",
        "spec.ports[1].port",
        "duplicate port 80/TCP",
        "port numbers are unique per protocol",
    ),
    bad(
        SVC + PORTS % "{name: HTTP, port: 80}",
        "spec.ports[0].name",
        '"HTTP" is not a valid name',
        "a port name is a DNS label",
    ),
    bad(
        SVC + PORTS % "{port: 80, protocol: tcp}",
        "spec.ports[0].protocol",
        '"tcp" is not valid (did you mean "TCP"?); valid values: "TCP", "UDP", "SCTP"',
        "a protocol is upper case, with a suggestion",
    ),
    bad(
        SVC + PORTS % "{port: 80, appProtocol: https}",
        "spec.ports[0].appProtocol",
        'valid values: "http", "tcp", "tcp-server-first", "grpc"',
        "an appProtocol must be one the mesh proxies",
    ),
    bad(
        SVC + PORTS % "{port: 80, targetPort: http_port}",
        "spec.ports[0].targetPort",
        '"http_port" is not a port number or a port name',
        "a targetPort name is an IANA name",
    ),
    bad(
        SVC + PORTS % "{port: 80, targetPort: 1234}".replace("1234", "70000"),
        "spec.ports[0].targetPort",
        "70000 is out of range",
        "a targetPort is at most 65535",
    ),
    bad(
        SVC + PORTS % '{port: 80, targetPort: "0"}',
        "spec.ports[0].targetPort",
        "0 is out of range",
        "a targetPort written as a string is range-checked too",
    ),
    bad(
        SVC + PORTS % "{port: 80, targetPort: [80]}",
        "spec.ports[0].targetPort",
        "must be an integer from 1 to 65535, not a list",
        "a targetPort is not a list",
    ),
    bad(
        SVC + "spec: {clusterIP: 10.0.0.300, ports: [{port: 80}]}",
        "spec.clusterIP",
        '"10.0.0.300" is not an IP address or "None"',
        "a clusterIP is an IP address",
    ),
    bad(
        SVC + "spec: {type: Internal, ports: [{port: 80}]}",
        "spec.type",
        'valid values: "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"',
        "a Service type is one of Kubernetes' four",
    ),
    bad(
        SVC + "spec: {selector: {app: -web}, ports: [{port: 80}]}",
        "spec.selector.app",
        'label value "-web" is not valid',
        "a selector value is a label value",
    ),
    # -- Deployment ----------------------------------------------------------------------
    bad(
        DEP
        + "spec:\n  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: w}]}}",
        "spec.selector",
        "required field is missing",
        "a Deployment needs a selector",
    ),
    bad(
        DEP
        + POD_SPEC.replace("{app: web}}\n  template", "{app: web, tier: front}}\n  template")
        % (CONTAINER % "{name: web}"),
        "spec.template.metadata.labels",
        "must match spec.selector.matchLabels {'app': 'web', 'tier': 'front'} "
        "(the Deployment would not select its own pods)",
        "a Deployment's selector must match its template labels",
    ),
    bad(
        DEP
        + POD_SPEC.replace("{matchLabels: {app: web}}", "{matchLabels: {}}")
        % (CONTAINER % "{name: web}"),
        "spec.selector.matchLabels",
        "required: a Deployment selects its pods by label",
        "a Deployment's selector needs labels",
    ),
    bad(
        DEP
        + POD_SPEC.replace("{app: web}}\n", "{app: web}, matchExpressions: []}\n", 1)
        % (CONTAINER % "{name: web}"),
        "spec.selector.matchExpressions",
        "is not supported; use matchLabels",
        "a Deployment selector has no matchExpressions",
    ),
    bad(
        (DEP + POD_SPEC % (CONTAINER % "{name: web}")).replace(
            "spec:\n  selector", "spec:\n  replicas: -1\n  selector"
        ),
        "spec.replicas",
        "-1 is out of range; expected an integer ≥ 0",
        "replicas are not negative",
    ),
    bad(
        DEP + POD_SPEC.replace("\n    spec: %s", ""),
        "spec.template.spec",
        "required field is missing",
        "a pod template needs a spec",
    ),
    bad(
        DEP + POD_SPEC % "{containers: []}",
        "spec.template.spec.containers",
        "must have at least one item",
        "a pod has at least one container",
    ),
    bad(
        deployment("{image: web}"),
        "spec.template.spec.containers[0].name",
        "required field is missing",
        "a container needs a name",
    ),
    bad(
        deployment("{name: web}, {name: web}"),
        "spec.template.spec.containers[1].name",
        'duplicate container name "web"',
        "container names are unique",
    ),
    bad(
        DEP + POD_SPEC % "{serviceAccountName: Web, containers: [{name: web}]}",
        "spec.template.spec.serviceAccountName",
        '"Web" is not a valid name',
        "a service account name is a DNS label",
    ),
    bad(
        deployment("{name: web, env: [{name: A, valueFrom: {secretKeyRef: {name: s}}}]}"),
        "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key",
        "required field is missing",
        "a secretKeyRef names a key",
    ),
    bad(
        deployment("{name: web, env: [{value: x}]}"),
        "spec.template.spec.containers[0].env[0].name",
        "required field is missing",
        "an env var needs a name",
    ),
    bad(
        deployment("{name: web, ports: [{containerPort: 0}]}"),
        "spec.template.spec.containers[0].ports[0].containerPort",
        "0 is out of range",
        "a container port is at least 1",
    ),
    bad(
        deployment("{name: web, command: [run, 1]}"),
        "spec.template.spec.containers[0].command[1]",
        "must be a string, not an integer",
        "a command is a list of strings",
    ),
    bad(
        deployment("{name: web, readinessProbe: {httpGet: {port: 80}, tcpSocket: {port: 80}}}"),
        "spec.template.spec.containers[0].readinessProbe",
        "a probe needs exactly one of httpGet, tcpSocket, exec or grpc",
        "a probe has exactly one handler",
    ),
    bad(
        deployment("{name: web, readinessProbe: {httpGet: {path: /ready}}}"),
        "spec.template.spec.containers[0].readinessProbe.httpGet.port",
        "required field is missing (expected a port number or name)",
        "an HTTP probe needs a port",
    ),
    bad(
        deployment("{name: web, readinessProbe: {httpGet: {port: 80, scheme: TCP}}}"),
        "spec.template.spec.containers[0].readinessProbe.httpGet.scheme",
        'valid values: "HTTP", "HTTPS"',
        "a probe scheme is HTTP or HTTPS",
    ),
    bad(
        deployment("{name: web, readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 0}}"),
        "spec.template.spec.containers[0].readinessProbe.periodSeconds",
        "0 is out of range; expected an integer ≥ 1",
        "a probe period is at least 1s",
    ),
    bad(
        deployment("{name: web, readinessProbe: {exec: {}}}"),
        "spec.template.spec.containers[0].readinessProbe.exec.command",
        "required field is missing (expected a list)",
        "an exec probe needs a command",
    ),
    # -- Pod and Endpoints -----------------------------------------------------------------
    bad(POD + "spec: {}", "spec.containers", "required field is missing", "a pod needs containers"),
    bad(
        EP + "subsets: [{addresses: [{ip: web-1}]}]",
        "subsets[0].addresses[0].ip",
        '"web-1" is not an IP address',
        "an endpoint address is an IP",
    ),
    bad(
        EP + "subsets: [{ports: [{name: http}]}]",
        "subsets[0].ports[0].port",
        "required field is missing",
        "an endpoint port needs a number",
    ),
    bad(
        EP + "subsets: [{ports: [{port: 80, protocol: HTTP}]}]",
        "subsets[0].ports[0].protocol",
        '"HTTP" is not valid',
        "an endpoint port protocol is TCP, UDP or SCTP",
    ),
    # -- TrafficTarget ---------------------------------------------------------------------
    bad(
        target(destination="{kind: ServiceAccount, name: web, namespace: other}"),
        "spec.destination.namespace",
        '"other" must equal the TrafficTarget\'s own namespace "shop"',
        "a traffic target's destination is in its own namespace",
    ),
    bad(
        target(destination="{kind: ServiceAccount, name: web, port: 9091}"),
        "spec.destination.port",
        "was removed in access.smi-spec.io/v1alpha3; restrict ports with a TCPRoute rule",
        "destination.port (the SMI conformance suite's quirk) is refused in v1alpha3",
    ),
    bad(
        target(destination="{kind: ServiceAccount}"),
        "spec.destination.name",
        "required field is missing",
        "a destination needs a name",
    ),
    bad(
        TT + "spec: {sources: " + SRCS + ", rules: " + RULES + "}",
        "spec.destination",
        "required field is missing (expected an object)",
        "a traffic target needs a destination",
    ),
    bad(
        target(sources="[]"),
        "spec.sources",
        "must have at least one item",
        "a traffic target needs a source",
    ),
    bad(
        target(sources="[{kind: Group, name: devs}]"),
        "spec.sources[0].kind",
        '"Group" is not valid; valid values: "ServiceAccount"',
        "a source is a ServiceAccount",
    ),
    bad(
        target(sources="[{kind: ServiceAccount, name: a, namepsace: b}]"),
        "spec.sources[0].namepsace",
        'unknown field (did you mean "namespace"?); valid fields here: kind, name, namespace',
        "an unknown field in a source suggests the right one",
    ),
    bad(
        target(sources="[{kind: ServiceAccount, name: a, namespace: B}]"),
        "spec.sources[0].namespace",
        '"B" is not a valid name',
        "a source namespace is a label",
    ),
    bad(
        TT + "spec: {destination: " + DEST + ", sources: " + SRCS + "}",
        "spec.rules",
        "required field is missing (expected a list)",
        "a traffic target needs rules",
    ),
    bad(
        target(rules="[{kind: UDPRoute, name: dns}]"),
        "spec.rules[0].kind",
        "UDPRoute is not supported: the mesh, like OSM, proxies TCP only; valid values: "
        '"HTTPRouteGroup", "TCPRoute"',
        "a UDPRoute rule is refused with the reason",
    ),
    bad(
        target(rules="[{kind: HTTPRouteGroups, name: g}]"),
        "spec.rules[0].kind",
        '"HTTPRouteGroups" is not valid (did you mean "HTTPRouteGroup"?)',
        "a misspelled rule kind gets a suggestion",
    ),
    bad(
        target(rules="[{kind: TCPRoute, name: r, matches: [a]}]"),
        "spec.rules[0].matches",
        "applies to HTTPRouteGroup rules only",
        "a TCPRoute rule has no named matches",
    ),
    bad(
        target(rules="[{kind: HTTPRouteGroup, name: g, matchs: [a]}]"),
        "spec.rules[0].matchs",
        'unknown field (did you mean "matches"?)',
        "a misspelled matches gets a suggestion",
    ),
    bad(
        target(rules="[{kind: HTTPRouteGroup, name: g, matches: a}]"),
        "spec.rules[0].matches",
        "must be a list, not a string",
        "a rule's matches are a list",
    ),
    # -- HTTPRouteGroup --------------------------------------------------------------------
    bad(
        HRG + "matches: [{name: a, pathRegex: /metrics}]",
        "matches",
        "belongs under spec in specs.smi-spec.io/v1alpha4 (spec.matches)",
        "matches outside spec (the SMI conformance suite's quirk) is one clear error",
    ),
    bad(
        HRG + "spec: {matches: []}",
        "spec.matches",
        "must have at least one item",
        "a route group has at least one match",
    ),
    bad(
        HRG + "spec: {}", "spec.matches", "required field is missing", "a route group needs matches"
    ),
    bad(
        HRG + MATCH % "{pathRegex: /}",
        "spec.matches[0].name",
        "required field is missing",
        "a match needs a name",
    ),
    bad(
        HRG + MATCH % "{name: a}, {name: a}",
        "spec.matches[1].name",
        'duplicate match name "a"; names must be unique',
        "match names are unique",
    ),
    bad(
        HRG + MATCH % '{name: a, pathRegex: "/books("}',
        "spec.matches[0].pathRegex",
        '"/books(" is not a valid regular expression for Envoy (RE2): missing ): /books(',
        "a bad path regex is reported with RE2's reason",
    ),
    bad(
        HRG + MATCH % '{name: a, pathRegex: "a{1001}"}',
        "spec.matches[0].pathRegex",
        "is not a valid regular expression for Envoy (RE2): invalid repetition size: {1001}",
        "a regex with a huge repeat is an error, not a crash",
    ),
    bad(
        HRG + MATCH % "{name: a, methods: [get]}",
        "spec.matches[0].methods[0]",
        '"get" is not valid (did you mean "GET"?); valid values: "*", "GET", "HEAD", "PUT", '
        '"POST", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"',
        "a lower-case method suggests the upper-case one",
    ),
    bad(
        HRG + MATCH % "{name: a, methods: GET}",
        "spec.matches[0].methods",
        "must be a list, not a string",
        "methods are a list",
    ),
    bad(
        HRG + MATCH % "{name: a, pathregex: /}",
        "spec.matches[0].pathregex",
        'unknown field (did you mean "pathRegex"?); valid fields here: headers, methods, name, '
        "pathRegex",
        "a misspelled pathRegex is not silently dropped",
    ),
    bad(
        HRG + MATCH % '{name: a, headers: {x-id: "[0-9"}}',
        "spec.matches[0].headers.x-id",
        '"[0-9" is not a valid regular expression',
        "a bad header regex in the map form",
    ),
    bad(
        HRG + MATCH % '{name: a, headers: [{x-a: a}, {x-id: "[0-9"}]}',
        "spec.matches[0].headers[1].x-id",
        '"[0-9" is not a valid regular expression',
        "a bad header regex in the list form points at its item",
    ),
    bad(
        HRG + MATCH % "{name: a, headers: [{x-a: a, x-b: b}]}",
        "spec.matches[0].headers[0]",
        'each item must be an object with exactly one header name, e.g. {"x-beta": "true"}',
        "a header list item has exactly one key",
    ),
    bad(
        HRG + MATCH % "{name: a, headers: x-beta}",
        "spec.matches[0].headers",
        "must be a map of header name to regex, or a list of such single-key maps, not a string",
        "headers are a map or a list",
    ),
    bad(
        HRG + MATCH % "{name: a, headers: {x-n: 1}}",
        "spec.matches[0].headers.x-n",
        "must be a string (a regex), not an integer",
        "a header value is a string",
    ),
    # -- TCPRoute --------------------------------------------------------------------------
    bad(
        TCP + "spec: {matches: [{ports: [80]}]}",
        "spec.matches",
        "must be an object {name, ports} in specs.smi-spec.io/v1alpha4, not a list",
        "a TCPRoute's matches is an object, not a list",
    ),
    bad(
        TCP + "spec: {matches: {name: a}}",
        "spec.matches.ports",
        "required field is missing; use ports: [] for every port",
        "a TCPRoute needs ports, which may be empty",
    ),
    bad(TCP + "spec: {}", "spec.matches", "required field is missing", "a TCPRoute needs matches"),
    bad(
        TCP + "metadata: {name: r}", "spec", "required field is missing", "a TCPRoute needs a spec"
    ),
    bad(
        TCP + "spec: {matches: {ports: [80, 0]}}",
        "spec.matches.ports[1]",
        "0 is out of range; expected an integer from 1 to 65535",
        "a TCPRoute port is at least 1",
    ),
    bad(
        TCP + "spec: {matches: {ports: [http]}}",
        "spec.matches.ports[0]",
        "must be an integer from 1 to 65535, not a string",
        "a TCPRoute port is a number",
    ),
    bad(
        TCP + "spec: {matches: {nmae: a, ports: []}}",
        "spec.matches.nmae",
        'unknown field (did you mean "name"?); valid fields here: name, ports',
        "a misspelled match name gets a suggestion",
    ),
    # -- TrafficSplit ----------------------------------------------------------------------
    bad(
        TS2 + "spec: {service: web, matches: [{kind: HTTPRouteGroup, name: g}], "
        f"backends: [{V1}]}}",
        "spec.matches",
        "needs split.smi-spec.io/v1alpha4; v1alpha2 has no matches",
        "a v1alpha2 traffic split has no matches",
    ),
    bad(
        TS2 + BACKENDS % "{service: web-v1, weight: 0}, {service: web-v2, weight: 0}",
        "spec.backends",
        "at least one backend needs a weight above 0",
        "a traffic split whose weights are all zero sends nothing",
    ),
    bad(
        TS2 + BACKENDS % f"{V1}, {V1}",
        "spec.backends[1].service",
        'duplicate backend "web-v1"; list each service once',
        "backends are listed once",
    ),
    bad(
        TS2 + BACKENDS % "{service: web-v1, weight: -1}",
        "spec.backends[0].weight",
        "-1 is out of range; expected an integer from 0 to 2147483647",
        "a weight is not negative",
    ),
    bad(
        TS2 + BACKENDS % "{service: web-v1, weight: 3000000000}",
        "spec.backends[0].weight",
        "3000000000 is out of range; expected an integer from 0 to 2147483647",
        "a weight fits the CRD's int32",
    ),
    bad(
        TS2 + BACKENDS % '{service: web-v1, weight: "50%"}',
        "spec.backends[0].weight",
        "must be an integer from 0 to 2147483647, not a string",
        "a weight is a whole number",
    ),
    bad(
        TS2 + BACKENDS % "{service: web-v1}",
        "spec.backends[0].weight",
        "required field is missing (expected an integer from 0 to 2147483647)",
        "a backend needs a weight",
    ),
    bad(
        TS2 + BACKENDS % "{service: Web_v1, weight: 1}",
        "spec.backends[0].service",
        '"Web_v1" is not a valid name',
        "a backend is a Service name",
    ),
    bad(
        TS2 + "spec: {service: web, backends: []}",
        "spec.backends",
        "must have at least one item",
        "a traffic split needs a backend",
    ),
    bad(
        TS2 + f"spec: {{backends: [{V1}]}}",
        "spec.service",
        "required field is missing (expected a string)",
        "a traffic split needs an apex service",
    ),
    bad(
        TS2 + f"spec: {{service: Web_Store, backends: [{V1}]}}",
        "spec.service",
        '"Web_Store" is not a valid name',
        "the apex is a Service name",
    ),
    bad(
        TS4 + f"spec: {{service: web, matches: [{{kind: TCPRoute, name: r}}], backends: [{V1}]}}",
        "spec.matches[0].kind",
        'valid values: "HTTPRouteGroup"',
        "a v1alpha4 traffic split matches HTTPRouteGroups only",
    ),
    # -- MeshConfig ------------------------------------------------------------------------
    bad(
        mesh("traffic", "{enablePermissiveTrafficPolicyMode: yes please}"),
        "spec.traffic.enablePermissiveTrafficPolicyMode",
        "must be true or false, not a string",
        "a mesh config flag is a boolean",
    ),
    bad(
        mesh("traffic", "{enableEgres: true}"),
        "spec.traffic.enableEgres",
        'unknown field (did you mean "enableEgress"?)',
        "a misspelled mesh config flag",
    ),
    bad(
        MC + "spec: {sidecars: {}}",
        "spec.sidecars",
        'unknown field (did you mean "sidecar"?); valid fields here: certificate, featureFlags, '
        "observability, sidecar, traffic",
        "a misspelled mesh config section lists the valid ones",
    ),
    bad(
        mesh("certificate", "{certKeyBitSize: 1024}"),
        "spec.certificate.certKeyBitSize",
        "1024 is out of range; expected an integer from 2048 to 4096",
        "keys are 2048-4096 bits",
    ),
    bad(
        mesh("certificate", "{serviceCertValidityDuration: 1 day}"),
        "spec.certificate.serviceCertValidityDuration",
        '"1 day" is not a duration; expected e.g. "24h", "90m", "1h30m"',
        "a validity is a Go duration",
    ),
    bad(
        mesh("certificate", "{serviceCertValidityDuration: 24}"),
        "spec.certificate.serviceCertValidityDuration",
        "must be a string, not an integer",
        "a duration is a string with a unit",
    ),
    bad(
        mesh("certificate", "{serviceCertValidityDuration: 30s}"),
        "spec.certificate.serviceCertValidityDuration",
        "must be at least 1m; certificates are renewed at half of their lifetime",
        "a validity is at least a minute",
    ),
    bad(
        mesh("sidecar", "{configResyncInterval: 5}"),
        "spec.sidecar.configResyncInterval",
        "must be a string",
        "a resync interval is a duration string",
    ),
    bad(
        mesh("sidecar", "{configResyncInterval: 5 m}"),
        "spec.sidecar.configResyncInterval",
        '"5 m" is not a duration',
        "a duration has no spaces",
    ),
    bad(
        mesh("sidecar", "{tlsMinProtocolVersion: TLSv1_4}"),
        "spec.sidecar.tlsMinProtocolVersion",
        '"TLSv1_4" is not valid (did you mean "TLSv1_3"?); valid values: "TLS_AUTO", "TLSv1_0", '
        '"TLSv1_1", "TLSv1_2", "TLSv1_3"',
        "a TLS version is one of OSM's names",
    ),
    bad(
        mesh("sidecar", "{tlsMinProtocolVersion: TLSv1_3, tlsMaxProtocolVersion: TLSv1_2}"),
        "spec.sidecar.tlsMinProtocolVersion",
        "must not be above tlsMaxProtocolVersion",
        "the minimum TLS version is not above the maximum",
    ),
    bad(
        mesh("sidecar", "{localProxyMode: podip}"),
        "spec.sidecar.localProxyMode",
        '"podip" is not valid (did you mean "PodIP"?); valid values: "Localhost", "PodIP"',
        "a local proxy mode is Localhost or PodIP",
    ),
    bad(
        mesh("sidecar", "{logLevel: verbose}"),
        "spec.sidecar.logLevel",
        '"verbose" is not valid; valid values: "trace", "debug"',
        "a log level is Envoy's",
    ),
    bad(
        mesh("sidecar", "{maxDataPlaneConnections: -1}"),
        "spec.sidecar.maxDataPlaneConnections",
        "-1 is out of range",
        "a connection limit is not negative",
    ),
    bad(
        mesh("observability", "{osmLogLevel: loud}"),
        "spec.observability.osmLogLevel",
        '"loud" is not valid',
        "the control plane's log level is checked",
    ),
    bad(
        mesh("observability", "{tracing: {port: 0}}"),
        "spec.observability.tracing.port",
        "0 is out of range",
        "a tracing port is at least 1",
    ),
    bad(
        mesh("observability", "{tracing: {samplingPercentage: 101}}"),
        "spec.observability.tracing.samplingPercentage",
        "101 is out of range; expected a number from 0 to 100",
        "a sampling percentage is at most 100",
    ),
    bad(
        mesh("observability", "{tracing: {samplingPercentage: -0.5}}"),
        "spec.observability.tracing.samplingPercentage",
        "-0.5 is out of range",
        "a sampling percentage is not negative",
    ),
    bad(
        mesh("observability", '{tracing: {samplingPercentage: "1%"}}'),
        "spec.observability.tracing.samplingPercentage",
        "must be a number from 0 to 100",
        "a sampling percentage is a number, not a string with a percent sign",
    ),
    bad(
        mesh("observability", "{tracing: {endpoint: api/v2/spans}}"),
        "spec.observability.tracing.endpoint",
        'must be a path starting with "/"',
        "the collector's endpoint is a path",
    ),
    bad(
        mesh("observability", "{tracing: {enabled: true}}"),
        "spec.observability.tracing.enabled",
        'unknown field (did you mean "enable"?)',
        "a misspelled tracing flag",
    ),
    bad(
        mesh("traffic", "{outboundIPRangeExclusionList: [10.0.0.0/33]}"),
        "spec.traffic.outboundIPRangeExclusionList[0]",
        '"10.0.0.0/33" is not a CIDR; expected e.g. "10.0.0.0/8"',
        "a bad prefix length",
    ),
    bad(
        mesh("traffic", "{outboundIPRangeInclusionList: [example.com]}"),
        "spec.traffic.outboundIPRangeInclusionList[0]",
        '"example.com" is not a CIDR',
        "a host name is not a CIDR",
    ),
    bad(
        mesh("traffic", "{outboundPortExclusionList: [0]}"),
        "spec.traffic.outboundPortExclusionList[0]",
        "0 is out of range",
        "an excluded port is at least 1",
    ),
    bad(
        mesh("traffic", "{inboundPortExclusionList: 80}"),
        "spec.traffic.inboundPortExclusionList",
        "must be a list, not an integer",
        "an exclusion list is a list",
    ),
    bad(
        mesh("featureFlags", "{enableWASMStats: 1}"),
        "spec.featureFlags.enableWASMStats",
        "must be true or false, not an integer",
        "a feature flag is a boolean",
    ),
    bad(
        MC + "spec: {sidecar: []}",
        "spec.sidecar",
        "must be an object, not a list",
        "a mesh config section is an object",
    ),
]


@pytest.mark.parametrize(("manifest", "path", "fragment"), ROWS)
def test_an_invalid_manifest_gives_one_error(manifest: str, path: str, fragment: str) -> None:
    resource, problems = ex.parse(manifest)
    assert resource is None
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.path, fragment in p.message) for p in errors] == [(path, True)], "\n".join(
        f"{p.path!r}: {p.message}" for p in errors
    )


def test_errors_carry_the_object_they_belong_to() -> None:
    _, problems = ex.parse(SVC + PORTS % "{port: 0}")
    assert [(p.kind, p.namespace, p.name) for p in problems] == [("Service", "shop", "web")]


def test_an_object_with_several_mistakes_reports_each() -> None:
    _, problems = ex.parse(SVC + PORTS % "{name: HTTP, port: 0, protocol: tcp}")
    assert sorted(p.path for p in problems) == [
        "spec.ports[0].name",
        "spec.ports[0].port",
        "spec.ports[0].protocol",
    ]


def test_a_misspelled_required_field_is_reported_as_unknown_and_as_missing() -> None:
    _, problems = ex.parse(TS2 + BACKENDS % "{service: web-v1, weigth: 1}")
    assert sorted((p.path, p.message) for p in problems) == [
        (
            "spec.backends[0].weight",
            "required field is missing (expected an integer from 0 to 2147483647)",
        ),
        (
            "spec.backends[0].weigth",
            'unknown field (did you mean "weight"?); valid fields here: service, weight',
        ),
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("24h", 86400.0, id="hours"),
        pytest.param("1h30m", 5400.0, id="hours and minutes"),
        pytest.param("90m", 5400.0, id="minutes"),
        pytest.param("1.5h", 5400.0, id="a fraction"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("0s", 0.0, id="zero seconds"),
        pytest.param("0", 0.0, id="a bare zero, as Go allows"),
        pytest.param("1h", 3600.0, id="one hour"),
        pytest.param("", None, id="nothing is not a duration"),
        pytest.param("24", None, id="a number without a unit is not a duration"),
        pytest.param("1d", None, id="days are not a Go unit"),
        pytest.param("h", None, id="a unit without a number is not a duration"),
        pytest.param("1h 30m", None, id="a space is not allowed"),
        pytest.param("-1h", None, id="a negative duration is refused"),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert fields.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(86400.0, "24h0m0s", id="a day prints in hours"),
        pytest.param(90.0, "1m30s", id="minutes and seconds"),
        pytest.param(0.5, "500ms", id="below a second in milliseconds"),
        pytest.param(0.0, "0s", id="zero"),
        pytest.param(7.0, "7s", id="seconds"),
    ],
)
def test_format_duration_prints_like_go(seconds: float, text: str) -> None:
    assert fields.format_duration(seconds) == text
    assert fields.parse_duration(text) == seconds
