"""The real embedded stack (Tansu broker, chDB, simulator, router, workers, sink) for
integration tests, started once per module with the same code ``turnout dev`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import stack_fixture

CONFIG = Path(__file__).with_name("stack.toml")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


stack = stack_fixture(CONFIG, "stack", log_lines=40)
