"""The reply topic a gateway instance owns: ``<prefix>.gateway.<instance_id>``.

One topic per instance, not the shared responses topic: an instance reads only the
answers to its own calls (several replicas do not each read everyone's), and services
reading ``<prefix>.responses`` never see gateway traffic. The id is stable across
restarts (the host name by default), so a restarted instance reuses its topic instead of
leaving one behind; it reads from the end, because the calls that were waiting on
answers from before the restart ended with the process. The broker keeps the records
only ``reply_retention_s``: no one reads an answer after its call has ended.
"""

from __future__ import annotations

import socket

from turnout.schemas.settings import Settings

PARTITIONS = 1  # its only reader is this instance


def reply_topic(settings: Settings) -> str:
    return settings.gateway.reply_topic(settings.topics, socket.gethostname())


def reply_topic_configs(settings: Settings) -> dict[str, str]:
    """The topic configs it is created with (by the instance's ``TurnoutClient``): records
    kept ``reply_retention_s``."""
    return {"retention.ms": str(int(settings.gateway.reply_retention_s * 1000))}
