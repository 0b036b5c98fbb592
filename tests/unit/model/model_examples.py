"""Valid example manifests, one or more per kind, shared by the model's tests.

Each is YAML text as a user would write it. The property tests mutate them; the
valid-manifest tests assert what they parse to.
"""

from __future__ import annotations

from typing import Any

import yaml

from osm.model import kinds
from osm.model.errors import Problem
from osm.model.meta import Resource

NAMESPACE = """
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations: {openservicemesh.io/sidecar-injection: enabled}
"""

SERVICE_ACCOUNT = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
"""

SERVICE_MINIMAL = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 8080}]
"""

SERVICE_FULL = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  selector: {app: web, version: v1}
  ports:
  - {name: http, port: 80, targetPort: http-alt, appProtocol: http}
  - {name: metrics, port: 9090, targetPort: "9091", protocol: TCP, appProtocol: tcp}
  - {name: dns, port: 53, protocol: UDP, appProtocol: tcp}
"""

DEPLOYMENT_MINIMAL = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers: [{name: web, image: shop/web:1.0}]
"""

DEPLOYMENT_FULL = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {openservicemesh.io/sidecar-injection: disabled}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        command: [python3, -m, web]
        args: [--port, "8080"]
        env: [{name: PORT, value: "8080"}, {name: EMPTY}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 2
      - name: sidecar
        readinessProbe: {tcpSocket: {port: 9000}}
      - name: checker
        readinessProbe: {exec: {command: [cat, /tmp/ready]}, failureThreshold: 5}
"""

POD = """
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  containers: [{name: web, ports: [{containerPort: 8080}]}]
status:
  phase: Running
  podIP: 10.1.0.7
  conditions: [{type: Initialized, status: "True"}, {type: Ready, status: "True"}]
"""

POD_FULL = """
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  hostNetwork: false
  nodeName: node-1
  securityContext: {runAsUser: 1000, runAsGroup: 3000, runAsNonRoot: true}
  initContainers:
  - name: setup
    command: [sh, -c, "cp /config/* /work"]
    securityContext:
      runAsUser: 0
      runAsNonRoot: false
      privileged: true
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
    volumeMounts: [{name: work, mountPath: /work}, {name: config, mountPath: /config}]
  containers:
  - name: web
    command: [python3, -m, web]
    workingDir: /work
    envFrom:
    - configMapRef: {name: web-config}
    - secretRef: {name: web-secrets, optional: true}
      prefix: SECRET_
    env:
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: APP, valueFrom: {fieldRef: {apiVersion: v1, fieldPath: "metadata.labels['app']"}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: web-secrets, key: token}}}
    - {name: MODE, valueFrom: {configMapKeyRef: {name: web-config, key: mode, optional: true}}}
    - {name: URL, value: "http://$(POD_IP):8080"}
    volumeMounts:
    - {name: config, mountPath: /etc/web, readOnly: true}
    - {name: certs, mountPath: /etc/certs/tls.crt, subPath: tls.crt}
    - {name: work, mountPath: /work}
    livenessProbe:
      httpGet:
        path: /live
        port: 8080
        host: 127.0.0.1
        httpHeaders: [{name: X-Probe, value: live}]
    readinessProbe: {tcpSocket: {port: 8080}, successThreshold: 2}
    startupProbe: {grpc: {port: 9090, service: web}, failureThreshold: 30}
  volumes:
  - name: config
    configMap:
      name: web-config
      defaultMode: 0440
      items: [{key: web.yaml, path: conf/web.yaml, mode: 0400}, {key: mode, path: mode}]
  - name: certs
    secret: {secretName: web-certs, defaultMode: 420, optional: true}
  - {name: work, emptyDir: {}}
  - {name: scratch, emptyDir: {medium: Memory}}
  - {name: defaulted}
"""

SECRET = """
apiVersion: v1
kind: Secret
metadata: {name: web-secrets, namespace: shop}
type: Opaque
data: {token: czNjcjN0, tls.crt: LS0tLS1CRUdJTg==}
stringData: {mode: debug, token: plain}
"""

CONFIG_MAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: shop}
data: {web.yaml: "port: 8080\\n", mode: fast}
binaryData: {logo.png: iVBORw0K}
"""

ENDPOINTS = """
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: shop}
subsets:
- addresses: [{ip: 10.1.0.7, targetRef: {kind: Pod, name: web-1, namespace: shop}}]
  notReadyAddresses: [{ip: "fd00::8"}]
  ports: [{name: http, port: 8080, appProtocol: http}]
"""

TRAFFIC_TARGET = """
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: web-readers, namespace: shop}
spec:
  destination: {kind: ServiceAccount, name: web}
  sources:
  - {kind: ServiceAccount, name: client, namespace: shoppers}
  - {kind: ServiceAccount, name: admin}
  rules:
  - {kind: HTTPRouteGroup, name: web-api, matches: [read-only]}
  - {kind: HTTPRouteGroup, name: web-api}
  - {kind: TCPRoute, name: web-port}
"""

HTTP_ROUTE_GROUP_MAP_HEADERS = """
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: web-api, namespace: shop}
spec:
  matches:
  - {name: read-only, pathRegex: "/v1/items(/.*)?", methods: [GET, HEAD]}
  - name: beta
    headers: {X-Beta: "true", user-agent: ".*Firefox.*"}
"""

HTTP_ROUTE_GROUP_LIST_HEADERS = """
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: web-api, namespace: shop}
spec:
  matches:
  - {name: read-only, pathRegex: "/v1/items(/.*)?", methods: [GET, HEAD]}
  - name: beta
    headers: [{X-Beta: "true"}, {user-agent: ".*Firefox.*"}]
"""

TCP_ROUTE_ALL_PORTS = """
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: web-port, namespace: shop}
spec: {matches: {ports: []}}
"""

TCP_ROUTE_PORTS = """
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: web-port, namespace: shop}
spec: {matches: {name: web, ports: [9090, 8080, 8080]}}
"""

TRAFFIC_SPLIT_V1ALPHA2 = """
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: web-canary, namespace: shop}
spec:
  service: web
  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]
"""

TRAFFIC_SPLIT_V1ALPHA4 = """
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: web-canary, namespace: shop}
spec:
  service: web.shop.svc.cluster.local
  matches: [{kind: HTTPRouteGroup, name: web-api}]
  backends: [{service: web-v1, weight: 0}, {service: web-v2, weight: 1}]
"""

MESH_CONFIG_EMPTY = """
apiVersion: config.openservicemesh.io/v1alpha2
kind: MeshConfig
metadata: {name: osm-mesh-config, namespace: osm-system}
"""

MESH_CONFIG_FULL = """
apiVersion: config.openservicemesh.io/v1alpha2
kind: MeshConfig
metadata: {name: osm-mesh-config, namespace: osm-system}
spec:
  sidecar:
    enablePrivilegedInitContainer: true
    logLevel: debug
    maxDataPlaneConnections: 100
    configResyncInterval: 90s
    tlsMinProtocolVersion: TLSv1_3
    tlsMaxProtocolVersion: TLSv1_3
    cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]
    ecdhCurves: [X25519]
    localProxyMode: PodIP
    envoyImage: envoyproxy/envoy-distroless:v1.23.1
    resources: {limits: {cpu: "1"}}
  traffic:
    enableEgress: false
    enablePermissiveTrafficPolicyMode: false
    outboundPortExclusionList: [6379]
    inboundPortExclusionList: [9999]
    outboundIPRangeExclusionList: [10.0.0.5/8, "fd00::/8"]
    outboundIPRangeInclusionList: [192.168.0.1]
    networkInterfaceExclusionList: [eth1]
    inboundExternalAuthorization: {enable: false}
  observability:
    osmLogLevel: warn
    enableDebugServer: true
    tracing:
      enable: true
      address: jaeger.tracing
      port: 14268
      endpoint: /api/traces
      samplingPercentage: 0.5
  certificate:
    serviceCertValidityDuration: 1h30m
    certKeyBitSize: 4096
    ingressGateway: {subjectAltNames: [a.b]}
  featureFlags:
    enableWASMStats: false
    enableEgressPolicy: false
    enableSnapshotCacheMode: true
    enableAsyncProxyServiceMapping: true
    enableIngressBackendPolicy: false
    enableEnvoyActiveHealthChecks: true
    enableRetryPolicy: true
    enableMeshRootCertificate: true
"""

EGRESS = """
apiVersion: policy.openservicemesh.io/v1alpha1
kind: Egress
metadata: {name: httpbin, namespace: shop}
spec:
  sources: [{kind: ServiceAccount, name: web, namespace: shop}]
  hosts: [httpbin.org, "*.example.com"]
  ipAddresses: [203.0.113.0/24]
  ports: [{number: 80, protocol: http}, {number: 443, protocol: HTTPS}]
  matches:
  - {apiGroup: specs.smi-spec.io/v1alpha4, kind: HTTPRouteGroup, name: web-api}
  - {apiGroup: policy.openservicemesh.io/v1alpha1, kind: UpstreamTrafficSetting, name: httpbin}
"""

EGRESS_TCP = """
apiVersion: policy.openservicemesh.io/v1alpha1
kind: Egress
metadata: {name: database, namespace: shop}
spec:
  sources: [{kind: ServiceAccount, name: web, namespace: shop}]
  ipAddresses: [10.1.2.3/32]
  ports: [{number: 5432, protocol: tcp}]
"""

INGRESS_BACKEND = """
apiVersion: policy.openservicemesh.io/v1alpha1
kind: IngressBackend
metadata: {name: web, namespace: shop}
spec:
  backends:
  - name: web
    port: {number: 8080, protocol: https}
    tls: {skipClientCertValidation: false, sniHosts: [web.shop.svc.cluster.local]}
  - {name: web, port: {number: 9090, protocol: http}}
  sources:
  - {kind: Service, name: ingress-nginx, namespace: ingress}
  - {kind: AuthenticatedPrincipal, name: ingress-nginx.ingress.cluster.local}
  - {kind: IPRange, name: 10.0.0.0/8}
  matches:
  - {apiGroup: policy.openservicemesh.io/v1alpha1, kind: UpstreamTrafficSetting, name: web}
"""

RETRY = """
apiVersion: policy.openservicemesh.io/v1alpha1
kind: Retry
metadata: {name: web-to-api, namespace: shop}
spec:
  source: {kind: ServiceAccount, name: web, namespace: shop}
  destinations: [{kind: Service, name: api, namespace: shop}]
  retryPolicy:
    retryOn: 5xx,retriable-4xx
    perTryTimeout: 3s
    numRetries: 3
    retryBackoffBaseInterval: 250ms
"""

UPSTREAM_TRAFFIC_SETTING = """
apiVersion: policy.openservicemesh.io/v1alpha1
kind: UpstreamTrafficSetting
metadata: {name: web, namespace: shop}
spec:
  host: web.shop.svc.cluster.local
  connectionSettings:
    tcp: {maxConnections: 100, connectTimeout: 5s}
    http: {maxRequests: 200, maxRequestsPerConnection: 10, maxPendingRequests: 50, maxRetries: 3}
  rateLimit:
    local:
      tcp: {connections: 10, unit: second, burst: 5}
      http:
        requests: 100
        unit: minute
        burst: 10
        responseStatusCode: 503
        responseHeadersToAdd: [{name: x-limited, value: "yes"}]
  httpRoutes:
  - path: /api/.*
    rateLimit: {local: {requests: 5, unit: second}}
  - path: /health
"""

UPSTREAM_TRAFFIC_SETTING_MINIMAL = """
apiVersion: policy.openservicemesh.io/v1alpha1
kind: UpstreamTrafficSetting
metadata: {name: httpbin, namespace: shop}
spec:
  host: httpbin.org
"""

# Every example above, by a name that reads well in test ids.
VALID: dict[str, str] = {
    "namespace": NAMESPACE,
    "service account": SERVICE_ACCOUNT,
    "minimal service": SERVICE_MINIMAL,
    "full service": SERVICE_FULL,
    "minimal deployment": DEPLOYMENT_MINIMAL,
    "full deployment": DEPLOYMENT_FULL,
    "pod": POD,
    "pod with every modelled field": POD_FULL,
    "secret": SECRET,
    "config map": CONFIG_MAP,
    "endpoints": ENDPOINTS,
    "traffic target": TRAFFIC_TARGET,
    "route group with map headers": HTTP_ROUTE_GROUP_MAP_HEADERS,
    "route group with list headers": HTTP_ROUTE_GROUP_LIST_HEADERS,
    "tcp route for all ports": TCP_ROUTE_ALL_PORTS,
    "tcp route for some ports": TCP_ROUTE_PORTS,
    "v1alpha2 traffic split": TRAFFIC_SPLIT_V1ALPHA2,
    "v1alpha4 traffic split": TRAFFIC_SPLIT_V1ALPHA4,
    "egress": EGRESS,
    "tcp egress": EGRESS_TCP,
    "ingress backend": INGRESS_BACKEND,
    "retry": RETRY,
    "upstream traffic setting": UPSTREAM_TRAFFIC_SETTING,
    "minimal upstream traffic setting": UPSTREAM_TRAFFIC_SETTING_MINIMAL,
    "empty mesh config": MESH_CONFIG_EMPTY,
    "full mesh config": MESH_CONFIG_FULL,
}


def load(text: str) -> Any:
    return yaml.safe_load(text)


def parse(text: str) -> tuple[Resource | None, list[Problem]]:
    return kinds.parse(load(text))


def parse_valid(text: str) -> Resource:
    """Parses a manifest that must be valid; fails the test with every problem if not."""
    resource, problems = parse(text)
    assert problems == [], "\n".join(str(p) for p in problems)
    assert resource is not None
    return resource
