"""Warnings: how the catalog's answers report problems in the resources.

The one idea: a warning is recorded under the key of the cached answer that found it
(`WarningKey`), so a derived catalog keeps the warnings of the answers it keeps and
drops those of the answers a change made dirty (`Warnings.without`, `Dirty.stale`); an
answer computed again records its warnings again, without duplicates.
"""

from __future__ import annotations

from collections.abc import Callable

from osm.base.identity import Identity
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import CatalogWarning
from osm.model.meta import ObjectRef, Resource

WarningKey = tuple[str, ProxyId | ServiceId | Identity]
"""What a warning is about: ``("pod", ProxyId)`` a proxy's ports and annotations;
``("service", ServiceId)`` a service's ports and splits; ``("identity", Identity)`` the
TrafficTargets to an identity; ``("outbound", ServiceId)`` an address two services
claim (stale after any change: it depends on every service a client reaches)."""

Warn = Callable[[WarningKey, Resource | ObjectRef | None, str], None]
"""Records a warning: its key, the object at fault (or its ref) and the message."""


class Warnings:
    """Warnings by key; `warn` is the `Warn` the rules are given."""

    __slots__ = ("_by_key",)

    def __init__(self, by_key: dict[WarningKey, list[CatalogWarning]] | None = None) -> None:
        self._by_key: dict[WarningKey, list[CatalogWarning]] = {} if by_key is None else by_key

    def warn(self, key: WarningKey, resource: Resource | ObjectRef | None, message: str) -> None:
        ref = resource.ref if isinstance(resource, Resource) else resource
        warning = CatalogWarning(message, ref)
        found = self._by_key.setdefault(key, [])
        if warning not in found:  # an answer may be computed again in a later build
            found.append(warning)

    def all(self) -> list[CatalogWarning]:
        """Every warning recorded (deduplicated, sorted by object and message)."""
        seen = {w for ws in self._by_key.values() for w in ws}
        return sorted(seen, key=lambda w: (str(w.ref or ""), w.message))

    def without(self, stale: Callable[[WarningKey], bool]) -> Warnings:
        """The warnings whose key is not ``stale`` (the lists are shared, not copied)."""
        return Warnings({k: v for k, v in self._by_key.items() if not stale(k)})
