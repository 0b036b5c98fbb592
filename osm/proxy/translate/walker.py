"""The allow-list walker: how a translator reads one message, and how it refuses.

The one idea: `ListFields()` returns exactly the fields a message sets (the non-default
ones), so `Walker.check` compares them with the fields the sidecar implements and raises a
`ConfigError` for any other, naming the resource, the field path and what is supported.
One `Walker` per resource; translators pass it down with the path they are at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf import any_pb2

from osm.proxy.translate import ConfigError

_M = TypeVar("_M")


class Walker:
    """Translation context for one resource: where we are, and how to refuse."""

    def __init__(self, type_name: str, resource_name: str):
        self.type_name = type_name
        self.resource_name = resource_name

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(self.type_name, self.resource_name, path, message)

    def check(self, message: Any, path: str, allowed: Iterable[str]) -> None:
        allowed_set = set(allowed)
        for descriptor, _ in message.ListFields():
            if descriptor.name not in allowed_set:
                where = f"{path}.{descriptor.name}" if path else descriptor.name
                supported = ", ".join(sorted(allowed_set)) or "none"
                raise self.fail(
                    where,
                    f"field not supported by the Python sidecar "
                    f"(supported in {message.DESCRIPTOR.name}: {supported})",
                )

    def unpack(self, any_message: any_pb2.Any, path: str, expected: Mapping[str, type[_M]]) -> _M:
        cls = expected.get(any_message.type_url)
        if cls is None:
            raise self.fail(
                path,
                f"type {any_message.type_url or '(empty)'} not supported "
                f"(supported: {', '.join(sorted(expected))})",
            )
        message = cls()
        if not any_message.Unpack(message):
            raise self.fail(path, f"cannot unpack {any_message.type_url}")
        return message

    def regex(self, pattern: str, path: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern)
        except re.error as error:
            raise self.fail(path, f"invalid regex {pattern!r}: {error}") from None

    def duration(self, message: Any, path: str) -> float:
        self.check(message, path, ("seconds", "nanos"))
        value = float(message.seconds) + float(message.nanos) / 1e9
        if value < 0:
            raise self.fail(path, "must not be negative")
        return value

    def config_source(self, message: Any, path: str) -> None:
        self.check(message, path, ("ads", "resource_api_version", "initial_fetch_timeout"))
