"""Errors raised by the certificate authority.

One idea: a CA that cannot trust its own files refuses to start instead of minting a new
root, because a new root would split the mesh. Every error names the file involved (when
there is one) and says what the operator can do.
"""

from __future__ import annotations

from pathlib import Path


class CAError(Exception):
    """Base class of every error in `osm.ca`; the message is one line, fit for a user."""


class InvalidKeySpec(CAError, ValueError):
    """An unknown key algorithm or an RSA size outside 2048..4096 (the caller's fault)."""


class CAFileError(CAError):
    """A file of the CA's state directory is missing, unreadable, corrupt or inconsistent."""

    def __init__(self, path: Path, problem: str, remedy: str) -> None:
        super().__init__(f"{path}: {problem}; {remedy}")
        self.path = path
        self.problem = problem
        self.remedy = remedy


class RootKeyMismatch(CAFileError):
    """A root's private key does not belong to its certificate."""


class RootExpired(CAFileError):
    """The signing root is expired (or not yet valid): it cannot sign leaves anyone accepts."""


class NoCA(CAError):
    """The state directory holds no CA and the caller asked not to create one."""


class RotationInProgress(CAError):
    """A root rotation was requested while another one has not finished."""
