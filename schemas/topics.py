"""Topic names: one place that knows how ``<prefix>`` becomes a topic."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEGAL = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Topics:
    """The topics of one Turnout installation, all under ``prefix``."""

    prefix: str

    def __post_init__(self) -> None:
        if not _LEGAL.match(self.prefix):
            raise ValueError(f"topic prefix {self.prefix!r} may only hold letters, digits, '.', '_' and '-'")

    @property
    def requests(self) -> str:
        return f"{self.prefix}.requests"

    @property
    def responses(self) -> str:
        return f"{self.prefix}.responses"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def health(self) -> str:
        return f"{self.prefix}.health"

    @property
    def policies(self) -> str:
        return f"{self.prefix}.policies"

    @property
    def spend(self) -> str:
        """The router's spend table (changelog): cost per tenant, month and events partition."""
        return f"{self.prefix}.spend"

    @property
    def feedback(self) -> str:
        return f"{self.prefix}.feedback"

    @property
    def prompts(self) -> str:
        """Redacted prompt text of the requests whose tenant opted in (``[prompts]``)."""
        return f"{self.prefix}.prompts"

    def model(self, model_id: str) -> str:
        return f"{self.prefix}.model.{model_id}"

    def batch(self, job_id: str) -> str:
        """A batch job's reply topic: its answers, and nothing else, so the job can be read
        back (and resubmitted without paying twice) on its own."""
        if not _LEGAL.match(job_id):
            raise ValueError(f"batch job id {job_id!r} may only hold letters, digits, '.', '_' and '-'")
        return f"{self.prefix}.batch.{job_id}"

    def shared(self) -> list[str]:
        """The topics every installation has, whatever its fleet."""
        return [self.requests, self.responses, self.events, self.dlq, self.health, self.feedback, self.policies, self.spend, self.prompts]

    def single_partition(self) -> set[str]:
        """Topics whose records must stay in order across keys (a version before the
        pointer that activates it)."""
        return {self.policies}

    def compacted(self) -> set[str]:
        """Topics that keep only the latest value per key."""
        return {self.health, self.policies, self.spend}
