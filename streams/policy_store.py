"""The router's view of the policy in force, kept current from ``<prefix>.policies``.

Every router instance reads the whole (single-partition, compacted) topic, so all of
them apply the same version. A version that does not fit this router's fleet (a model
it does not know) is refused with a log line and the previous version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging

from turnout.schemas.policy import Policy, PolicyLog
from turnout.schemas.settings import Settings

from .follow import follow

log = logging.getLogger("turnout.router.policy")


class PolicyStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy: Policy = settings.policy
        self.log = PolicyLog()
        self.ready = asyncio.Event()
        self.refused: dict[str, list[str]] = {}  # version -> why it was not applied

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record in; switch versions when the active pointer moves to a valid one."""
        try:
            self.log.apply(key, value)
        except ValueError as exc:
            log.error("unreadable record %r on the policies topic: %s", key, exc)
            return
        candidate = self.log.active_policy()
        if candidate is None or candidate.version == self.policy.version:
            return
        problems = candidate.problems(set(self.settings.fleet))
        if problems:
            self.refused[candidate.version] = problems
            log.error("policy %s refused, %s keeps serving: %s", candidate.version, self.policy.version, "; ".join(problems))
            return
        log.info("policy %s now in force (was %s)", candidate.version, self.policy.version)
        self.policy = candidate

    async def run(self) -> None:
        await follow(self.settings, self.settings.topics.policies, "router-policies", self.apply, self.ready)
