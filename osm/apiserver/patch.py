"""Patches, as the API server applies them to a stored object: JSON merge patch (RFC 7386),
JSON patch (RFC 6902) and Kubernetes' strategic merge patch.

The one idea: a patch is a pure function of the object and the patch body, chosen by the
request's media type; every function returns a new dict and never mutates its inputs, and
a patch that cannot be applied raises `PatchError` naming the field (kubectl-style path).

Strategic merge patch is a JSON merge patch whose lists may merge element by element, by
the list's merge key (`MERGE_KEYS`), with directives in the patch body that `kubectl
apply` sends: ``$patch`` (delete, replace, merge), ``$setElementOrder/<list>``,
``$retainKeys`` and ``$deleteFromPrimitiveList/<list>``. It follows the server side of
k8s.io/apimachinery's ``strategicpatch`` (merge options MergeParallelList and
IgnoreUnmatchedNulls), down to the order of merged lists, where its results depend on how
Go slices share memory. It differs where kubectl sends no such patch: ``$patch: merge``
is accepted as the explicit default (Kubernetes refuses it); a ``$patch: replace`` map
under a key the object lacks is kept (Kubernetes drops it); an unknown ``$`` key is
refused (Kubernetes stores it as a field); an empty list merged with an empty list is
empty (Kubernetes fails). Custom kinds have no merge keys: `apply_patch` refuses strategic
merge for them, as kube-apiserver does (415).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import jsonpatch
import jsonpointer

MERGE: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
STRATEGIC: Final = "application/strategic-merge-patch+json"
APPLY: Final = "application/apply-patch+yaml"
SUPPORTED: Final = (JSON_PATCH, MERGE, STRATEGIC)


class PatchError(ValueError):
    """A patch that cannot be applied: `message`, and `field` (kubectl-style path such as
    `spec.containers[0].env`, '' if none). The client's fault (the server answers 422)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


class UnsupportedPatch(PatchError):
    """A patch type the server does not apply to this kind (the server answers 415)."""


# -- the merge keys --------------------------------------------------------------------------
# Which lists strategic merge patch merges, per kind, by path from the object's root (`[]`
# stands for every element of a list), and by which key; SET marks a list of primitives
# merged as a set. Every other list is replaced whole. Taken from the Kubernetes API types
# (`patchStrategy:"merge"` and `patchMergeKey` in k8s.io/api), as the OpenAPI schemas that
# the `kubernetes-validate` package ships (1.37) publish them: `x-kubernetes-patch-strategy`
# and `x-kubernetes-patch-merge-key`. tests/unit/apiserver/test_patch.py derives the table
# from those schemas again and compares.
SET: Final = ""


def _under(prefix: str, keys: Mapping[str, str]) -> dict[str, str]:
    return {f"{prefix}.{path}": key for path, key in keys.items()}


_OBJECT_META: Final[Mapping[str, str]] = {
    "metadata.finalizers": SET,
    "metadata.ownerReferences": "uid",
}
_CONTAINER: Final[Mapping[str, str]] = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}
_POD_SPEC: Final[Mapping[str, str]] = {
    "containers": "name",
    **_under("containers[]", _CONTAINER),
    "initContainers": "name",
    **_under("initContainers[]", _CONTAINER),
    "ephemeralContainers": "name",
    **_under("ephemeralContainers[]", _CONTAINER),
    "volumes": "name",
    **_under("volumes[].ephemeral.volumeClaimTemplate", _OBJECT_META),
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "resourceClaims": "name",
    "evictionResponders": "name",
}
_CONTAINER_STATUS: Final[Mapping[str, str]] = {
    "allocatedResourcesStatus": "name",
    "volumeMounts": "mountPath",
}
_POD_STATUS: Final[Mapping[str, str]] = {
    "conditions": "type",
    "podIPs": "ip",
    "hostIPs": "ip",
    **_under("containerStatuses[]", _CONTAINER_STATUS),
    **_under("initContainerStatuses[]", _CONTAINER_STATUS),
    **_under("ephemeralContainerStatuses[]", _CONTAINER_STATUS),
    "resourceClaimStatuses": "name",
    "nodeAllocatableResourceClaimStatuses": "resourceClaimName",
    "nodeAllocatableResourceClaimStatuses[].mapping": "name",
    "nodeAllocatableResourceClaimStatuses[].overhead": "name",
    "volumeHealth[].healthConditions": "status",
}
MERGE_KEYS: Final[Mapping[str, Mapping[str, str]]] = {
    "Namespace": {**_OBJECT_META, "status.conditions": "type"},
    "ServiceAccount": {**_OBJECT_META, "secrets": "name"},
    "Service": {**_OBJECT_META, "spec.ports": "port", "status.conditions": "type"},
    "Endpoints": {**_OBJECT_META},
    "Pod": {**_OBJECT_META, **_under("spec", _POD_SPEC), **_under("status", _POD_STATUS)},
    "Deployment": {
        **_OBJECT_META,
        **_under("spec.template", _OBJECT_META),
        **_under("spec.template.spec", _POD_SPEC),
        "status.conditions": "type",
    },
    "Secret": {**_OBJECT_META},
    "ConfigMap": {**_OBJECT_META},
    "CustomResourceDefinition": {**_OBJECT_META},
    "ClusterRole": {**_OBJECT_META},
    "ClusterRoleBinding": {**_OBJECT_META},
    "Role": {**_OBJECT_META},
    "RoleBinding": {**_OBJECT_META},
    "MutatingWebhookConfiguration": {**_OBJECT_META, "webhooks": "name"},
    "ValidatingWebhookConfiguration": {**_OBJECT_META, "webhooks": "name"},
}


# -- dispatch --------------------------------------------------------------------------------
def apply_patch(
    content_type: str, target: Mapping[str, Any], patch: object, *, kind: str, builtin: bool
) -> dict[str, Any]:
    """`target` patched as the media type `content_type` says (its parameters ignored)."""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == MERGE:
        return merge_patch(target, patch)
    if media_type == JSON_PATCH:
        return json_patch(target, patch)
    if media_type == STRATEGIC:
        if not builtin:
            raise UnsupportedPatch(
                f"strategic merge patch is not supported for {kind}, a custom resource: "
                f"use a JSON merge patch ({MERGE}, kubectl --type merge) or a JSON patch "
                f"({JSON_PATCH}, kubectl --type json)"
            )
        return strategic_merge_patch(target, patch, kind)
    if media_type == APPLY:
        raise UnsupportedPatch(
            f"server-side apply ({APPLY}) is not supported: use client-side apply "
            "(kubectl apply without --server-side)"
        )
    raise UnsupportedPatch(
        f"the patch's media type {media_type!r} is not supported: use one of "
        + ", ".join(SUPPORTED)
    )


# -- RFC 7386 ------------------------------------------------------------------------------
def merge_patch(target: Mapping[str, Any], patch: object) -> dict[str, Any]:
    """RFC 7386: maps merge recursively, null deletes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        raise PatchError(f"a merge patch of an object must be a JSON object, not {_type(patch)}")
    return _merge_into(copy.deepcopy(dict(target)), patch)


def _merge_into(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386's MergePatch(Target, Patch) of an object; `target` is owned (mutated)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            below = target.get(key)
            target[key] = _merge_into(below if isinstance(below, dict) else {}, value)
        else:
            target[key] = copy.deepcopy(value)
    return target


# -- RFC 6902 ------------------------------------------------------------------------------
def json_patch(target: Mapping[str, Any], operations: object) -> dict[str, Any]:
    """RFC 6902, by the `jsonpatch` package: the operations in order, all or none."""
    if not isinstance(operations, list):
        raise PatchError(
            f"a JSON patch must be a JSON array of operations, not {_type(operations)}"
        )
    document: object = copy.deepcopy(dict(target))
    for index, operation in enumerate(copy.deepcopy(operations)):
        if not isinstance(operation, dict):
            raise PatchError(f"operation {index} must be a JSON object, not {_type(operation)}")
        try:
            document = jsonpatch.JsonPatch([operation]).apply(document, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
            name = operation.get("op", "?")
            raise PatchError(
                f"operation {index} ({name}) failed: {error}",
                _pointer_field(document, operation.get("path")),
            ) from None
    if not isinstance(document, dict):
        raise PatchError(f"the patched document must be a JSON object, not {_type(document)}")
    return document


def _pointer_field(document: object, pointer: object) -> str:
    """A JSON pointer into `document` as a kubectl-style path (``/a/b/0`` -> ``a.b[0]``)."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return str(pointer) if isinstance(pointer, str) else ""
    where = _ROOT
    for escaped in pointer[1:].split("/"):
        token = escaped.replace("~1", "/").replace("~0", "~")
        if isinstance(document, list) and (token.isdigit() or token == "-"):
            position = int(token) if token.isdigit() else len(document)
            where = where.index(position)
            document = document[position] if position < len(document) else None
        else:
            where = where.key(token)
            document = document.get(token) if isinstance(document, dict) else None
    return where.field


# -- strategic merge patch -------------------------------------------------------------------
def strategic_merge_patch(target: Mapping[str, Any], patch: object, kind: str) -> dict[str, Any]:
    """Kubernetes' strategic merge patch of a `kind` object (see the module docstring)."""
    keys = MERGE_KEYS.get(kind)
    if keys is None:
        raise UnsupportedPatch(
            f"strategic merge patch is not supported for {kind}: use a JSON merge patch "
            f"({MERGE}) or a JSON patch ({JSON_PATCH})"
        )
    if not isinstance(patch, Mapping):
        raise PatchError(f"a strategic merge patch must be a JSON object, not {_type(patch)}")
    return _Strategic(keys).merge_map(copy.deepcopy(dict(target)), patch, _ROOT)


_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ELEMENT_ORDER = "$setElementOrder"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
_DROP: Final = object()
"""What a patch value becomes when it deletes itself (a map with ``$patch: delete``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Where:
    """A place in the object: `pattern` for `MERGE_KEYS`, `field` for messages."""

    pattern: str
    field: str

    def key(self, name: str) -> _Where:
        if not self.pattern and not self.field:
            return _Where(name, name)
        # A map key that is no field name (a label's) is shown as Kubernetes' field paths do.
        subscript = not name.startswith("$") and ("." in name or "/" in name)
        shown = f"[{name}]" if subscript else f".{name}"
        return _Where(f"{self.pattern}.{name}", f"{self.field}{shown}")

    def index(self, position: int) -> _Where:
        return _Where(f"{self.pattern}[]", f"{self.field}[{position}]")


_ROOT: Final = _Where("", "")


@dataclasses.dataclass(frozen=True, slots=True)
class _Strategic:
    """The merge of one kind. Originals passed in are owned (mutated, returned); patches are
    read only, and what the result takes from them is built anew."""

    keys: Mapping[str, str]

    def merge_map(
        self, original: dict[str, Any], patch: Mapping[str, Any], at: _Where
    ) -> dict[str, Any]:
        if _DIRECTIVE in patch:
            directive = patch[_DIRECTIVE]
            rest = {k: v for k, v in patch.items() if k != _DIRECTIVE}
            if directive == "delete":
                return {}
            if directive == "replace":
                return self.merge_map({}, rest, at)
            if directive != "merge":
                raise PatchError(
                    f"unknown $patch directive {directive!r} in a map: "
                    "valid are 'delete', 'merge' and 'replace'",
                    at.key(_DIRECTIVE).field,
                )
            patch = rest
        fields: dict[str, Any] = {}
        orders: dict[str, Any] = {}
        deletions: dict[str, Any] = {}
        for key, value in patch.items():
            if not key.startswith("$"):
                fields[key] = value
                continue
            prefix, slash, name = key.partition("/")
            if prefix == _SET_ELEMENT_ORDER and slash and name:
                orders[name] = value
            elif prefix == _DELETE_FROM_PRIMITIVE_LIST and slash and name:
                deletions[name] = value
            elif key != _RETAIN_KEYS:
                raise PatchError(
                    f"unknown directive {key!r}: valid are $patch, $retainKeys, "
                    "$setElementOrder/<list> and $deleteFromPrimitiveList/<list>",
                    at.key(key).field,
                )
        if _RETAIN_KEYS in patch:
            self._retain_keys(original, patch[_RETAIN_KEYS], fields, at)
        for name, order in orders.items():
            self._set_element_order(original, fields, name, order, at)
        for name, value in fields.items():
            if value is None:
                original.pop(name, None)
                continue
            here = at.key(name)
            merged = (
                self.merge_value(original[name], value, here)
                if name in original
                else self.fresh(value, here)
            )
            if merged is _DROP:
                original.pop(name, None)
            else:
                original[name] = merged
        for name, values in deletions.items():
            self._delete_from_primitive_list(original, name, values, at)
        return original

    def merge_value(self, original: object, patch: object, at: _Where) -> object:
        if isinstance(original, dict) and isinstance(patch, Mapping):
            return self.merge_map(original, patch, at)
        if isinstance(original, list) and isinstance(patch, list):
            return self.merge_list(original, patch, at)
        return self.fresh(patch, at)

    def fresh(self, patch: object, at: _Where) -> object:
        """A patch value where the object has none (or one of another type): its directives
        applied to nothing, its nulls dropped; `_DROP` for a map that deletes itself."""
        if isinstance(patch, Mapping):
            if patch.get(_DIRECTIVE) == "delete":
                return _DROP
            return self.merge_map({}, patch, at)
        if isinstance(patch, list):
            return self.merge_list([], patch, at)
        return patch

    def merge_list(self, original: list[Any], patch: list[Any], at: _Where) -> list[Any]:
        key = self.keys.get(at.pattern)
        if key is None:
            elements = (self.fresh(element, at.index(i)) for i, element in enumerate(patch))
            return [element for element in elements if element is not _DROP]
        if key == SET:
            return _merge_primitives(original, patch, at)
        return self._merge_keyed(original, patch, key, at)

    def _merge_keyed(
        self, original: list[Any], patch: list[Any], key: str, at: _Where
    ) -> list[Any]:
        for position, element in enumerate(original):
            if not isinstance(element, dict) or not _has_merge_key(element, key):
                raise PatchError(
                    f"the object's list element has no {key!r}, the list's merge key",
                    at.index(position).field,
                )
        merged = list(original)
        updates: list[tuple[int, dict[str, Any]]] = []
        replace = False
        for position, element in enumerate(patch):
            here = at.index(position)
            if not isinstance(element, Mapping):
                raise PatchError(
                    f"must be a JSON object (the list merges by {key!r}), not {_type(element)}",
                    here.field,
                )
            directive = element.get(_DIRECTIVE, "merge")
            if directive == "delete":
                if not _has_merge_key(element, key):
                    raise PatchError(f"$patch: delete needs the merge key {key!r}", here.field)
                merged = [m for m in merged if not _same(m[key], element[key])]
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                updates.append((position, {k: v for k, v in element.items() if k != _DIRECTIVE}))
            else:
                raise PatchError(
                    f"unknown $patch directive {directive!r} in a list: "
                    "valid are 'delete', 'merge' and 'replace'",
                    here.key(_DIRECTIVE).field,
                )
        if replace:
            return [self.merge_map({}, element, at.index(p)) for p, element in updates]
        server_order = [m[key] for m in merged]
        for position, element in updates:
            here = at.index(position)
            if not _has_merge_key(element, key):
                raise PatchError(f"lacks the list's merge key {key!r}", here.field)
            found = _find([m[key] for m in merged], element[key])
            if found is None:
                merged.append(self.merge_map({}, element, here))
            else:
                merged[found] = self.merge_map(merged[found], element, here)
        patch_order = [element[key] for _, element in updates]
        return _enforce_order(merged, patch_order, server_order, lambda m: m[key])

    def _retain_keys(
        self, original: dict[str, Any], retain: object, fields: Mapping[str, Any], at: _Where
    ) -> None:
        here = at.key(_RETAIN_KEYS)
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError("must be a list of field names", here.field)
        for name, value in fields.items():
            if value is not None and name not in retain:
                raise PatchError(f"the patch sets {name!r}, which it does not retain", here.field)
        for name in [name for name in original if name not in retain]:
            del original[name]

    def _set_element_order(
        self,
        original: dict[str, Any],
        fields: dict[str, Any],
        name: str,
        order: object,
        at: _Where,
    ) -> None:
        """Merge the list `name` (taking it out of `fields`) and put its elements in `order`:
        the patch's elements as `order` says, the others where they were."""
        here = at.key(name)
        directive_field = at.key(f"{_SET_ELEMENT_ORDER}/{name}").field
        key = self.keys.get(here.pattern)
        if key is None:
            return  # a list that the patch replaces is in the patch's order already
        if not isinstance(order, list):
            raise PatchError("must be a list", directive_field)
        if name in fields and not isinstance(fields[name], list):
            return  # the patch replaces (or deletes) the field: nothing to order
        current, patch = original.get(name), fields.get(name)
        if current is not None and not isinstance(current, list):
            raise PatchError("the object's field is not a list", here.field)
        identity = _identity(key, directive_field)
        wanted = [identity(element) for element in order]
        if patch:
            _check_order(patch, wanted, key, identity, directive_field)
        if current is None and patch is None:
            return
        fields.pop(name, None)
        merged = self.merge_list(current or [], patch or [], here)
        server_order = [identity(element) for element in current or []]
        if key != SET:
            server_order = _server_order_after_merge(server_order, patch or [], key)
        original[name] = _enforce_order(merged, wanted, server_order, identity)

    def _delete_from_primitive_list(
        self, original: dict[str, Any], name: str, values: object, at: _Where
    ) -> None:
        directive_field = at.key(f"{_DELETE_FROM_PRIMITIVE_LIST}/{name}").field
        if not isinstance(values, list) or not all(_is_scalar(v) for v in values):
            raise PatchError("must be a list of primitive values", directive_field)
        current = original.get(name)
        if current is None:
            return
        if not isinstance(current, list) or not all(_is_scalar(v) for v in current):
            raise PatchError("the object's field is not a list of primitives", at.key(name).field)
        original[name] = [v for v in current if _find(values, v) is None]


def _merge_primitives(original: list[Any], patch: list[Any], at: _Where) -> list[Any]:
    """A list of primitives merged as a set: the patch's values added, none twice."""
    for position, value in enumerate(patch):
        if not _is_scalar(value):
            raise PatchError(
                f"must be a primitive value, not {_type(value)}", at.index(position).field
            )
    merged: list[Any] = []
    for value in (*original, *patch):
        if _find(merged, value) is None:
            merged.append(value)
    return _enforce_order(merged, patch, original, lambda value: value)


def _enforce_order(
    merged: list[Any],
    patch_order: Sequence[Any],
    server_order: Sequence[Any],
    identity: Callable[[Any], Any],
) -> list[Any]:
    """apimachinery's order for a merged list: the elements the patch names in the patch's
    order, the others in the object's order, interleaved where the object placed them."""

    def position(order: Sequence[Any], element: Any) -> int:
        found = _find(order, identity(element))
        return -1 if found is None else found

    named = [m for m in merged if position(patch_order, m) >= 0]
    named.sort(key=lambda m: position(patch_order, m))
    others = [m for m in merged if position(patch_order, m) < 0]
    others.sort(key=lambda m: position(server_order, m))
    result: list[Any] = []
    while others or named:
        if not named:
            result.append(others.pop(0))
            continue
        if others:
            left, right = position(server_order, others[0]), position(server_order, named[0])
            if left >= 0 and right >= 0 and left < right:
                result.append(others.pop(0))
                continue
        result.append(named.pop(0))
    return result


def _server_order_after_merge(keys: list[Any], patch: list[Any], key: str) -> list[Any]:
    """The object's order that apimachinery puts a `$setElementOrder` list in, as its Go
    slices leave it: it deletes elements in place and appends the new ones to what is left,
    and reads the object's list (of the old length) afterwards. So the survivors come first,
    then as many new elements as there were deletions; new elements beyond those have no
    place and go before the object's elements (`_enforce_order`)."""
    if any(isinstance(e, Mapping) and e.get(_DIRECTIVE) == "replace" for e in patch):
        return keys
    deleted = [e[key] for e in patch if isinstance(e, Mapping) and e.get(_DIRECTIVE) == "delete"]
    survivors = [k for k in keys if _find(deleted, k) is None]
    new: list[Any] = []
    for element in patch:
        if isinstance(element, Mapping) and element.get(_DIRECTIVE, "merge") == "merge":
            value = element.get(key)
            if _find(survivors, value) is None and _find(new, value) is None:
                new.append(value)
    return survivors + new[: len(keys) - len(survivors)]


def _check_order(
    patch: list[Any], wanted: list[Any], key: str, identity: Callable[[Any], Any], field: str
) -> None:
    """The patch's elements (deletions aside) appear in `$setElementOrder` in the same order."""
    listed = [e for e in patch if not (key != SET and isinstance(e, Mapping) and _DIRECTIVE in e)]
    cursor = 0
    for element in listed:
        value = identity(element)
        while cursor < len(wanted) and not _same(wanted[cursor], value):
            cursor += 1
        if cursor == len(wanted):
            raise PatchError(
                f"the patch's list names {value!r} out of this order, or not at all", field
            )
        cursor += 1


def _identity(key: str, field: str) -> Callable[[Any], Any]:
    if key == SET:
        return lambda value: value

    def merge_key_of(element: Any) -> Any:
        if not isinstance(element, Mapping) or key not in element:
            raise PatchError(f"every element must be an object with {key!r}", field)
        return element[key]

    return merge_key_of


def _has_merge_key(element: Mapping[str, Any], key: str) -> bool:
    return element.get(key) is not None and _is_scalar(element[key])


def _find(values: Sequence[Any], value: object) -> int | None:
    """The first position of `value` in `values` (by `_same`), None if absent."""
    return next((i for i, candidate in enumerate(values) if _same(candidate, value)), None)


def _same(left: object, right: object) -> bool:
    """JSON equality of two scalars: 1 == 1.0, but true != 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and left == right


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
