"""Service account tokens, as kube-apiserver's: the signing key beside the API CA, the claims
of a bound token, what verification refuses (expired, another issuer or audience, tampered,
another key), the authenticator that also refuses a token whose ServiceAccount is gone, and
the ``serviceaccounts/token`` subresource (TokenRequest) over plain HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from osm.apiserver import auth, local, resources, server
from osm.store import api as store_api
from osm.store.memory import MemoryStore

Client = TestClient[Any, Any]
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
UID = "0b7e7c5e-2f7a-4c1e-9d7e-1a2b3c4d5e6f"
NAMESPACE, NAME = "osm-system", "osm-controller"
ACCOUNT = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME}}
TOKEN_PATH = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{NAME}/token"
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "apiserver"


@pytest.fixture
def tokens(key_dir: Path) -> auth.ServiceAccountTokens:
    return auth.ServiceAccountTokens.open(key_dir)


def payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


# -- the signing key ------------------------------------------------------------------------
def test_the_signing_key_is_private_and_beside_the_ca(
    tokens: auth.ServiceAccountTokens, key_dir: Path
) -> None:
    auth.ApiCA.open(key_dir)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (key_dir, *key_dir.iterdir())}
    assert modes == {
        "apiserver": 0o700,
        "sa.key": 0o600,
        "ca.crt": 0o644,
        "ca.key": 0o600,
        ".lock": 0o600,
    }
    assert (key_dir / "sa.key").read_bytes() != (key_dir / "ca.key").read_bytes()


def test_reopening_verifies_what_the_first_signed(
    tokens: auth.ServiceAccountTokens, key_dir: Path
) -> None:
    issued = tokens.issue(NAMESPACE, NAME, UID, now=NOW)
    again = auth.ServiceAccountTokens.open(key_dir)
    assert again.key_id == tokens.key_id
    assert again.verify(issued.token, now=NOW).uid == UID


def _too_open(path: Path) -> None:
    path.chmod(0o644)


def _not_a_key(path: Path) -> None:
    path.write_text("not a key\n")


def _rsa_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


DAMAGES: list[tuple[str, Callable[[Path], None], str]] = [
    ("readable by others", _too_open, "permissions 0644 are too open"),
    ("not PEM", _not_a_key, "not a valid private key"),
    ("RSA, not P-256", _rsa_key, "not a P-256 ECDSA key"),
]


@pytest.mark.parametrize(("damage", "problem"), [(d, p) for _, d, p in DAMAGES])
def test_a_damaged_signing_key_is_refused_never_replaced(
    tokens: auth.ServiceAccountTokens,
    key_dir: Path,
    damage: Callable[[Path], None],
    problem: str,
) -> None:
    damage(key_dir / "sa.key")
    before = (key_dir / "sa.key").read_bytes()
    with pytest.raises(auth.ApiCAError, match=problem) as raised:
        auth.ServiceAccountTokens.open(key_dir)
    assert raised.value.path == key_dir / "sa.key"
    assert (key_dir / "sa.key").read_bytes() == before


# -- the token ------------------------------------------------------------------------------
def test_a_token_carries_kubes_bound_claims(tokens: auth.ServiceAccountTokens) -> None:
    issued = tokens.issue(NAMESPACE, NAME, UID, expiration=timedelta(hours=2), now=NOW)
    claims = payload(issued.token)
    jti = claims.pop("jti")
    start = int(NOW.timestamp())
    assert claims == {
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": "system:serviceaccount:osm-system:osm-controller",
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "iat": start,
        "nbf": start,
        "exp": start + 7200,
        "kubernetes.io": {
            "namespace": NAMESPACE,
            "serviceaccount": {"name": NAME, "uid": UID},
        },
    }
    assert len(jti) == 36
    assert issued.expires == NOW + timedelta(hours=2)
    header = jwt.get_unverified_header(issued.token)
    assert (header["alg"], header["kid"]) == ("ES256", tokens.key_id)


def test_the_signature_is_es256_by_the_keys_public_half(
    tokens: auth.ServiceAccountTokens, key_dir: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((key_dir / "sa.key").read_bytes(), None)
    issued = tokens.issue(NAMESPACE, NAME, UID)
    decoded = jwt.decode(
        issued.token,
        key.public_key(),  # type: ignore[arg-type]
        algorithms=["ES256"],
        audience=auth.ISSUER,
    )
    assert decoded["sub"] == "system:serviceaccount:osm-system:osm-controller"


def test_a_verified_token_is_the_service_accounts_user(
    tokens: auth.ServiceAccountTokens,
) -> None:
    claims = tokens.verify(tokens.issue(NAMESPACE, NAME, UID, now=NOW).token, now=NOW)
    assert (claims.namespace, claims.name, claims.uid) == (NAMESPACE, NAME, UID)
    assert claims.user == auth.User(
        "system:serviceaccount:osm-system:osm-controller",
        ("system:serviceaccounts", "system:serviceaccounts:osm-system", "system:authenticated"),
    )


@pytest.mark.parametrize(
    ("expiration", "allowed"),
    [
        (timedelta(minutes=9, seconds=59), False),
        (timedelta(minutes=10), True),
        (timedelta(seconds=2**32), True),
        (timedelta(seconds=2**32 + 1), False),
    ],
)
def test_expiration_is_between_ten_minutes_and_2_to_the_32_seconds(
    tokens: auth.ServiceAccountTokens, expiration: timedelta, allowed: bool
) -> None:
    if allowed:
        assert tokens.issue(NAMESPACE, NAME, UID, expiration=expiration, now=NOW).expires == (
            NOW + expiration
        )
    else:
        with pytest.raises(ValueError, match="outside"):
            tokens.issue(NAMESPACE, NAME, UID, expiration=expiration, now=NOW)


def _tampered(token: str) -> str:
    header, _, signature = token.split(".")
    claims = payload(token)
    claims["kubernetes.io"]["namespace"] = "kube-system"
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def _other_issuer(tokens: auth.ServiceAccountTokens, key_dir: Path) -> str:
    other = auth.ServiceAccountTokens(
        tokens._key, issuer="https://other.example", audiences=[auth.ISSUER]
    )
    return other.issue(NAMESPACE, NAME, UID, now=NOW).token


def _other_key(tokens: auth.ServiceAccountTokens, key_dir: Path) -> str:
    other = auth.ServiceAccountTokens.open(key_dir.parent / "other")
    return other.issue(NAMESPACE, NAME, UID, now=NOW).token


def _unsigned(tokens: auth.ServiceAccountTokens, key_dir: Path) -> str:
    claims = payload(tokens.issue(NAMESPACE, NAME, UID, now=NOW).token)
    return jwt.encode(claims, None, algorithm="none")


def _sub_mismatch(tokens: auth.ServiceAccountTokens, key_dir: Path) -> str:
    claims = payload(tokens.issue(NAMESPACE, NAME, UID, now=NOW).token)
    claims["sub"] = "system:serviceaccount:osm-system:someone-else"
    return jwt.encode(claims, tokens._key, algorithm="ES256")


REFUSED: list[tuple[str, Callable[[auth.ServiceAccountTokens, Path], str], datetime, str]] = [
    (
        "expired",
        lambda t, _: t.issue(NAMESPACE, NAME, UID, now=NOW).token,
        NOW + timedelta(hours=1),
        "expired",
    ),
    (
        "not yet valid",
        lambda t, _: t.issue(NAMESPACE, NAME, UID, now=NOW).token,
        NOW - timedelta(minutes=2),
        "not valid before",
    ),
    (
        "another audience",
        lambda t, _: t.issue(NAMESPACE, NAME, UID, audiences=["vault"], now=NOW).token,
        NOW,
        "InvalidAudienceError",
    ),
    ("another issuer", _other_issuer, NOW, "InvalidIssuerError"),
    ("another key", _other_key, NOW, "InvalidSignatureError"),
    (
        "tampered",
        lambda t, _: _tampered(t.issue(NAMESPACE, NAME, UID, now=NOW).token),
        NOW,
        "InvalidSignatureError",
    ),
    ("unsigned (alg none)", _unsigned, NOW, "InvalidAlgorithmError"),
    ("sub is not the account", _sub_mismatch, NOW, "not the kubernetes.io claim's account"),
    ("not a JWT", lambda t, _: "opaque-token", NOW, "DecodeError"),
]


@pytest.mark.parametrize(
    ("make", "at", "reason"), [(m, a, r) for _, m, a, r in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_verification_refuses(
    tokens: auth.ServiceAccountTokens,
    key_dir: Path,
    make: Callable[[auth.ServiceAccountTokens, Path], str],
    at: datetime,
    reason: str,
) -> None:
    with pytest.raises(auth.InvalidToken, match=reason):
        tokens.verify(make(tokens, key_dir), now=at)


def test_a_token_is_valid_until_its_last_second(tokens: auth.ServiceAccountTokens) -> None:
    issued = tokens.issue(NAMESPACE, NAME, UID, now=NOW)
    assert tokens.verify(issued.token, now=issued.expires - timedelta(seconds=1))
    with pytest.raises(auth.InvalidToken, match="expired"):
        tokens.verify(issued.token, now=issued.expires)


def test_another_audience_of_the_api_is_accepted(key_dir: Path) -> None:
    tokens = auth.ServiceAccountTokens.open(key_dir, audiences=[auth.ISSUER, "osm"])
    issued = tokens.issue(NAMESPACE, NAME, UID, audiences=["osm"], now=NOW)
    assert tokens.verify(issued.token, now=NOW).audiences == ("osm",)


# -- the API: authentication and TokenRequest -----------------------------------------------
ADMIN = "Bearer admin"


class Api:
    """The API over a memory store, authenticated as local mode does, plus an admin header
    (a stand-in for the admin's client certificate, which plain HTTP cannot carry)."""

    def __init__(self, store: MemoryStore, client: Client) -> None:
        self.store = store
        self.client = client

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str = ADMIN
    ) -> tuple[int, Any]:
        headers = {"Authorization": token} if token else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        return response.status, await response.json()

    async def token(self, **spec: Any) -> str:
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}
        code, body = await self.call("POST", TOKEN_PATH, {**request, "spec": spec})
        assert code == 201, body
        return f"Bearer {body['status']['token']}"


@pytest.fixture
async def api(tokens: auth.ServiceAccountTokens) -> AsyncIterator[Api]:
    store = MemoryStore()
    authenticator = local.Authenticator(store, tokens)

    async def authenticate(request: web.Request) -> str | None:
        if request.headers.get("Authorization") == ADMIN:
            return "admin"
        return await authenticator(request)

    app = server.ApiServer(store, authenticate, tokens=tokens).make_app()
    async with TestClient(TestServer(app)) as client:
        api = Api(store, client)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        assert (await api.call("POST", "/api/v1/namespaces", namespace))[0] == 201
        accounts = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts"
        assert (await api.call("POST", accounts, ACCOUNT))[0] == 201
        yield api
    await store.close()


async def test_a_token_request_is_answered_as_kube_answers_it(api: Api) -> None:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    code, answer = await api.call("POST", TOKEN_PATH, body)
    assert code == 201
    token = answer["status"].pop("token")
    expires = datetime.strptime(answer["status"].pop("expirationTimestamp"), "%Y-%m-%dT%H:%M:%SZ")
    assert answer["status"] == {}
    assert answer["kind"] == "TokenRequest"
    assert answer["apiVersion"] == "authentication.k8s.io/v1"
    assert answer["spec"] == {
        "audiences": [auth.ISSUER],
        "expirationSeconds": 3600,
        "boundObjectRef": None,
    }
    assert (answer["metadata"]["namespace"], answer["metadata"]["name"]) == (NAMESPACE, NAME)
    claims = payload(token)
    stored = await api.store.get(store_api.ObjectKey("ServiceAccount", NAMESPACE, NAME))
    assert claims["kubernetes.io"]["serviceaccount"]["uid"] == stored["metadata"]["uid"]
    assert expires.replace(tzinfo=UTC).timestamp() == claims["exp"] == claims["iat"] + 3600


async def test_a_service_account_token_authenticates(api: Api) -> None:
    token = await api.token()
    code, pods = await api.call("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", token=token)
    assert (code, pods["kind"]) == (200, "PodList")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"expirationSeconds": 599}, "may not specify a duration less than 10 minutes"),
        ({"expirationSeconds": 2**32 + 1}, "may not specify a duration larger than 2^32"),
        ({"expirationSeconds": "1h"}, "must be an integer"),
        ({"audiences": [""]}, "must be a list of non-empty strings"),
    ],
)
async def test_a_bad_token_request_is_422(api: Api, spec: dict[str, Any], message: str) -> None:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    code, answer = await api.call("POST", TOKEN_PATH, body)
    assert (code, answer["reason"]) == (422, "Invalid")
    assert answer["message"].startswith(f'TokenRequest.authentication.k8s.io "{NAME}" is invalid')
    assert message in answer["message"]


async def test_a_token_for_a_missing_service_account_is_404(api: Api) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/nobody/token"
    code, answer = await api.call("POST", path, {"spec": {}})
    assert (code, answer["reason"], answer["message"]) == (
        404,
        "NotFound",
        'serviceaccounts "nobody" not found',
    )


async def test_a_token_request_takes_only_post(api: Api) -> None:
    code, answer = await api.call("GET", TOKEN_PATH)
    assert (code, answer["reason"]) == (405, "MethodNotAllowed")


@pytest.mark.parametrize(
    "change",
    ["deleted", "deleted and created again"],
)
async def test_the_token_of_a_deleted_service_account_is_401(api: Api, change: str) -> None:
    token = await api.token()
    path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{NAME}"
    assert (await api.call("DELETE", path))[0] == 200
    if change == "deleted and created again":
        accounts = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts"
        assert (await api.call("POST", accounts, ACCOUNT))[0] == 201
    assert await api.call("GET", "/api/v1/namespaces", token=token) == (401, UNAUTHORIZED)


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer ",
        "Bearer not-a-jwt",
        "Basic YWRtaW46YWRtaW4=",
    ],
)
async def test_a_request_without_a_valid_token_is_401_status(api: Api, authorization: str) -> None:
    assert await api.call("GET", "/api/v1/namespaces", token=authorization) == (
        401,
        UNAUTHORIZED,
    )


async def test_a_token_for_another_audience_is_401(api: Api) -> None:
    token = await api.token(audiences=["vault"])
    assert await api.call("GET", "/api/v1/namespaces", token=token) == (401, UNAUTHORIZED)


def test_discovery_lists_the_token_subresource_as_kube_does() -> None:
    listed = resources.api_resource_list("", "v1")
    assert listed is not None
    entry = next(r for r in listed["resources"] if r["name"] == "serviceaccounts/token")
    assert entry == {
        "name": "serviceaccounts/token",
        "singularName": "",
        "namespaced": True,
        "group": "authentication.k8s.io",
        "version": "v1",
        "kind": "TokenRequest",
        "verbs": ["create"],
    }


def test_write_service_account_writes_what_the_kubelet_mounts(tmp_path: Path) -> None:
    directory = local.write_service_account(
        tmp_path / "sa", token="t0ken", ca_pem=b"PEM", namespace=NAMESPACE
    )
    files = {p.name: (p.read_text(), p.stat().st_mode & 0o777) for p in directory.iterdir()}
    assert files == {
        "token": ("t0ken", 0o600),
        "ca.crt": ("PEM", 0o644),
        "namespace": (NAMESPACE, 0o644),
    }


# -- kubectl create token's protobuf body ---------------------------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _envelope(spec: bytes, api_version: bytes = b"authentication.k8s.io/v1") -> bytes:
    type_meta = _field(1, api_version) + _field(2, b"TokenRequest")
    request = _field(1, b"") + _field(2, spec)
    return b"k8s\x00" + _field(1, type_meta) + _field(2, request)


PROTOBUF_BODIES: list[tuple[str, bytes, dict[str, Any]]] = [
    ("empty spec", _envelope(b""), {}),
    (
        "audiences and expiration",
        _envelope(_field(1, b"vault") + _field(1, b"osm") + _field(4, 1200)),
        {"audiences": ["vault", "osm"], "expirationSeconds": 1200},
    ),
    (
        "bound to a pod",
        _envelope(
            _field(3, _field(1, b"Pod") + _field(2, b"v1") + _field(3, b"p") + _field(4, b"u"))
        ),
        {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}},
    ),
]


@pytest.mark.parametrize(
    ("data", "spec"), [(d, s) for _, d, s in PROTOBUF_BODIES], ids=[b[0] for b in PROTOBUF_BODIES]
)
def test_a_protobuf_token_request_reads_as_its_json(data: bytes, spec: dict[str, Any]) -> None:
    assert auth.token_request_from_protobuf(data) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"spec": {}}', "no Kubernetes protobuf magic"),
        (b"k8s\x00\x08\x80", "truncated"),
        (b"k8s\x00" + _varint(1 << 3 | 2) + _varint(50) + b"short", "past the end"),
        (b"k8s\x00" + _varint(1 << 3 | 3), "wire type 3"),
    ],
)
def test_a_malformed_protobuf_body_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        auth.token_request_from_protobuf(data)


async def test_a_protobuf_token_request_is_answered(api: Api) -> None:
    response = await api.client.post(
        TOKEN_PATH,
        data=_envelope(_field(4, 1200)),
        headers={"Authorization": ADMIN, "Content-Type": auth.PROTOBUF},
    )
    answer = await response.json()
    assert (response.status, answer["spec"]["expirationSeconds"]) == (201, 1200)


async def test_a_bound_token_request_is_refused_not_issued_unbound(api: Api) -> None:
    bound = {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}
    code, answer = await api.call("POST", TOKEN_PATH, {**body, "spec": {"boundObjectRef": bound}})
    assert (code, answer["reason"]) == (422, "Invalid")
    assert "spec.boundObjectRef" in answer["message"]
