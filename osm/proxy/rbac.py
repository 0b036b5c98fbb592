"""RBAC decisions, as Envoy's network and HTTP RBAC filters take them; pure functions.

The one idea: a `Peer` is what the TLS handshake proved (its URI SANs, then DNS SANs, then
subject, as Envoy's `authenticated.principal_name` compares them); `evaluate` walks the
translated policy trees of `model.RbacRules` against it and the destination port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from osm.proxy import model, router

DENIED_BODY: Final = "RBAC: access denied"


@dataclass(frozen=True, slots=True)
class Peer:
    """The downstream's proven identity; `names` empty means not authenticated."""

    names: tuple[str, ...] = ()

    @property
    def authenticated(self) -> bool:
        return bool(self.names)


ANONYMOUS: Final = Peer()


def _principal(principal: model.Principal, peer: Peer) -> bool:
    if isinstance(principal, model.AnyId):
        return True
    if isinstance(principal, model.Authenticated):
        if not peer.authenticated:
            return False
        matcher = principal.name
        return matcher is None or any(matcher.matches(name) for name in peer.names)
    if isinstance(principal, model.OrIds):
        return any(_principal(item, peer) for item in principal.ids)
    if isinstance(principal, model.AndIds):
        return all(_principal(item, peer) for item in principal.ids)
    return not _principal(principal.id, peer)


def _permission(
    permission: model.Permission, port: int, request: router.Request | None, authority: str
) -> bool:
    if isinstance(permission, model.AnyPermission):
        return True
    if isinstance(permission, model.DestinationPort):
        return permission.port == port
    if isinstance(permission, model.OrRules):
        return any(_permission(item, port, request, authority) for item in permission.rules)
    if isinstance(permission, model.AndRules):
        return all(_permission(item, port, request, authority) for item in permission.rules)
    if isinstance(permission, model.NotRule):
        return not _permission(permission.rule, port, request, authority)
    if request is None:
        return False  # L4: there is no request to look at
    if isinstance(permission, model.UrlPath):
        return permission.matcher.matches(request.target.split("?", 1)[0])
    return router.header_matches(permission.header, request, authority)


def matching_policy(
    rules: model.RbacRules,
    peer: Peer,
    port: int,
    request: router.Request | None = None,
    authority: str = "",
) -> str | None:
    """The name of the first policy (in name order) that matches, or None."""
    for name, policy in rules.policies:
        if any(_permission(item, port, request, authority) for item in policy.permissions) and any(
            _principal(item, peer) for item in policy.principals
        ):
            return name
    return None


def evaluate(
    rules: model.RbacRules,
    peer: Peer,
    port: int,
    request: router.Request | None = None,
    authority: str = "",
) -> bool:
    """True when the request (HTTP RBAC: pass `request`) or connection (L4) is allowed."""
    matched = matching_policy(rules, peer, port, request, authority) is not None
    return matched if rules.action == "ALLOW" else not matched


def http_rules(
    filter_config: model.HttpRbacFilter | None, route: model.Route
) -> model.RbacRules | None:
    """The rules that apply to a request: the route's RBACPerRoute overrides the filter's.

    None when the HCM has no RBAC filter or the filter has no rules for this route.
    """
    if filter_config is None:
        return None
    if route.rbac is not None:
        return route.rbac
    return filter_config.rules
