"""Reading untrusted manifest data field by field, collecting every problem.

`Fields` wraps one mapping from a manifest together with its path. Each accessor
returns a usable value even when the input is wrong (the default, or an empty value) and
records a `Problem` saying what would have been valid, so one pass over an object finds
all of its mistakes. Nothing here raises on bad input.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, TypeVar

from osm.model.errors import Problem

T = TypeVar("T")

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def type_name(value: object) -> str:
    """The JSON/YAML name of a value's type, as a user would say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def described(value: object) -> str:
    """A value's type with its article, for messages: ``an integer``, ``a list``, ``null``."""
    name = type_name(value)
    if name == "null":
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def parse_duration(text: str) -> float | None:
    """Parses a Go duration (``24h``, ``1h30m``, ``500ms``, ``0s``, ``0``) into seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    position = 0
    total = 0.0
    for match in _GO_DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        return None
    return total


def format_duration(seconds: float) -> str:
    """Formats seconds the way Go prints a duration (``24h0m0s``, ``1m30s``, ``500ms``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def join(path: str, key: str) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path else key


def suggest(word: str, options: Collection[str]) -> str:
    """`` (did you mean "x"?)`` for a near miss, else an empty string."""
    by_lower = {option.lower(): option for option in options}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.75)
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


class Fields:
    """One mapping of a manifest, read with validation.

    `strict` objects report keys that no accessor asked for when `finish()` is called:
    the CRD kinds are strict (a typo such as ``pathregex`` must not be silently dropped),
    while core Kubernetes kinds are read leniently because the mesh models a subset of
    them and real manifests carry many other fields.
    """

    __slots__ = ("_data", "_problems", "_seen", "path", "present", "strict")

    def __init__(
        self, data: object, path: str, problems: list[Problem], *, strict: bool = True
    ) -> None:
        self.path = path
        self.strict = strict
        self._problems = problems
        self._seen: set[str] = set()
        self.present = data is not None
        if data is None:
            self._data: Mapping[str, Any] = {}
        elif isinstance(data, Mapping):
            self._data = data
        else:
            self.error("", f"must be an object, not {described(data)}")
            self._data = {}
            self.present = False

    # -- recording -------------------------------------------------------------------
    def error(self, key: str, message: str) -> None:
        self._problems.append(Problem(message=message, path=join(self.path, key)))

    def warn(self, key: str, message: str) -> None:
        self._problems.append(
            Problem(message=message, path=join(self.path, key), severity="warning")
        )

    @property
    def problems(self) -> list[Problem]:
        return self._problems

    def has(self, key: str) -> bool:
        return key in self._data and self._data[key] is not None

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self._data.get(key)

    def given(self) -> tuple[str, ...]:
        """The keys of this object whose values are not null, in the order written (for
        objects whose keys are themselves the choice, such as a volume's source)."""
        return tuple(str(key) for key, value in self._data.items() if value is not None)

    def finish(self, ignored: Collection[str] = ()) -> None:
        """Reports unknown keys of a strict object, with a suggestion for near misses."""
        if not self.strict:
            return
        known = self._seen | set(ignored)
        for key in self._data:
            if key not in known:
                self.error(
                    str(key),
                    f"unknown field{suggest(str(key), known)}; "
                    f"valid fields here: {', '.join(sorted(known)) or 'none'}",
                )

    # -- scalars ---------------------------------------------------------------------
    def _missing(self, key: str, required: bool, what: str) -> None:
        # When this object is itself absent (or not an object), that was reported where it
        # is named (or it is optional); its required fields would only repeat the news.
        if required and self.present:
            self.error(key, f"required field is missing (expected {what})")

    def string(
        self,
        key: str,
        *,
        required: bool = False,
        default: str = "",
        choices: Collection[str] | None = None,
        check: Callable[[str], str | None] | None = None,
    ) -> str:
        value = self.raw(key)
        if value is None:
            self._missing(key, required, f"a string{_one_of(choices)}")
            return default
        if not isinstance(value, str):
            self.error(key, f"must be a string{_one_of(choices)}, not {described(value)}")
            return default
        if required and value == "":
            self.error(key, f"must not be empty{_one_of(choices)}")
            return default
        if choices is not None and value not in choices:
            self.error(key, f'"{value}" is not valid{suggest(value, choices)}{_one_of(choices)}')
            return default
        if check is not None and (complaint := check(value)) is not None:
            self.error(key, complaint)
            return default
        return value

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        default: int = 0,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self.raw(key)
        return self.int_value(
            value, key, required=required, default=default, minimum=minimum, maximum=maximum
        )

    def int_value(
        self,
        value: object,
        key: str,
        *,
        required: bool = False,
        default: int = 0,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        bounds = _bounds(minimum, maximum)
        if value is None:
            self._missing(key, required, f"an integer{bounds}")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be an integer{bounds}, not {described(value)}")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.error(key, f"{value} is out of range; expected an integer{bounds}")
            return default
        return value

    def boolean(self, key: str, *, default: bool = False) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, not {described(value)}")
            return default
        return value

    def duration(self, key: str, *, default: float) -> float:
        """A Go duration string (``24h``, ``90m``, ``1h30m``, ``0s``) in seconds."""
        value = self.string(key)
        if not value:
            return default
        seconds = parse_duration(value)
        if seconds is None:
            self.error(key, f'"{value}" is not a duration; expected e.g. "24h", "90m", "1h30m"')
            return default
        return seconds

    # -- containers ------------------------------------------------------------------
    def object(self, key: str, *, required: bool = False, strict: bool | None = None) -> Fields:
        value = self.raw(key)
        if value is None:
            self._missing(key, required, "an object")
        return Fields(
            value,
            join(self.path, key),
            self._problems,
            strict=self.strict if strict is None else strict,
        )

    def items(
        self, key: str, *, required: bool = False, non_empty: bool = False
    ) -> Iterator[tuple[str, Any]]:
        """Yields ``(path, item)`` for each element of a list field."""
        value = self.raw(key)
        if value is None:
            self._missing(key, required, "a list")
            return
        if not isinstance(value, list):
            self.error(key, f"must be a list, not {described(value)}")
            return
        if non_empty and not value:
            self.error(key, "must have at least one item")
        for index, item in enumerate(value):
            yield f"{join(self.path, key)}[{index}]", item

    def objects(
        self, key: str, *, required: bool = False, non_empty: bool = False
    ) -> Iterator[Fields]:
        """Yields a `Fields` for each element of a list of objects."""
        for path, item in self.items(key, required=required, non_empty=non_empty):
            yield Fields(item, path, self._problems, strict=self.strict)

    def str_list(
        self,
        key: str,
        *,
        required: bool = False,
        choices: Collection[str] | None = None,
    ) -> tuple[str, ...]:
        result: list[str] = []
        for path, item in self.items(key, required=required):
            if not isinstance(item, str):
                self._problems.append(
                    Problem(message=f"must be a string, not {described(item)}", path=path)
                )
            elif choices is not None and item not in choices:
                self._problems.append(
                    Problem(
                        message=f'"{item}" is not valid{suggest(item, choices)}{_one_of(choices)}',
                        path=path,
                    )
                )
            else:
                result.append(item)
        return tuple(result)

    def int_list(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> tuple[int, ...]:
        result: list[int] = []
        for path, item in self.items(key):
            bounds = _bounds(minimum, maximum)
            if isinstance(item, bool) or not isinstance(item, int):
                self._problems.append(
                    Problem(message=f"must be an integer{bounds}, not {described(item)}", path=path)
                )
            elif (minimum is not None and item < minimum) or (
                maximum is not None and item > maximum
            ):
                self._problems.append(
                    Problem(
                        message=f"{item} is out of range; expected an integer{bounds}", path=path
                    )
                )
            else:
                result.append(item)
        return tuple(result)

    def str_map(self, key: str, *, check_labels: bool = False) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(key, f"must be an object of strings, not {described(value)}")
            return {}
        result: dict[str, str] = {}
        for name, item in value.items():
            path = f"{join(self.path, key)}.{name}"
            if not isinstance(item, str):
                self._problems.append(
                    Problem(
                        message=f"must be a string, not {described(item)}"
                        " (quote numbers and booleans)",
                        path=path,
                    )
                )
                continue
            if check_labels:
                complaint = check_label_key(str(name)) or check_label_value(item)
                if complaint:
                    self._problems.append(Problem(message=complaint, path=path))
                    continue
            result[str(name)] = item
        return result

    def cidr_list(self, key: str) -> tuple[str, ...]:
        result: list[str] = []
        for path, item in self.items(key):
            try:
                result.append(str(ipaddress.ip_network(str(item), strict=False)))
            except ValueError:
                self._problems.append(
                    Problem(
                        message=f'"{item}" is not a CIDR; expected e.g. "10.0.0.0/8"', path=path
                    )
                )
        return tuple(result)


def _one_of(choices: Collection[str] | None) -> str:
    if not choices:
        return ""
    return "; valid values: " + ", ".join(f'"{c}"' for c in choices)


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" ≥ {minimum}"
    if maximum is not None:
        return f" ≤ {maximum}"
    return ""


# -- Kubernetes name rules -------------------------------------------------------------
def check_dns_label(value: str) -> str | None:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        return (
            f'"{value}" is not a valid name: use at most 63 lowercase letters, digits and '
            "'-', starting and ending with a letter or digit"
        )
    return None


def check_dns_subdomain(value: str) -> str | None:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        return (
            f'"{value}" is not a valid name: use at most 253 lowercase letters, digits, '
            "'-' and '.', starting and ending with a letter or digit"
        )
    return None


def check_label_key(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and check_dns_subdomain(prefix):
        return f'label key "{key}": the prefix must be a DNS subdomain'
    if len(name) > 63 or not LABEL_NAME.match(name):
        return (
            f'label key "{key}" is not valid: at most 63 letters, digits, '
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return None


def check_label_value(value: str) -> str | None:
    if len(value) > 63 or not LABEL_VALUE.match(value):
        return (
            f'label value "{value}" is not valid: at most 63 letters, digits, '
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return None
