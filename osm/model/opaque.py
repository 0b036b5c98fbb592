"""Kinds the API keeps for others and the mesh does not read: Secret and ConfigMap.

One idea: the store holds them (the injector's bootstrap Secret, volumes of pods) and the
API checks only their metadata; their content is the business of whoever mounts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from osm.model.meta import Resource


@dataclass(frozen=True, slots=True)
class Secret(Resource):
    KIND = "Secret"


@dataclass(frozen=True, slots=True)
class ConfigMap(Resource):
    KIND = "ConfigMap"
