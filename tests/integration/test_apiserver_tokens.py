"""In-cluster clients against the local API: the service account directory a kubelet mounts
(``token``, ``ca.crt``, ``namespace``) and ``KUBERNETES_SERVICE_HOST/PORT`` are all that
lightkube's own in-cluster configuration and `KubeClient.from_kubeconfig(None)` need, and
the machine's kubectl requests a token (``kubectl create token``) and uses it (``--token``),
reaching the server by the in-cluster name ``kubernetes.default.svc``.

Which user a request ran as is read from the server's own authenticator (wrapped to
record), since the local API authorizes every authenticated user alike.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import lightkube
import pytest
import yaml

from osm.kube.client import KubeClient
from osm.kube.errors import ApiError
from tests.kubectl_harness import Cluster, cluster, needs_kubectl

pytestmark = pytest.mark.timeout(120)

NAMESPACE, ACCOUNT = "osm-system", "osm-controller"
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path) as running:
        objects = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {ACCOUNT}, namespace: {NAMESPACE}}}
"""
        (await running.run("create -f -", stdin=objects)).ok()
        yield running


@pytest.fixture
def users(api: Cluster) -> list[str | None]:
    """Every request's user, as the server authenticated it."""
    seen: list[str | None] = []
    authenticate = api.api.server.authenticate

    async def recording(request: Any) -> str | None:
        found = authenticate(request)
        user = found if found is None or isinstance(found, str) else await found
        seen.append(user)
        return user

    api.api.server.authenticate = recording
    return seen


@pytest.fixture
async def mounted(api: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kubelet's part: the account's directory and the Service's address in the env."""
    directory = await api.api.write_service_account(tmp_path / "sa", NAMESPACE, ACCOUNT)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.api.port))
    return directory


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"written-by": "in-cluster"},
    }


async def test_lightkubes_in_cluster_configuration_lists_and_creates(
    api: Cluster, mounted: Path, users: list[str | None]
) -> None:
    config = lightkube.KubeConfig.from_service_account(service_account=mounted)
    async with KubeClient(lightkube.AsyncClient(config=config, trust_env=False)) as client:
        accounts, _ = await client.list("ServiceAccount", NAMESPACE)
        created = await client.create(configmap("from-lightkube"))
    assert [a["metadata"]["name"] for a in accounts] == [ACCOUNT]
    assert created["metadata"]["uid"]
    assert users == [USER, USER]
    stored = json.loads((await api.run(f"get cm from-lightkube -n {NAMESPACE} -o json")).ok())
    assert stored["data"] == {"written-by": "in-cluster"}


async def test_from_kubeconfig_none_is_the_in_cluster_client(
    api: Cluster, mounted: Path, users: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # lightkube binds its default directory when the method is defined: move the default.
    function = lightkube.KubeConfig.from_service_account.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(function, "__defaults__", (str(mounted),))
    async with KubeClient.from_kubeconfig(None) as client:
        accounts, _ = await client.list("ServiceAccount", NAMESPACE)
        await client.create(configmap("from-default-path"))
    assert [a["metadata"]["name"] for a in accounts] == [ACCOUNT]
    assert users == [USER, USER]


async def test_the_token_dies_with_its_service_account(api: Cluster, mounted: Path) -> None:
    config = lightkube.KubeConfig.from_service_account(service_account=mounted)
    async with KubeClient(lightkube.AsyncClient(config=config, trust_env=False)) as client:
        await client.list("Pod", NAMESPACE)
        (await api.run(f"delete serviceaccount {ACCOUNT} -n {NAMESPACE}")).ok()
        with pytest.raises(ApiError) as refused:
            await client.list("Pod", NAMESPACE)
    assert (refused.value.code, refused.value.reason) == (401, "Unauthorized")


def credential_free_kubeconfig(api: Cluster, path: Path) -> Path:
    """A kubeconfig naming the server and its CA only: kubectl's credentials come from
    ``--token``, so no client certificate can authenticate in its stead."""
    ca = base64.b64encode(api.api.ca.cert_pem).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": api.api.url, "certificate-authority-data": ca},
                    }
                ],
                "contexts": [{"name": "local", "context": {"cluster": "local"}}],
                "current-context": "local",
            }
        )
    )
    return path


@needs_kubectl
async def test_kubectl_creates_a_token_and_uses_it(
    api: Cluster, tmp_path: Path, users: list[str | None]
) -> None:
    token = (await api.run(f"create token {ACCOUNT} -n {NAMESPACE}")).ok().strip()
    assert token.count(".") == 2
    bare = credential_free_kubeconfig(api, tmp_path / "bare.yaml")
    users.clear()
    # The in-cluster name: the server certificate must carry it.
    got = await api.run(
        f"--token={token} --tls-server-name=kubernetes.default.svc get pods -n {NAMESPACE}",
        kubeconfig=bare,
    )
    assert got.code == 0, got.err
    assert "No resources found" in got.err
    assert users and set(users) == {USER}
    refused = await api.run("--token=not.a.token get pods", kubeconfig=bare)
    assert refused.code == 1
    assert "error: You must be logged in to the server (Unauthorized)" in refused.err


@needs_kubectl
async def test_kubectl_create_token_takes_a_duration_of_ten_minutes_or_more(
    api: Cluster,
) -> None:
    token = (await api.run(f"create token {ACCOUNT} -n {NAMESPACE} --duration=20m")).ok()
    part = token.strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert claims["exp"] - claims["iat"] == 1200
    short = await api.run(f"create token {ACCOUNT} -n {NAMESPACE} --duration=5m")
    assert short.code == 1
    assert "may not specify a duration less than 10 minutes" in short.err


@needs_kubectl
async def test_discovery_offers_the_token_subresource(api: Cluster) -> None:
    listed = json.loads((await api.run("get --raw /api/v1")).ok())
    entry = next(r for r in listed["resources"] if r["name"] == "serviceaccounts/token")
    assert (entry["kind"], entry["verbs"]) == ("TokenRequest", ["create"])
