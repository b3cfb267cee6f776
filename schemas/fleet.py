"""The fleet catalogue: what each model deployment is, can do, costs and where it runs.

Routing filters and ranks on these facts, workers call the backends they describe, and
the analytics price tokens with them, so they live in the shared contract.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from .section import Section

Capability = Literal["vision", "tools", "json_schema"]
CAPABILITIES: tuple[str, ...] = ("vision", "tools", "json_schema")


class ModelDeployment(Section):
    """One model deployment in the fleet catalogue."""

    provider: str = Field(default="openai-compatible", description="who serves it: openai, vllm, simulated, …")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL ending in /v1; unset for provider 'simulated'"
    )
    served_model: str = Field(description="the model name sent to the backend")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    concurrency: int = Field(default=8, ge=1, le=1024)
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    price_input_per_mtok: float = Field(default=0.0, ge=0, description="USD per million input tokens")
    price_output_per_mtok: float = Field(default=0.0, ge=0, description="USD per million output tokens")
    region: str = Field(default="local", description="where the data is processed, e.g. eu-west-1 or on-prem-paris")
    on_prem: bool = Field(default=False, description="runs on infrastructure the operator controls")
    capabilities: frozenset[Capability] = Field(default=frozenset(), description="vision, tools, json_schema")
    context_window: int = Field(default=8_192, ge=256, description="input plus output tokens")
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
        return self

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.price_input_per_mtok + output_tokens * self.price_output_per_mtok) / 1e6
