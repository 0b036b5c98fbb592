"""Envoy v3 protos -> the sidecar's model (`osm.proxy.model`), refusing what is not implemented.

The one idea: every message is read through an explicit allow-list of its fields
(`walker.Walker`), so a field or filter that the sidecar does not implement makes the
translation fail with a `ConfigError` naming the resource, the field path and what is
supported. The xDS client turns that error into a NACK; config is never silently ignored.

One module per resource type, as the control plane's `osm.xds` builds them: `lds`, `rds`,
`cds`, `eds` and `sds`, each with ``translate(message)``; `rbac` and `common` hold what
several of them read. `osm.proxy.assembly` picks the module by type URL and checks a whole
set. This runs when a resource arrives, never per request, so none of it is compiled.
Only the two errors live here: whoever applies configuration raises or catches them
(`assembly`, `server`, `xds_client`) without importing a translator.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A resource the sidecar cannot apply; the message is what the NACK carries."""

    def __init__(self, type_name: str, resource_name: str, field_path: str, message: str):
        self.type_name = type_name
        self.resource_name = resource_name
        self.field_path = field_path
        self.message = message
        super().__init__(f"{type_name} {resource_name!r}: {field_path}: {message}")


class MissingReference(ConfigError):
    """A resource names another that is not (yet) present: wait for it, or NACK at the end."""
