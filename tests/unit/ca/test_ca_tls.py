"""End to end: two workloads with leaves of different identities complete mutual TLS over
loopback with the stdlib ssl module (OpenSSL), and a leaf from a foreign CA is refused."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from osm.base.identity import Identity
from osm.ca import builtin
from osm.ca.issuer import IssuedCertificate, LeafRequest

CLIENT = Identity("bookstore", "bookbuyer")
SERVER = Identity("bookstore", "bookstore-v1")


def context(
    side: ssl._SSLMethod, leaf: IssuedCertificate, bundle: bytes, workdir: Path
) -> ssl.SSLContext:
    name = f"{leaf.serial:x}"
    cert, key = workdir / f"{name}.crt", workdir / f"{name}.key"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    tls = ssl.SSLContext(side)
    tls.load_cert_chain(cert, key)
    tls.load_verify_locations(cadata=bundle.decode())
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.verify_flags |= ssl.VERIFY_X509_STRICT
    return tls


Seen = dict[str, Any] | None | BaseException


def handshake(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> tuple[Seen, Seen]:
    """One exchange over loopback: (the server's certificate as the client saw it, the
    client's as the server saw it); each side's exception instead if its side failed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    server_saw: list[Seen] = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server_tls.wrap_socket(connection, server_side=True) as tls:
                server_saw.append(tls.getpeercert())
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as error:
            server_saw.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    client_saw: Seen
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_tls.wrap_socket(raw, server_hostname=SERVER.dns_name()) as tls,
        ):
            client_saw = tls.getpeercert()
            if tls.recv(2) != b"ok":  # TLS 1.3: a refused client learns it here
                raise ConnectionError("the server closed the connection")
    except (ssl.SSLError, OSError) as error:
        client_saw = error
    finally:
        thread.join(10)
        listener.close()
    return client_saw, server_saw[0]


def uri_sans(peer: dict[str, Any]) -> list[str]:
    return [value for kind, value in peer["subjectAltName"] if kind == "URI"]


@pytest.fixture
def live_ca(tmp_path: Path) -> builtin.BuiltinCA:
    return builtin.BuiltinCA.open(tmp_path / "ca", builtin.utc_now())  # OpenSSL uses real time


def test_mutual_tls_between_two_identities(tmp_path: Path, live_ca: builtin.BuiltinCA) -> None:
    now, bundle = builtin.utc_now(), live_ca.trust_bundle().pem
    server = live_ca.issue(LeafRequest.workload(SERVER), now)
    client = live_ca.issue(LeafRequest.workload(CLIENT), now)
    client_saw, server_saw = handshake(
        context(ssl.PROTOCOL_TLS_SERVER, server, bundle, tmp_path),
        context(ssl.PROTOCOL_TLS_CLIENT, client, bundle, tmp_path),
    )
    assert isinstance(client_saw, dict) and uri_sans(client_saw) == [SERVER.spiffe_id()]
    assert isinstance(server_saw, dict) and uri_sans(server_saw) == [CLIENT.spiffe_id()]


def test_a_client_leaf_from_a_foreign_ca_is_refused(
    tmp_path: Path, live_ca: builtin.BuiltinCA
) -> None:
    now, bundle = builtin.utc_now(), live_ca.trust_bundle().pem
    foreign = builtin.BuiltinCA.open(tmp_path / "foreign", now)
    server = live_ca.issue(LeafRequest.workload(SERVER), now)
    intruder = foreign.issue(LeafRequest.workload(CLIENT), now)  # same names, wrong root
    client_saw, server_saw = handshake(
        context(ssl.PROTOCOL_TLS_SERVER, server, bundle, tmp_path),
        context(ssl.PROTOCOL_TLS_CLIENT, intruder, foreign.trust_bundle().pem + bundle, tmp_path),
    )
    assert isinstance(server_saw, ssl.SSLCertVerificationError)
    assert isinstance(client_saw, ssl.SSLError | ConnectionError)


def test_a_server_leaf_from_a_foreign_ca_is_refused(
    tmp_path: Path, live_ca: builtin.BuiltinCA
) -> None:
    now, bundle = builtin.utc_now(), live_ca.trust_bundle().pem
    foreign = builtin.BuiltinCA.open(tmp_path / "foreign", now)
    impostor = foreign.issue(LeafRequest.workload(SERVER), now)
    client = live_ca.issue(LeafRequest.workload(CLIENT), now)
    client_saw, server_saw = handshake(
        context(ssl.PROTOCOL_TLS_SERVER, impostor, foreign.trust_bundle().pem, tmp_path),
        context(ssl.PROTOCOL_TLS_CLIENT, client, bundle, tmp_path),
    )
    assert isinstance(client_saw, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(client_saw)
    assert isinstance(server_saw, ssl.SSLError | OSError)
