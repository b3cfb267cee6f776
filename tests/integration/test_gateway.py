"""``turnout gateway`` on the real embedded stack, called with the official ``openai``
package: auto routing and pinned models, the routing headers, OpenAI's errors with the
statuses its SDK maps to its exception classes, a timeout, and tenants kept apart by
their keys. Two gateway instances run side by side, each on its own reply topic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stacks import running_stack
from turnout.gateway.keys import key_hash, new_key
from turnout.gateway_process import running_gateway
from turnout.stack import DevStack

KEY_ACME, KEY_BETA = new_key(), new_key()

CONFIG = f"""
[kafka]
topic_prefix = "gwtest"
partitions = 2

[router]
policy_version = "gw-1"

[fleet.small]
provider = "simulated"
served_model = "sim-small"
price_input_per_mtok = 0.15
price_output_per_mtok = 0.60
capabilities = ["json_schema"]

[fleet.medium]
provider = "simulated"
served_model = "sim-medium"
price_input_per_mtok = 1.0
price_output_per_mtok = 4.0

[fleet.stuck]
provider = "simulated"
served_model = "sim-stuck"
max_retries = 0

[[routes]]
name = "default"
model = "small"

[tenants.acme]
deny_models = ["medium"]

[[gateway.keys]]
hash = "{key_hash(KEY_ACME)}"
tenant = "acme"
name = "acme-ci"

[[gateway.keys]]
hash = "{key_hash(KEY_BETA)}"
tenant = "beta"

[worker]
backoff_base_s = 0.01
backoff_max_s = 0.05

[simulator.default]
latency_ms = 5
latency_jitter_ms = 1

[simulator.profiles.sim-stuck]
timeout_rate = 1.0
hang_s = 30
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with running_stack(CONFIG, tmp_path_factory.mktemp("gateway"), log_lines=40) as running:
        yield running


@pytest.fixture(scope="module")
def base_url(stack: DevStack) -> Iterator[str]:
    with running_gateway({**stack.env, "TURNOUT_GATEWAY__INSTANCE_ID": "main"}, stack.logs / "gateway-main.log") as url:
        yield url


@pytest.fixture(scope="module")
def impatient_url(stack: DevStack) -> Iterator[str]:
    """A second instance that waits one second for an answer."""
    env = {**stack.env, "TURNOUT_GATEWAY__INSTANCE_ID": "impatient", "TURNOUT_GATEWAY__REQUEST_TIMEOUT_S": "1"}
    with running_gateway(env, stack.logs / "gateway-impatient.log") as url:
        yield url


def client(base_url: str, key: str = KEY_ACME) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def ask(base_url: str, prompt: str, *, key: str = KEY_ACME, model: str = "auto", **params):
    """The completion and the response headers of one call."""
    raw = client(base_url, key).chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": prompt}], **params)
    return raw.parse(), raw.headers


def test_auto_routing_answers_in_openai_format_with_routing_headers(base_url: str) -> None:
    completion, headers = ask(base_url, "Say hello to the gateway", user="u-42")

    assert completion.object == "chat.completion"
    assert completion.model == "small"  # the model that answered, not "auto"
    assert completion.choices[0].message.role == "assistant"
    assert "Say hello to the gateway" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0
    assert completion.id == f"chatcmpl-{headers['x-turnout-request-id']}"
    assert headers["x-turnout-route"] == "default"
    assert headers["x-turnout-model"] == "small"
    assert headers["x-turnout-policy-version"] == "gw-1"
    assert headers["x-turnout-fallback-depth"] == "0"
    assert headers["x-turnout-tenant"] == "acme"
    assert float(headers["x-turnout-cost-usd"]) > 0
    assert headers["x-turnout-cache-hit"] == "false"


def test_a_concrete_model_pins_the_request(base_url: str) -> None:
    completion, headers = ask(base_url, "Pinned, please", key=KEY_BETA, model="medium", max_completion_tokens=5)

    assert completion.model == "medium"
    assert headers["x-turnout-route"] == "pinned"
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].finish_reason == "length"


def test_structured_output_follows_the_json_schema(base_url: str) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
    completion, headers = ask(base_url, "Name a city", response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})

    assert isinstance(json.loads(completion.choices[0].message.content)["city"], str)
    assert headers["x-turnout-validation"] in ("passed", "repaired")


def test_a_streamed_answer_arrives_as_chunks_then_done(base_url: str) -> None:
    raw = client(base_url).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Stream me an answer"}], stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-turnout-tenant"] == "acme"
    chunks = list(raw.parse())

    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) > 1, "the answer came in one piece: not streamed"
    text = "".join(pieces)
    whole, _ = ask(base_url, "Stream me an answer")  # the same prompt unstreamed: the response cache answers it
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {chunk.id for chunk in chunks} == {f"chatcmpl-{raw.headers['x-turnout-request-id']}"}
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_a_refused_stream_is_a_plain_http_error(base_url: str) -> None:
    """Nothing was streamed yet when the answer failed: the caller gets the status."""
    with pytest.raises(openai.NotFoundError):
        ask(base_url, "hello", model="nope", stream=True)
    with pytest.raises(openai.AuthenticationError):
        ask(base_url, "hello", key=new_key(), stream=True)


def test_models_lists_auto_and_the_fleet_models_the_tenant_may_use(base_url: str) -> None:
    assert [model.id for model in client(base_url, KEY_BETA).models.list()] == ["auto", "medium", "small", "stuck"]
    assert [model.id for model in client(base_url).models.list()] == ["auto", "small", "stuck"]  # acme's policy denies medium
    assert client(base_url).models.retrieve("small").owned_by == "simulated"
    for unknown in ("gpt-4o", "medium"):
        with pytest.raises(openai.NotFoundError):
            client(base_url).models.retrieve(unknown)
    assert httpx.get(base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}  # no key needed


def test_a_wrong_or_missing_key_is_refused(base_url: str) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong:
        ask(base_url, "hello", key=new_key())
    assert wrong.value.code == "invalid_api_key"
    missing = httpx.post(f"{base_url}/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 401
    assert "API key" in missing.json()["error"]["message"]


def test_an_unknown_model_is_not_found(base_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ask(base_url, "hello", model="gpt-4o")
    assert caught.value.code == "model_not_found"
    assert "auto" in caught.value.message


def test_bad_requests_are_refused_with_400_naming_the_parameter(base_url: str) -> None:
    bad_json = httpx.post(f"{base_url}/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {KEY_ACME}"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    huge = httpx.post(f"{base_url}/chat/completions", content=b"x" * (5 << 20), headers={"Authorization": f"Bearer {KEY_ACME}"})
    assert huge.status_code == 413 and "gateway.max_body_bytes" in huge.json()["error"]["message"]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as tools:
        ask(base_url, "hello", tools=[tool])
    assert tools.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as stream_options:
        ask(base_url, "hello", stream_options={"include_usage": True})
    assert stream_options.value.param == "stream_options"


def test_a_call_without_an_answer_in_time_gets_504(impatient_url: str) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        ask(impatient_url, "This model never answers", model="stuck")
    assert caught.value.status_code == 504
    assert caught.value.code == "timeout"


def test_a_second_instance_answers_on_its_own_reply_topic(impatient_url: str, base_url: str) -> None:
    completion, headers = ask(impatient_url, "Through the other instance")
    assert "Through the other instance" in completion.choices[0].message.content
    assert headers["x-turnout-model"] == "small"


def test_a_restarted_instance_reuses_its_reply_topic(stack: DevStack) -> None:
    env = {**stack.env, "TURNOUT_GATEWAY__INSTANCE_ID": "restarted"}
    for run in range(2):
        with running_gateway(env, stack.logs / f"gateway-restarted-{run}.log") as url:
            completion, _ = ask(url, f"Run {run} of the restarted instance")
            assert f"Run {run} of the restarted instance" in completion.choices[0].message.content

    topics = asyncio.run(list_topics(stack))
    assert [t for t in topics if t.startswith("gwtest.gateway.restarted")] == ["gwtest.gateway.restarted"]  # one topic, both runs


async def list_topics(stack: DevStack) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


def test_one_tenant_is_never_served_another_tenants_answer(base_url: str) -> None:
    """The response cache answers acme's repeated prompt, never beta's identical one; and
    concurrent calls of both tenants each get the answer to their own prompt."""
    prompt = "What is the capital of the tenant boundary?"
    first, _ = ask(base_url, prompt)
    _, again = ask(base_url, prompt)
    theirs, beta_headers = ask(base_url, prompt, key=KEY_BETA)
    assert again["x-turnout-cache-hit"] == "true"
    assert beta_headers["x-turnout-cache-hit"] == "false"
    assert beta_headers["x-turnout-request-id"] != first.id.removeprefix("chatcmpl-")

    async def both_tenants() -> list[tuple[str, str, str]]:
        async def one(key: str, tenant: str, n: int) -> tuple[str, str, str]:
            async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30) as aclient:
                raw = await aclient.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": f"{tenant} question number {n}"}]
                )
                return f"{tenant} question number {n}", raw.parse().choices[0].message.content, raw.headers["x-turnout-tenant"]

        return await asyncio.gather(*(one(key, tenant, n) for n in range(8) for key, tenant in ((KEY_ACME, "acme"), (KEY_BETA, "beta"))))

    for prompt, answer, tenant in asyncio.run(both_tenants()):
        assert prompt in answer
        assert prompt.startswith(tenant)


def test_the_tenant_policy_of_the_key_applies(base_url: str) -> None:
    """acme's policy denies medium; the tenant a caller claims in metadata changes nothing.

    Last in the module: the router's refusal is its first send to the gateway's reply
    topic, created after the router started, and on Tansu that first send breaks the
    dead-letter record sent just before it (NotLeaderForPartition), which stops the router.
    """
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(base_url, "Pinned to a denied model", model="medium", metadata={"tenant": "beta"})
    assert caught.value.code == "policy_refused"
    assert caught.value.response.headers["x-turnout-tenant"] == "acme"
