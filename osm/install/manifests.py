"""The objects ``osm install`` creates, in the order it creates them (`render`).

One idea: an install is a pure function of its `Values`, mesh name, namespace and version,
so ``osm install --dry-run -o yaml | kubectl apply -f -`` and ``osm install`` create the
same objects, and a second install can tell what it would change. Contracts:

- Every object carries `mesh_labels` (``meshName``, ``app.kubernetes.io/{name,instance,
  managed-by,version}``): that is how uninstall finds exactly what install created, and
  how install tells its own objects from someone else's.
- The CRDs are generated from the model (`osm.model.kinds` for names, scope and versions,
  the first version the storage one; `osm.model.schema` for the structural schema): what
  ``osm validate`` accepts, the CRD accepts. A strict kind added to the model gets its CRD
  and its validating-webhook rule here without a change.
- The RBAC is the least each process needs; every rule says why (`Rule.why`), and the
  comment travels as the rule's ``# why`` in the docs, not in the object (Kubernetes has
  no field for it).
- The webhook configurations leave ``caBundle`` out: the controller keeps it current from
  the mesh CA (Secret ``osm-ca-bundle``).
- Apply order: Namespace, CRDs, ServiceAccounts, RBAC, Services, Deployments, the
  MeshConfig, then the webhook configurations last, so nothing install writes is sent to a
  webhook whose server is not up yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from osm.base import wellknown
from osm.install import grafana, observability
from osm.install.values import Values
from osm.model import config, kinds, schema

Manifest = dict[str, Any]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "osm-py"
"""The value of `MANAGED_BY_LABEL` on everything install creates."""
MESH_NAME_LABEL = "meshName"
"""OSM's label naming the mesh a control-plane object belongs to."""
VERSION_LABEL = "app.kubernetes.io/version"
APP_LABEL = "app"
NAMESPACE_NAME_LABEL = wellknown.NAMESPACE_NAME_LABEL

CONTROLLER = wellknown.CONTROLLER_SERVICE
INJECTOR = wellknown.INJECTOR_SERVICE
VALIDATOR_SERVICE = wellknown.VALIDATOR_SERVICE
CA_BUNDLE_SECRET = wellknown.CA_BUNDLE_SECRET_NAME
INJECTOR_WEBHOOK = "osm-inject.k8s.io"
VALIDATOR_WEBHOOK = "osm-validator.k8s.io"
INJECTOR_PATH = wellknown.INJECTOR_WEBHOOK_PATH
VALIDATOR_PATH = wellknown.VALIDATING_WEBHOOK_PATH
READY_PATH = "/health/ready"
ALIVE_PATH = "/health/alive"
CONTROLLER_IMAGE = "osm-controller"
INJECTOR_IMAGE = "osm-injector"
TMP_VOLUME = "tmp"
RUN_AS_USER = wellknown.CONTROL_PLANE_UID
"""As the images' USER (`make images`), so a pod runs as its image was built to."""
RUN_AS_GROUP = wellknown.CONTROL_PLANE_UID
FS_GROUP = wellknown.CONTROL_PLANE_UID
CRD_API_VERSION = "apiextensions.k8s.io/v1"
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
WEBHOOK_API_VERSION = "admissionregistration.k8s.io/v1"


def mutating_webhook_name(mesh_name: str) -> str:
    return f"{wellknown.MUTATING_CONFIGURATION_PREFIX}{mesh_name}"


def validating_webhook_name(mesh_name: str) -> str:
    return f"{wellknown.VALIDATING_CONFIGURATION_PREFIX}{mesh_name}"


def mesh_labels(mesh_name: str, version: str) -> dict[str, str]:
    """The labels of every object install creates."""
    return {
        MESH_NAME_LABEL: mesh_name,
        wellknown.APP_NAME_LABEL: wellknown.APP_NAME,
        wellknown.APP_INSTANCE_LABEL: mesh_name,
        MANAGED_BY_LABEL: MANAGED_BY,
        VERSION_LABEL: version,
    }


def selector(mesh_name: str) -> str:
    """The label selector of every object install created for `mesh_name` (any version)."""
    return (
        f"{MANAGED_BY_LABEL}={MANAGED_BY},{wellknown.APP_INSTANCE_LABEL}={mesh_name},"
        f"{MESH_NAME_LABEL}={mesh_name}"
    )


# -- RBAC --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rule:
    """One PolicyRule and why the process needs each of its verbs."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    names: tuple[str, ...] = ()

    def manifest(self) -> Manifest:
        rule: Manifest = {
            "apiGroups": [self.api_group],
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }
        if self.names:
            rule["resourceNames"] = list(self.names)
        return rule


READ = ("get", "list", "watch")


def _mesh_kind_rules() -> list[Rule]:
    """List and watch of every strict kind (SMI, MeshConfig and later policy kinds)."""
    groups: dict[str, list[str]] = {}
    for info in kinds.KINDS:
        if info.strict:
            groups.setdefault(info.group, []).append(info.plural)
    return [
        Rule(
            group,
            tuple(plurals),
            READ,
            "the mesh's policy: the informer lists and watches it and builds every proxy's "
            "configuration from it",
        )
        for group, plurals in groups.items()
    ]


def controller_cluster_rules(mesh_name: str) -> list[Rule]:
    return [
        Rule(
            "",
            ("namespaces", "services", "endpoints", "pods", "serviceaccounts"),
            READ,
            "the mesh's state: which namespaces are monitored, which pods are proxies and of "
            "which services and identities; the informer lists and watches them",
        ),
        *_mesh_kind_rules(),
        Rule(
            "admissionregistration.k8s.io",
            ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
            ("get", "update", "patch"),
            "keeps the caBundle of this mesh's two webhook configurations (and only those) "
            "current with the mesh CA: reads them, then writes the new bundle",
            names=(validating_webhook_name(mesh_name), mutating_webhook_name(mesh_name)),
        ),
    ]


def controller_namespace_rules() -> list[Rule]:
    return [
        Rule(
            "",
            ("secrets",),
            ("create",),
            f"creates the mesh CA's Secret {CA_BUNDLE_SECRET} on first start (create cannot "
            "be limited to a name)",
        ),
        Rule(
            "",
            ("secrets",),
            ("get", "update"),
            f"reads the mesh CA from {CA_BUNDLE_SECRET} so a restart keeps the trust, and "
            "writes it when the root is rotated",
            names=(CA_BUNDLE_SECRET,),
        ),
    ]


def injector_cluster_rules(mesh_name: str) -> list[Rule]:
    return [
        Rule(
            "",
            ("namespaces",),
            READ,
            "injection is decided by the pod's namespace's labels and annotations",
        ),
        Rule(
            "",
            ("secrets",),
            ("create",),
            "creates each injected pod's Envoy bootstrap Secret (envoy-bootstrap-config-<uuid>) "
            "in the pod's namespace",
        ),
        Rule(
            "admissionregistration.k8s.io",
            ("mutatingwebhookconfigurations",),
            ("get", "update", "patch"),
            "keeps the caBundle of this mesh's mutating webhook configuration current "
            "with the certificate it serves",
            names=(mutating_webhook_name(mesh_name),),
        ),
    ]


def injector_namespace_rules() -> list[Rule]:
    mesh_config = kinds.BY_KIND["MeshConfig"]
    return [
        Rule(
            mesh_config.group,
            (mesh_config.plural,),
            READ,
            "the sidecar's settings (log level, images, exclusions) come from the MeshConfig",
        ),
        Rule(
            "",
            ("secrets",),
            ("create",),
            f"creates the mesh CA's Secret {CA_BUNDLE_SECRET} if it starts before the controller",
        ),
        Rule(
            "",
            ("secrets",),
            ("get",),
            f"reads the mesh CA from {CA_BUNDLE_SECRET}: bootstrap certificates and its "
            "serving certificate are issued by it",
            names=(CA_BUNDLE_SECRET,),
        ),
    ]


# -- objects -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Context:
    values: Values
    mesh_name: str
    namespace: str
    version: str

    def metadata(
        self, name: str, *, namespaced: bool = True, extra: Mapping[str, str] | None = None
    ) -> Manifest:
        labels = {**mesh_labels(self.mesh_name, self.version), **(extra or {})}
        meta: Manifest = {"name": name}
        if namespaced:
            meta["namespace"] = self.namespace
        meta["labels"] = labels
        return meta


def render(values: Values, mesh_name: str, namespace: str, version: str) -> list[Manifest]:
    """Every object of the install, in apply order."""
    ctx = _Context(values, mesh_name, namespace, version)
    return [
        _namespace(ctx),
        *custom_resource_definitions(mesh_labels(mesh_name, version)),
        *_service_accounts(ctx),
        *_rbac(ctx),
        *_services(ctx),
        _controller_deployment(ctx),
        _injector_deployment(ctx),
        mesh_config(ctx),
        grafana.dashboards_configmap(namespace, mesh_labels(mesh_name, version)),
        *_observability(ctx),
        _mutating_webhook(ctx),
        _validating_webhook(ctx),
    ]


def _observability(ctx: _Context) -> list[Manifest]:
    """What ``osm.deployPrometheus`` and ``osm.deployJaeger`` ask for (`osm.install.
    observability`, Kubernetes mode: ClusterIP Services, Prometheus's own pod discovery,
    the trace store from the controller's image, which holds the project)."""
    labels = mesh_labels(ctx.mesh_name, ctx.version)
    ns = ctx.namespace
    objects: list[Manifest] = []
    if ctx.values.deploy_prometheus:
        objects += observability.prometheus_rbac(ns, labels=labels)
        objects += [
            observability.prometheus_configmap(ns, local=False, labels=labels),
            observability.prometheus_service(ns, local=False, labels=labels),
            observability.prometheus_deployment(ns, local=False, labels=labels),
        ]
    if ctx.values.deploy_jaeger:
        image = ctx.values.image(CONTROLLER, ctx.version)
        objects += [
            observability.tracing_service(ns, local=False, labels=labels),
            observability.tracing_deployment(ns, local=False, image=image, labels=labels),
        ]
    return objects


def _namespace(ctx: _Context) -> Manifest:
    # OSM's namespace is never injected: its pods are the control plane.
    meta = ctx.metadata(ctx.namespace, namespaced=False, extra={wellknown.IGNORE_LABEL: "true"})
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _categories(group: str) -> list[str]:
    return ["smi"] if group.endswith("smi-spec.io") else ["osm"]


def custom_resource_definitions(labels: Mapping[str, str]) -> list[Manifest]:
    """A CRD for every strict kind of the model, labelled with `labels`."""
    crds = []
    for info in kinds.KINDS:
        if not info.strict:
            continue
        versions = []
        for index, api_version in enumerate(info.versions):
            document = schema.schema(info.kind, api_version)
            document["properties"]["status"] = {
                "type": "object",
                "description": "What the control plane observed; written by it.",
                "x-kubernetes-preserve-unknown-fields": True,
            }
            versions.append(
                {
                    "name": api_version.rpartition("/")[2],
                    "served": True,
                    "storage": index == 0,
                    "schema": {"openAPIV3Schema": document},
                    "subresources": {"status": {}},
                }
            )
        names: Manifest = {
            "kind": info.kind,
            "listKind": f"{info.kind}List",
            "plural": info.plural,
            "singular": info.kind.lower(),
            "categories": _categories(info.group),
        }
        short = [name for name in info.short_names if name != info.kind.lower()]
        if short:
            names["shortNames"] = short
        crds.append(
            {
                "apiVersion": CRD_API_VERSION,
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{info.plural}.{info.group}", "labels": dict(labels)},
                "spec": {
                    "group": info.group,
                    "names": names,
                    "scope": "Namespaced" if info.namespaced else "Cluster",
                    "versions": versions,
                },
            }
        )
    return crds


def _service_accounts(ctx: _Context) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": ctx.metadata(name, extra={APP_LABEL: name}),
        }
        for name in (CONTROLLER, INJECTOR)
    ]


def _rbac(ctx: _Context) -> list[Manifest]:
    objects: list[Manifest] = []
    cluster = {
        CONTROLLER: controller_cluster_rules(ctx.mesh_name),
        INJECTOR: injector_cluster_rules(ctx.mesh_name),
    }
    local = {CONTROLLER: controller_namespace_rules(), INJECTOR: injector_namespace_rules()}
    for account, rules in cluster.items():
        # Cluster-scoped names must not collide between meshes.
        name = f"{ctx.mesh_name}-{account}"
        objects.append(_role("ClusterRole", ctx.metadata(name, namespaced=False), rules))
        objects.append(
            _binding("ClusterRoleBinding", ctx.metadata(name, namespaced=False), ctx, account)
        )
    for account, rules in local.items():
        objects.append(_role("Role", ctx.metadata(account), rules))
        objects.append(_binding("RoleBinding", ctx.metadata(account), ctx, account))
    return objects


def _role(kind: str, metadata: Manifest, rules: Sequence[Rule]) -> Manifest:
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "rules": [rule.manifest() for rule in rules],
    }


def _binding(kind: str, metadata: Manifest, ctx: _Context, account: str) -> Manifest:
    role_kind = "ClusterRole" if kind == "ClusterRoleBinding" else "Role"
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": metadata["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ctx.namespace}],
    }


def _port(name: str, port: int) -> Manifest:
    return {"name": name, "port": port, "targetPort": port, "protocol": "TCP"}


def _services(ctx: _Context) -> list[Manifest]:
    def service(name: str, app: str, ports: Iterable[Manifest]) -> Manifest:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": ctx.metadata(name, extra={APP_LABEL: app}),
            "spec": {"selector": {APP_LABEL: app}, "ports": list(ports)},
        }

    return [
        service(
            CONTROLLER,
            CONTROLLER,
            [
                _port("xds", wellknown.XDS_PORT),
                _port("http", wellknown.CONTROLLER_HTTP_PORT),
            ],
        ),
        service(
            VALIDATOR_SERVICE, CONTROLLER, [_port("webhook", wellknown.VALIDATING_WEBHOOK_PORT)]
        ),
        service(INJECTOR, INJECTOR, [_port("webhook", wellknown.INJECTOR_WEBHOOK_PORT)]),
    ]


def controller_command(mesh_name: str, namespace: str) -> list[str]:
    """The controller's command line, as the images run it (the contract of #16)."""
    return [
        "osm",
        "controller",
        "--kubernetes",
        "--mesh-name",
        mesh_name,
        "--osm-namespace",
        namespace,
        "--ca-bundle-secret-name",
        CA_BUNDLE_SECRET,
        "--validator-webhook-config",
        validating_webhook_name(mesh_name),
        "--xds-host",
        "0.0.0.0",
        "--http-host",
        "0.0.0.0",
        "--webhook-port",
        str(wellknown.VALIDATING_WEBHOOK_PORT),
    ]


def injector_command(values: Values, mesh_name: str, namespace: str, version: str) -> list[str]:
    """The injector's command line, as the images run it (the contract of #16)."""
    return [
        "osm",
        "injector",
        "--mesh-name",
        mesh_name,
        "--osm-namespace",
        namespace,
        "--ca-bundle-secret-name",
        CA_BUNDLE_SECRET,
        "--webhook-config-name",
        mutating_webhook_name(mesh_name),
        "--webhook-port",
        str(wellknown.INJECTOR_WEBHOOK_PORT),
        "--http-port",
        str(wellknown.CONTROLLER_HTTP_PORT),
        "--init-container-image",
        values.init_container(version),
        "--sidecar-image",
        values.sidecar_image,
        "--python-sidecar-image",
        values.python_sidecar(version),
    ]


def _probe(path: str) -> Manifest:
    return {
        "httpGet": {"path": path, "port": wellknown.CONTROLLER_HTTP_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": 1,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def _deployment(
    ctx: _Context,
    name: str,
    replicas: int,
    command: list[str],
    ports: Sequence[tuple[str, int]],
    resources: Manifest,
) -> Manifest:
    app = {APP_LABEL: name}
    pod_labels = {**mesh_labels(ctx.mesh_name, ctx.version), **app}
    container = {
        "name": name,
        "image": ctx.values.image(name, ctx.version),
        "imagePullPolicy": ctx.values.image_pull_policy,
        "command": command,
        "ports": [
            {"name": port_name, "containerPort": port, "protocol": "TCP"}
            for port_name, port in ports
        ],
        "readinessProbe": _probe(READY_PATH),
        "livenessProbe": _probe(ALIVE_PATH),
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "env": [
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            # The images' Python must not try to write bytecode on a read-only root.
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        # The root is read-only; TLS keys go to files (Python's ssl loads them from disk).
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ctx.metadata(name, extra=app),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": app},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        wellknown.PROMETHEUS_SCRAPE_ANNOTATION: "true",
                        wellknown.PROMETHEUS_PORT_ANNOTATION: str(wellknown.CONTROLLER_HTTP_PORT),
                        wellknown.PROMETHEUS_PATH_ANNOTATION: "/metrics",
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_GROUP,
                        "fsGroup": FS_GROUP,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
                },
            },
        },
    }


def _controller_deployment(ctx: _Context) -> Manifest:
    return _deployment(
        ctx,
        CONTROLLER,
        ctx.values.controller_replicas,
        controller_command(ctx.mesh_name, ctx.namespace),
        [
            ("xds", wellknown.XDS_PORT),
            ("http", wellknown.CONTROLLER_HTTP_PORT),
            ("webhook", wellknown.VALIDATING_WEBHOOK_PORT),
        ],
        ctx.values.controller_resources.manifest(),
    )


def _injector_deployment(ctx: _Context) -> Manifest:
    return _deployment(
        ctx,
        INJECTOR,
        ctx.values.injector_replicas,
        injector_command(ctx.values, ctx.mesh_name, ctx.namespace, ctx.version),
        [("webhook", wellknown.INJECTOR_WEBHOOK_PORT), ("http", wellknown.CONTROLLER_HTTP_PORT)],
        ctx.values.injector_resources.manifest(),
    )


def mesh_config(ctx: _Context) -> Manifest:
    """The model's default MeshConfig with the values' overrides, labelled as ours."""
    manifest = config.default_manifest(ctx.namespace)
    spec = manifest["spec"]
    for path, value in ctx.values.mesh_config.items():
        node = spec
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = list(value) if isinstance(value, tuple) else value
    manifest["metadata"] = ctx.metadata(wellknown.MESH_CONFIG_NAME)
    return manifest


def _service_ref(ctx: _Context, name: str, path: str, port: int) -> Manifest:
    # caBundle is left out: the controller writes it from the mesh CA.
    return {"service": {"name": name, "namespace": ctx.namespace, "path": path, "port": port}}


def _mutating_webhook(ctx: _Context) -> Manifest:
    selector = {
        "matchLabels": {wellknown.MONITORED_BY_LABEL: ctx.mesh_name},
        "matchExpressions": [
            {"key": wellknown.IGNORE_LABEL, "operator": "DoesNotExist"},
            {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": [ctx.namespace]},
            {"key": wellknown.CONTROL_PLANE_LABEL, "operator": "DoesNotExist"},
        ],
    }
    webhook = {
        "name": INJECTOR_WEBHOOK,
        "clientConfig": _service_ref(ctx, INJECTOR, INJECTOR_PATH, wellknown.INJECTOR_WEBHOOK_PORT),
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": selector,
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "NoneOnDryRun",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": ctx.values.webhook_timeout_seconds,
        "reinvocationPolicy": "Never",
    }
    return {
        "apiVersion": WEBHOOK_API_VERSION,
        "kind": "MutatingWebhookConfiguration",
        "metadata": ctx.metadata(mutating_webhook_name(ctx.mesh_name), namespaced=False),
        "webhooks": [webhook],
    }


def _validation_rules() -> list[Manifest]:
    by_group: dict[str, tuple[set[str], list[str]]] = {}
    for info in kinds.KINDS:
        if not info.strict:
            continue
        versions, plurals = by_group.setdefault(info.group, (set(), []))
        versions.update(version.rpartition("/")[2] for version in info.versions)
        plurals.append(info.plural)
    rules = [
        {
            "apiGroups": [group],
            "apiVersions": sorted(versions),
            "operations": ["CREATE", "UPDATE"],
            "resources": plurals,
            "scope": "Namespaced",
        }
        for group, (versions, plurals) in by_group.items()
    ]
    # A meshed pod's proxy label and sidecar must not be changed under the mesh.
    rules.append(
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["UPDATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    )
    return rules


def _validating_webhook(ctx: _Context) -> Manifest:
    webhook = {
        "name": VALIDATOR_WEBHOOK,
        "clientConfig": _service_ref(
            ctx, VALIDATOR_SERVICE, VALIDATOR_PATH, wellknown.VALIDATING_WEBHOOK_PORT
        ),
        "rules": _validation_rules(),
        # The cluster's own namespaces are never at the mercy of the mesh's validator.
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": NAMESPACE_NAME_LABEL,
                    "operator": "NotIn",
                    "values": list(wellknown.KUBE_SYSTEM_NAMESPACES),
                }
            ]
        },
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": ctx.values.webhook_timeout_seconds,
    }
    return {
        "apiVersion": WEBHOOK_API_VERSION,
        "kind": "ValidatingWebhookConfiguration",
        "metadata": ctx.metadata(validating_webhook_name(ctx.mesh_name), namespaced=False),
        "webhooks": [webhook],
    }


def cluster_wide(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The objects shared by every mesh of the cluster (the CRDs): uninstall removes them
    only with ``--delete-cluster-wide-resources``."""
    return [obj for obj in objects if obj["kind"] == "CustomResourceDefinition"]
