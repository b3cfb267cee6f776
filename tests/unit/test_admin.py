"""Per-topic broker settings chosen at creation."""

from __future__ import annotations

from factories import make_settings

from turnout.admin import topic_configs


def test_state_topics_are_compacted_and_prompts_kept_no_longer_than_the_store_keeps_them():
    settings = make_settings(prompts={"store": True, "ttl_days": 9})
    assert topic_configs(settings, settings.topics.policies) == {"cleanup.policy": "compact"}
    assert topic_configs(settings, settings.topics.prompts) == {"retention.ms": str(9 * 24 * 3600 * 1000)}
    assert topic_configs(settings, settings.topics.requests) == {}
