"""Workload identity: a Kubernetes service account, named as SPIFFE and OSM name it.

One idea: an identity is a (namespace, service account) pair validated once at construction;
every certificate name is derived from it and a trust domain, never assembled by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from osm.ca.errors import InvalidIdentity

DEFAULT_TRUST_DOMAIN = "cluster.local"

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAMESPACE = re.compile(_LABEL)
_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def _check_subdomain(value: str, what: str) -> None:
    if len(value) > 253 or not _SUBDOMAIN.fullmatch(value):
        raise InvalidIdentity(
            f"invalid {what} {value!r}: expected a DNS-1123 subdomain "
            "(lowercase letters, digits, '-' and '.', at most 253 characters)"
        )


def validate_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` if it is a DNS-1123 subdomain, else raise `InvalidIdentity`."""
    _check_subdomain(trust_domain, "trust domain")
    return trust_domain


@dataclass(frozen=True, order=True)
class Identity:
    """A workload identity: the service account `service_account` in `namespace`.

    Construction validates both parts (namespace: DNS-1123 label; service account: DNS-1123
    subdomain), so every `Identity` yields valid SPIFFE IDs and DNS names.
    """

    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise InvalidIdentity(
                f"invalid namespace {self.namespace!r}: expected a DNS-1123 label "
                "(lowercase letters, digits and '-', at most 63 characters)"
            )
        _check_subdomain(self.service_account, "service account")

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse ``"<namespace>/<service-account>"``; raise `InvalidIdentity` otherwise."""
        namespace, sep, service_account = text.partition("/")
        if not sep or "/" in service_account:
            raise InvalidIdentity(f"invalid identity {text!r}: expected NAMESPACE/SERVICEACCOUNT")
        return cls(namespace, service_account)

    def spiffe_id(self, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
        """The SPIFFE ID, ``spiffe://<trust-domain>/ns/<ns>/sa/<sa>`` (the URI SAN)."""
        return f"spiffe://{trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def dns_name(self, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
        """OSM's DNS name for the identity, ``<sa>.<ns>.<trust-domain>`` (DNS SAN and CN)."""
        return f"{self.service_account}.{self.namespace}.{trust_domain}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service_account}"
