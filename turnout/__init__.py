"""Turnout: a Kafka-native streaming inference router for LLM requests.

The folders beside this one are the architecture (``schemas``, ``streams``,
``consumers``, ``producers``, ``analytics``); this package is the thin shell that wires
them into the ``turnout`` command.
"""

__version__ = "0.1.0"
