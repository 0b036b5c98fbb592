"""RBAC: Envoy's RBAC rules -> `model.RbacRules`, for the network and HTTP filters and
per route.

The one idea: principals and permissions are small trees; each node becomes its model
twin, recursively, and policies are kept in name order so evaluation is deterministic.
"""

from __future__ import annotations

from typing import Any

from envoy.config.rbac.v3 import rbac_pb2

from osm.proxy import model
from osm.proxy.translate import common
from osm.proxy.translate.walker import Walker


def _principal(walker: Walker, message: Any, path: str) -> model.Principal:
    walker.check(message, path, ("any", "authenticated", "or_ids", "and_ids", "not_id"))
    which = message.WhichOneof("identifier")
    if which == "any":
        return model.AnyId()
    if which == "authenticated":
        where = f"{path}.authenticated"
        walker.check(message.authenticated, where, ("principal_name",))
        if message.authenticated.HasField("principal_name"):
            name = message.authenticated.principal_name
            return model.Authenticated(common.string_match(walker, name, f"{where}.principal_name"))
        return model.Authenticated(None)
    if which in ("or_ids", "and_ids"):
        ids = tuple(
            _principal(walker, item, f"{path}.{which}.ids[{index}]")
            for index, item in enumerate(getattr(message, which).ids)
        )
        return model.OrIds(ids) if which == "or_ids" else model.AndIds(ids)
    if which == "not_id":
        return model.NotId(_principal(walker, message.not_id, f"{path}.not_id"))
    raise walker.fail(path, "a principal is required (any, authenticated, or_ids, ...)")


def _permission(walker: Walker, message: Any, path: str) -> model.Permission:
    walker.check(
        message,
        path,
        ("any", "destination_port", "or_rules", "and_rules", "not_rule", "url_path", "header"),
    )
    which = message.WhichOneof("rule")
    if which == "any":
        return model.AnyPermission()
    if which == "url_path":
        where = f"{path}.url_path"
        walker.check(message.url_path, where, ("path",))
        return model.UrlPath(common.string_match(walker, message.url_path.path, f"{where}.path"))
    if which == "header":
        return model.HeaderPermission(common.header_match(walker, message.header, f"{path}.header"))
    if which == "destination_port":
        return model.DestinationPort(int(message.destination_port))
    if which in ("or_rules", "and_rules"):
        rules = tuple(
            _permission(walker, item, f"{path}.{which}.rules[{index}]")
            for index, item in enumerate(getattr(message, which).rules)
        )
        return model.OrRules(rules) if which == "or_rules" else model.AndRules(rules)
    if which == "not_rule":
        return model.NotRule(_permission(walker, message.not_rule, f"{path}.not_rule"))
    raise walker.fail(path, "a permission is required (any, destination_port, or_rules, ...)")


def rules(walker: Walker, message: rbac_pb2.RBAC, path: str) -> model.RbacRules:
    walker.check(message, path, ("action", "policies"))
    action = rbac_pb2.RBAC.Action.Name(message.action)
    if action not in ("ALLOW", "DENY"):
        raise walker.fail(f"{path}.action", f"{action} not supported (ALLOW, DENY)")
    policies: list[tuple[str, model.Policy]] = []
    for name in sorted(message.policies):
        policy = message.policies[name]
        where = f"{path}.policies[{name!r}]"
        walker.check(policy, where, ("permissions", "principals"))
        permissions = tuple(
            _permission(walker, item, f"{where}.permissions[{index}]")
            for index, item in enumerate(policy.permissions)
        )
        principals = tuple(
            _principal(walker, item, f"{where}.principals[{index}]")
            for index, item in enumerate(policy.principals)
        )
        policies.append((name, model.Policy(permissions, principals)))
    return model.RbacRules("ALLOW" if action == "ALLOW" else "DENY", tuple(policies))
