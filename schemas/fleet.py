"""The fleet catalogue: what each model deployment is, can do, costs and where it runs.

Routing filters and ranks on these facts, workers call the backends they describe, and
the analytics price tokens with them, so they live in the shared contract.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from .section import Section

Capability = Literal["vision", "tools", "json_schema", "embeddings"]
CAPABILITIES: tuple[str, ...] = ("vision", "tools", "json_schema", "embeddings")
EMBEDDINGS = "embeddings"
"""The capability of an embedding model. The router sends it embedding requests only,
and embedding requests only to it: one fleet entry is one served model, and a model
that embeds does not chat (nor the reverse)."""
Api = Literal["openai", "anthropic", "gemini"]
KEY_SOURCES: tuple[str, ...] = ("api_key", "api_key_env", "api_key_file")


class ModelDeployment(Section):
    """One model deployment in the fleet catalogue."""

    provider: str = Field(
        default="openai-compatible", description="who serves it, as recorded in events: openai, azure, vllm, anthropic, simulated, …"
    )
    api: Api = Field(
        default="openai",
        description="the wire format: openai (chat completions: OpenAI, Azure, vLLM, Ollama, llama.cpp, TGI), "
        "anthropic (Messages API) or gemini (generateContent)",
    )
    base_url: str | None = Field(
        default=None,
        description="API base URL: …/v1 for openai and anthropic (https://api.anthropic.com/v1), "
        "https://generativelanguage.googleapis.com/v1beta for gemini; unset for provider 'simulated'",
    )
    served_model: str = Field(description="the model name sent to the backend")
    api_key: SecretStr | None = Field(default=None, description="the API key itself; prefer api_key_env or api_key_file")
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    api_key_file: str | None = Field(
        default=None, description="file holding the API key, e.g. a Docker or Kubernetes secret mount; surrounding whitespace is ignored"
    )
    concurrency: int = Field(default=8, ge=1, le=1024)
    timeout_s: float = Field(
        default=30.0, gt=0, description="the longest wait for a connection, and the longest silence while reading an answer (between two events of a stream)"
    )
    stream: bool = Field(
        default=False,
        description="ask chat answers as server-sent events, to record their time to first token (ttft_ms); the answer is the same "
        "either way, and embedding calls never stream. Off by default: reading ~60 events costs a worker more CPU than one JSON "
        "body (bench-worker, zero-latency backend: 773 against 1,758 requests/s, 2.1 against 0.9 ms added; bench/RESULTS.md). "
        "false: ttft_ms is left null",
    )
    max_retries: int = Field(default=2, ge=0, le=10)
    price_input_per_mtok: float = Field(default=0.0, ge=0, description="USD per million input tokens")
    price_output_per_mtok: float = Field(default=0.0, ge=0, description="USD per million output tokens")
    region: str = Field(default="local", description="where the data is processed, e.g. eu-west-1 or on-prem-paris")
    on_prem: bool = Field(default=False, description="runs on infrastructure the operator controls")
    capabilities: frozenset[Capability] = Field(
        default=frozenset(), description="vision, tools, json_schema; or embeddings for an embedding model, which serves embedding requests only"
    )
    context_window: int = Field(
        default=8_192, ge=256, description="input plus output tokens; for an embedding model, the tokens of one text (not checked by the router)"
    )
    max_output_tokens: int = Field(default=4_096, ge=1)
    typical_latency_ms: float = Field(default=500.0, ge=0, description="time to a complete answer of typical size")
    quality_tier: int = Field(default=2, ge=1, le=5, description="1 (basic) to 5 (frontier)")
    tokenizer: str | None = Field(default=None, description="e.g. o200k_base, for exact token counts")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute the provider allows")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute the provider allows")

    @model_validator(mode="after")
    def _needs_url(self) -> ModelDeployment:
        if self.base_url is None and self.provider != "simulated":
            raise ValueError(f"base_url is required for provider {self.provider!r}")
        if self.provider == "simulated" and self.api != "openai":
            raise ValueError(f"provider 'simulated' speaks the openai api, not {self.api!r}")
        if self.api == "anthropic" and EMBEDDINGS in self.capabilities:
            raise ValueError("capabilities: the anthropic api has no embeddings endpoint (use an openai or gemini deployment)")
        return self

    @model_validator(mode="after")
    def _one_key_source(self) -> ModelDeployment:
        chosen = [name for name in KEY_SOURCES if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ValueError(f"set at most one of {', '.join(KEY_SOURCES)} (found {' and '.join(chosen)})")
        return self

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.price_input_per_mtok + output_tokens * self.price_output_per_mtok) / 1e6
