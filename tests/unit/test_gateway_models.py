"""gateway/server.py's ``/v1/models``: ``auto`` and the fleet models the caller's tenant may
use under its policy (``allow_models``, ``deny_models``, ``regions``), served by the real
aiohttp app (without Kafka: the gateway's client is not started)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from factories import DEFAULT_FLEET, deployment, make_settings

from turnout.gateway.keys import key_hash, new_key
from turnout.gateway.server import Gateway, make_app

KEYS = {tenant: new_key() for tenant in ("acme", "globex", "initech", "other")}
# The server keeps the caller under a string key: web.RequestKey is newer than the aiohttp 3.10 it supports.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@pytest.fixture
async def http(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    async def offline(_self: Gateway) -> None:
        return None

    monkeypatch.setattr(Gateway, "start", offline)
    settings = make_settings(
        fleet={**DEFAULT_FLEET, "eu": deployment("sim-eu", region="eu-west-1")},
        tenants={"acme": {"deny_models": ["medium"]}, "globex": {"allow_models": ["small", "large"]}, "initech": {"regions": ["eu-west-1"]}},
        gateway={"keys": [{"hash": key_hash(key), "tenant": tenant} for tenant, key in KEYS.items()]},
    )
    async with TestClient(TestServer(make_app(Gateway(settings)))) as client:
        yield client


async def listed(http: TestClient, tenant: str) -> list[str]:
    answer = await http.get("/v1/models", headers={"Authorization": f"Bearer {KEYS[tenant]}"})
    assert answer.status == 200
    return [model["id"] for model in (await answer.json())["data"]]


@pytest.mark.parametrize(
    ("tenant", "models"),
    [
        ("other", ["auto", "eu", "large", "medium", "small"]),  # the default tenant policy allows every model
        ("acme", ["auto", "eu", "large", "small"]),  # deny_models
        ("globex", ["auto", "large", "small"]),  # allow_models
        ("initech", ["auto", "eu"]),  # regions
    ],
)
async def test_models_lists_what_the_keys_tenant_may_use(http: TestClient, tenant: str, models: list[str]) -> None:
    assert await listed(http, tenant) == models


async def test_a_model_the_tenant_may_not_use_is_not_found(http: TestClient) -> None:
    acme = {"Authorization": f"Bearer {KEYS['acme']}"}
    allowed = await http.get("/v1/models/small", headers=acme)
    assert allowed.status == 200 and (await allowed.json())["owned_by"] == "simulated"
    denied = await http.get("/v1/models/medium", headers=acme)
    assert denied.status == 404
    error = (await denied.json())["error"]
    assert error["code"] == "model_not_found" and "medium" in error["message"] and "auto, eu, large, small" in error["message"]
