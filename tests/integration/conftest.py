"""The real embedded stack (Tansu broker, chDB, simulator, router, workers, sink) for
integration tests, started once per module with the same code ``turnout dev`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.stack import DevStack

CONFIG = Path(__file__).with_name("stack.toml")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    stack = DevStack(CONFIG, tmp_path_factory.mktemp("stack"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        for log in sorted(stack.logs.glob("*.log")):  # shown by pytest only when a test failed
            print(f"==== {log.name} (last 40 lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
