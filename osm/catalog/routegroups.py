"""The requests a policy's ``matches`` name: HTTPRouteGroups read as request matches.

The one idea: an Egress or an IngressBackend narrows HTTP traffic to the matches of the
HTTPRouteGroups its ``matches`` list (in its own namespace), read as the TrafficTargets'
rules read them (`RequestMatch.of`); one rule for both kinds, so an egress route and an
ingress route admit the same requests for the same group.
"""

from __future__ import annotations

from osm.catalog.policy import RequestMatch
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn, WarningKey
from osm.model.policy import MATCH_KINDS, Egress, IngressBackend
from osm.model.smi import HTTPRouteGroup


def request_matches(
    state: MeshState,
    policy: Egress | IngressBackend,
    key: WarningKey,
    warn: Warn,
    missing: str,
) -> tuple[tuple[RequestMatch, ...], bool]:
    """The matches of the HTTPRouteGroups ``policy`` names, in order, each once, and
    whether it names any. A group that does not exist adds nothing and is warned under
    ``key``, the warning ending with ``missing`` (what that does to the policy)."""
    named = False
    result: list[RequestMatch] = []
    for index, match in enumerate(policy.matches):
        if match.kind != HTTPRouteGroup.KIND or MATCH_KINDS.get(match.api_group) != match.kind:
            continue
        named = True
        group = state.route_group(policy.namespace, match.name)
        if group is None:
            warn(
                key,
                policy,
                f'spec.matches[{index}]: HTTPRouteGroup "{policy.namespace}/{match.name}" '
                f"does not exist; {missing}",
            )
            continue
        for http_match in group.matches:
            request = RequestMatch.of(http_match)
            if request not in result:
                result.append(request)
    return tuple(result), named
