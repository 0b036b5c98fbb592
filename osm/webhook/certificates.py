"""What admission asks the mesh CA for: proxies' bootstrap certificates and the webhook
servers' own serving certificates.

One idea: both are plain `LeafRequest`s to the one mesh CA, so the API server trusts the
webhooks through the mesh's root (the caBundle of the webhook configurations) and a proxy
is authenticated by the ADS server through the same root. A CA that cannot issue a
bootstrap certificate is `AdmissionUnavailable`: the server's fault, never the pod's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from osm.base import identity
from osm.base.identity import Identity
from osm.ca.errors import CAError
from osm.ca.issuer import Issuer, LeafRequest
from osm.injector.admission import AdmissionUnavailable, Issue
from osm.injector.values import BootstrapCertificate

SERVING_VALIDITY = timedelta(days=1)
"""A webhook server's certificate lives a day; the server renews it at half its life."""


def issuing(
    issuer: Issuer, clock: Callable[[], datetime], trust_domain: str = identity.TRUST_DOMAIN
) -> Issue:
    """`Issue` from a CA: `LeafRequest.bootstrap` (URI SAN: the identity's SPIFFE ID, by
    which the ADS server authenticates the proxy). A CA that cannot issue raises
    `AdmissionUnavailable`."""

    def issue(workload: Identity, proxy_uuid: uuid.UUID) -> BootstrapCertificate:
        request = LeafRequest.bootstrap(workload, proxy_uuid, trust_domain=trust_domain)
        try:
            issued = issuer.issue(request, clock())
        except CAError as error:
            raise AdmissionUnavailable(
                f"the CA cannot issue the bootstrap certificate of {workload}: {error}"
            ) from error
        return BootstrapCertificate(issued.cert_pem, issued.key_pem, issued.trust_bundle_pem)

    return issue


def service_names(service: str, namespace: str) -> tuple[str, ...]:
    """The DNS names an API server dials a webhook Service by (it verifies the first,
    ``<service>.<namespace>.svc``, as kube-apiserver does)."""
    base = f"{service}.{namespace}.svc"
    return (base, f"{base}.{identity.CLUSTER_DOMAIN}")


def serving_request(
    service: str, namespace: str, validity: timedelta = SERVING_VALIDITY
) -> LeafRequest:
    """The serving leaf of the webhook Service `service` in `namespace` (CN: its first
    DNS name)."""
    names = service_names(service, namespace)
    return LeafRequest(names[0], validity, dns_names=names)
