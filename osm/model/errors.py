"""Problems found in manifests: where they are, whose object, which field, what is valid.

Parsing never stops at the first mistake: every problem in a file is collected and
reported at once, so a user fixes a manifest in one pass. A `Problem` carries enough
context to print a line a user can act on without reading the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake (or, as a warning, one suspicious thing) in one object.

    `document` is the 0-based index of the YAML document inside `source`; `path` is a
    kubectl-style field path such as ``spec.ports[1].targetPort``.
    """

    message: str
    path: str = ""
    source: str = ""
    document: int | None = None
    kind: str = ""
    namespace: str = ""
    name: str = ""
    severity: Severity = "error"

    def located(
        self,
        *,
        source: str | None = None,
        document: int | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> Problem:
        """Returns a copy with the location fields filled in where they are still empty."""
        return replace(
            self,
            source=self.source or (source or ""),
            document=self.document if self.document is not None else document,
            kind=self.kind or (kind or ""),
            namespace=self.namespace or (namespace or ""),
            name=self.name or (name or ""),
        )

    @property
    def object_ref(self) -> str:
        """``Kind ns/name``, ``Kind name`` or just the kind, as far as it is known."""
        who = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return " ".join(part for part in (self.kind, who) if part)

    def __str__(self) -> str:
        where = self.source or "<input>"
        if self.document is not None:
            where += f" (document {self.document + 1})"
        parts = [where]
        if self.severity != "error":
            parts.append(self.severity)
        parts.extend(part for part in (self.object_ref, self.path) if part)
        parts.append(self.message)
        return ": ".join(parts)


class ValidationFailed(Exception):
    """Raised with every error found; warnings travel along for display."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        super().__init__(f"{len(errors)} error(s):\n" + "\n".join(str(p) for p in errors))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
