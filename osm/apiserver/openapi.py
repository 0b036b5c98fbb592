"""The API's OpenAPI v3 documents: ``/openapi/v3`` and one document per group/version.

The one idea: kubectl reads these documents to decide what it may leave to the server, so
they must say exactly that. For each kind, every PATCH (and create, update) operation
carries ``x-kubernetes-group-version-kind`` and declares the ``fieldValidation`` query
parameter; kubectl 1.32 then sends ``fieldValidation=Strict`` and validates nothing itself
(without this, ``kubectl apply`` fails with "failed to download openapi"). Our own kinds
come with their full schemas (`osm.model.schema`, the CRD schemas) in
``components.schemas``, so ``kubectl explain trafficsplit.spec`` works.

Kubernetes' built-in kinds get operations but no schema, and their PATCH operations do not
list ``application/strategic-merge-patch+json``: kubectl computes a strategic merge patch
from the OpenAPI schema of a kind whose PATCH lists it, and with anything less than
Kubernetes' full schema it prints a warning per object; without it, kubectl uses the Go
types compiled into it, which is exactly Kubernetes' schema. (The server accepts strategic
merge patches for built-in kinds all the same.) ``kubectl explain pod`` is therefore not
served.

`v3_root` lists every served group/version with the hash of its document (clients cache
by it); `v3_document` builds one. Pure: no I/O. Both return new dicts the caller owns.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from osm.apiserver import resources
from osm.apiserver.resources import Resource
from osm.model import schema

Document = dict[str, Any]

OPENAPI_VERSION = "3.0.0"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
OBJECT_META = f"{META}.ObjectMeta"
LIST_META = f"{META}.ListMeta"
PATCH = f"{META}.Patch"

JSON = "application/json"
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")
"""The PATCH bodies advertised for every kind (see the module docstring for the third)."""


# -- the root ---------------------------------------------------------------------------
def v3_root() -> dict[str, Any]:
    """``GET /openapi/v3``: every served group/version and where its document is."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
            for path, (_, digest) in _documents().items()
        }
    }


def v3_document(path: str) -> dict[str, Any] | None:
    """``GET /openapi/v3/{path}`` for ``api/v1`` or ``apis/{group}/{version}`` (a leading
    ``/`` and the ``/openapi/v3/`` prefix are allowed); None for a path not served."""
    path = path.strip("/").removeprefix("openapi/v3/")
    built = _documents().get(path)
    return copy.deepcopy(built[0]) if built is not None else None


def document_hash(document: Mapping[str, Any]) -> str:
    """The hash in a document's ``serverRelativeURL``: SHA-512 of its canonical JSON, in
    upper-case hex as kube-apiserver writes it. It changes exactly when the document does."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha512(text.encode()).hexdigest().upper()


def group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def _documents() -> Mapping[str, tuple[Document, str]]:
    built: dict[str, tuple[Document, str]] = {}
    for group, versions in resources.group_versions().items():
        for version in versions:
            document = _document(group, version)
            built[group_version_path(group, version)] = (document, document_hash(document))
    return built


# -- one group/version ----------------------------------------------------------------------
def component_name(resource: Resource, kind: str | None = None) -> str:
    """The name kube-apiserver gives a custom kind's schema: the group reversed, the
    version, the kind (``io.smi-spec.split.v1alpha4.TrafficSplit``)."""
    reversed_group = ".".join(reversed(resource.group.split(".")))
    return f"{reversed_group}.{resource.version}.{kind or resource.kind}"


def _document(group: str, version: str) -> Document:
    served = [r for r in resources.RESOURCES if r.group == group and r.version == version]
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {PATCH: _patch_schema()}
    for resource in served:
        paths.update(_paths(resource))
        if _has_schema(resource):
            schemas.update(_schemas(resource))
            schemas.update(_meta_schemas())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "osm local API server", "version": f"{group or 'core'}/{version}"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _has_schema(resource: Resource) -> bool:
    return (resource.kind, resource.api_version) in schema.SCHEMAS


def _gvk(resource: Resource, kind: str | None = None) -> dict[str, str]:
    return {"group": resource.group, "version": resource.version, "kind": kind or resource.kind}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# -- paths and operations -------------------------------------------------------------------
def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind}}


FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": (
        "What the server does with unknown or duplicate fields in the body: Ignore drops "
        "them, Warn drops them with a warning per field, Strict refuses the request (400)."
    ),
    "schema": {"type": "string", "enum": ["Ignore", "Warn", "Strict"]},
}
DRY_RUN = _query("dryRun", "All: process the request fully but store nothing.")
FIELD_MANAGER = _query("fieldManager", "The name of the actor making the change.")
GRACE = _query("gracePeriodSeconds", "Seconds before the object is deleted.", "integer")
PROPAGATION = _query(
    "propagationPolicy", "Whether and how dependents are deleted: Orphan, Background, Foreground."
)
LIST_PARAMETERS = (
    _query("labelSelector", "Only objects whose labels match this selector."),
    _query("fieldSelector", "Only objects whose fields match this selector."),
    _query("limit", "The most objects to return; the rest with the continue token.", "integer"),
    _query("continue", "The token of a previous list's next page."),
    _query("resourceVersion", "List or watch from this version of the store."),
    _query("resourceVersionMatch", "How resourceVersion applies to a list: Exact, NotOlderThan."),
    _query("watch", "Stream changes (ADDED, MODIFIED, DELETED events).", "boolean"),
    _query("allowWatchBookmarks", "Send BOOKMARK events on a watch.", "boolean"),
    _query("timeoutSeconds", "End a list or watch after this many seconds.", "integer"),
    _query("sendInitialEvents", "Start a watch with the current objects.", "boolean"),
)
LOG_PARAMETERS = (
    _query("container", "The container whose log is read; the pod's default if one."),
    _query("follow", "Keep streaming the log as it grows.", "boolean"),
    _query("tailLines", "Only the last lines of the log.", "integer"),
    _query("previous", "The log of the container's previous run.", "boolean"),
    _query("sinceSeconds", "Only lines written in the last seconds.", "integer"),
    _query("timestamps", "Prefix each line with its time.", "boolean"),
    _query("limitBytes", "The most bytes to return.", "integer"),
)


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "uniqueItems": True},
    }


def _operation_id(verb: str, resource: Resource, *, namespaced: bool, suffix: str = "") -> str:
    """kube-apiserver's style: ``patchSplitSmiSpecIoV1alpha4NamespacedTrafficSplit``."""
    words = resource.group.replace("-", ".").split(".") if resource.group else ["core"]
    group = "".join(word.capitalize() for word in words)
    scope = "Namespaced" if namespaced else ""
    return f"{verb}{group}{resource.version.capitalize()}{scope}{resource.kind}{suffix}"


def _body(resource: Resource, media_types: tuple[str, ...], kind: str | None = None) -> Any:
    if media_types == PATCH_TYPES:
        content_schema = _ref(PATCH)
    elif _has_schema(resource):
        content_schema = _ref(component_name(resource, kind))
    else:
        content_schema = {"type": "object"}
    return {"required": True, "content": {m: {"schema": content_schema} for m in media_types}}


def _responses(resource: Resource, codes: tuple[str, ...], kind: str | None = None) -> Any:
    named = {"200": "OK", "201": "Created", "202": "Accepted"}
    if _has_schema(resource):
        content = {JSON: {"schema": _ref(component_name(resource, kind))}}
    else:
        content = {JSON: {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {
        code: {"description": named[code], "content": content} for code in codes
    }
    responses["401"] = {"description": "Unauthorized"}
    return responses


def _operation(
    verb: str,
    action: str,
    resource: Resource,
    *,
    namespaced: bool,
    description: str,
    parameters: tuple[dict[str, Any], ...] = (),
    body: tuple[str, ...] = (),
    codes: tuple[str, ...] = ("200",),
    kind: str | None = None,
    suffix: str = "",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "description": description,
        "operationId": _operation_id(verb, resource, namespaced=namespaced, suffix=suffix),
        "tags": [resource.group_version.replace("/", "_").replace(".", "_")],
        "parameters": list(parameters),
        "responses": _responses(resource, codes, kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource),
    }
    if body:
        operation["requestBody"] = _body(resource, body, kind)
    return operation


def _paths(resource: Resource) -> dict[str, Any]:
    """The collection, the object and its subresources, as kube-apiserver lays them out:
    namespaced kinds under ``namespaces/{namespace}`` plus a list across namespaces."""
    kind = resource.kind
    namespaced = resource.namespaced
    name = _path_parameter("name", f"The name of the {kind}.")
    scope = (_path_parameter("namespace", "The object's namespace."),) if namespaced else ()
    collection = resource.path("{namespace}" if namespaced else "")
    item = f"{collection}/{{name}}"
    write = (DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION)

    def op(verb: str, action: str, description: str, **extra: Any) -> dict[str, Any]:
        return _operation(
            verb, action, resource, namespaced=namespaced, description=description, **extra
        )

    paths: dict[str, Any] = {
        collection: {
            "parameters": list(scope),
            "get": op("list", "list", f"list or watch {kind} objects", parameters=LIST_PARAMETERS,
                      kind=f"{kind}List"),
            "post": op("create", "post", f"create a {kind}", parameters=write, body=(JSON,),
                       codes=("200", "201", "202")),
            "delete": op("deleteCollection", "deletecollection", f"delete a collection of {kind}",
                         parameters=(*LIST_PARAMETERS[:2], DRY_RUN, GRACE, PROPAGATION)),
        },
        item: {
            "parameters": [name, *scope],
            "get": op("read", "get", f"read the specified {kind}"),
            "put": op("replace", "put", f"replace the specified {kind}", parameters=write,
                      body=(JSON,), codes=("200", "201")),
            "patch": op("patch", "patch", f"partially update the specified {kind}",
                        parameters=write, body=PATCH_TYPES, codes=("200", "201")),
            "delete": op("delete", "delete", f"delete a {kind}",
                         parameters=(DRY_RUN, GRACE, PROPAGATION), codes=("200", "202")),
        },
    }  # fmt: skip
    if namespaced:
        paths[resource.path()] = {
            "get": _operation(
                "list",
                "list",
                resource,
                namespaced=False,
                description=f"list or watch {kind} objects of every namespace",
                parameters=LIST_PARAMETERS,
                kind=f"{kind}List",
                suffix="ForAllNamespaces",
            )
        }
    for sub in resource.subresources:
        paths[f"{item}/{sub}"] = _subresource(resource, sub, [name, *scope])
    return paths


def _subresource(resource: Resource, sub: str, parameters: list[Any]) -> dict[str, Any]:
    kind, namespaced = resource.kind, resource.namespaced
    suffix = sub.capitalize()
    if sub == "log":
        log = _operation(
            "read",
            "get",
            resource,
            namespaced=namespaced,
            description=f"read the log of the specified {kind}",
            parameters=LOG_PARAMETERS,
            suffix=suffix,
        )
        log["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
        return {"parameters": parameters, "get": log}
    write = (DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION)
    return {
        "parameters": parameters,
        "get": _operation(
            "read", "get", resource, namespaced=namespaced,
            description=f"read {sub} of the specified {kind}", suffix=suffix,
        ),
        "put": _operation(
            "replace", "put", resource, namespaced=namespaced,
            description=f"replace {sub} of the specified {kind}", parameters=write,
            body=(JSON,), codes=("200", "201"), suffix=suffix,
        ),
        "patch": _operation(
            "patch", "patch", resource, namespaced=namespaced,
            description=f"partially update {sub} of the specified {kind}",
            parameters=write, body=PATCH_TYPES, codes=("200", "201"), suffix=suffix,
        ),
    }  # fmt: skip


# -- schemas -------------------------------------------------------------------------------
def _schemas(resource: Resource) -> dict[str, Any]:
    """The kind's CRD schema, as kube-apiserver publishes a CRD's: tagged with its
    group/version/kind, ``metadata`` pointing at ObjectMeta; and its list kind."""
    body = schema.schema(resource.kind, resource.api_version)
    body["properties"]["metadata"] = {
        "description": body["properties"]["metadata"]["description"],
        "allOf": [_ref(OBJECT_META)],
    }
    body["x-kubernetes-group-version-kind"] = [_gvk(resource)]
    name = component_name(resource)
    listing = {
        "description": f"A list of {resource.kind} objects.",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": body["properties"]["apiVersion"],
            "kind": body["properties"]["kind"],
            "metadata": {"description": "Standard list metadata.", "allOf": [_ref(LIST_META)]},
            "items": {"description": f"The {resource.kind} objects.", "type": "array",
                      "items": _ref(name)},
        },
        "x-kubernetes-group-version-kind": [_gvk(resource, f"{resource.kind}List")],
    }  # fmt: skip
    return {name: body, component_name(resource, f"{resource.kind}List"): listing}


def _meta_schemas() -> dict[str, Any]:
    """The metadata our kinds' schemas refer to: the fields a user writes or reads."""

    def text(description: str) -> dict[str, Any]:
        return {"type": "string", "description": description}

    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    owner = {
        "type": "object",
        "description": "An object this one belongs to; it is deleted with its owner.",
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {
            "apiVersion": text("The owner's API version."),
            "kind": text("The owner's kind."),
            "name": text("The owner's name."),
            "uid": text("The owner's uid."),
            "controller": {"type": "boolean", "description": "The owner is the controller."},
            "blockOwnerDeletion": {
                "type": "boolean",
                "description": "The owner cannot be deleted before this object (foreground).",
            },
        },
    }
    return {
        OBJECT_META: {
            "description": "Metadata every persisted object has.",
            "type": "object",
            "properties": {
                "name": text("Unique within a namespace; cannot be updated."),
                "generateName": text("A prefix the server completes to a unique name."),
                "namespace": text("The namespace the object is in (DNS label)."),
                "labels": {
                    **string_map,
                    "description": "Keys and values that selectors match.",
                },
                "annotations": {
                    **string_map,
                    "description": "Keys and values for tools; not queryable.",
                },
                "uid": text("Unique in time and space; set by the server on create."),
                "resourceVersion": text(
                    "The version of the object in the store; opaque, for optimistic "
                    "concurrency and watches."
                ),
                "generation": {
                    "type": "integer",
                    "format": "int64",
                    "description": "Rises with each change of the desired state (spec).",
                },
                "creationTimestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the object was created (RFC 3339, UTC).",
                },
                "deletionTimestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the object will be deleted; set by the server.",
                },
                "finalizers": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "What must be done before the object is deleted.",
                },
                "ownerReferences": {
                    "type": "array",
                    "items": owner,
                    "description": "The objects this one belongs to.",
                },
            },
        },
        LIST_META: {
            "description": "Metadata of a list.",
            "type": "object",
            "properties": {
                "resourceVersion": text("The version of the store the list was read at."),
                "continue": text("The token for the next page, if any."),
                "remainingItemCount": {"type": "integer", "format": "int64",
                                       "description": "Objects after this page."},
            },
        },
    }  # fmt: skip


def _patch_schema() -> dict[str, Any]:
    return {
        "description": "A PATCH request body, of the type its Content-Type names.",
        "type": "object",
    }
