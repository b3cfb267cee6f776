"""The design card's folders are the architecture: ``schemas/`` is the shared contract,
the other folders import it and never each other, and none of them reaches back into
the command-line shell (``turnout/*.py``). One exception: ``gateway/`` (the HTTP face of
the SDK) is built on ``producers/``; nothing imports ``gateway/`` but the shell."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from factories import ARCHITECTURE_FOLDERS, REPO

SHELL_MODULES = sorted(p.stem for p in (REPO / "turnout").glob("*.py"))
# What a folder may import besides ``schemas`` and itself.
ALSO_ALLOWED: dict[str, frozenset[str]] = {"gateway": frozenset({"producers"})}


def python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def module_package(path: Path) -> list[str]:
    """``consumers/worker.py`` -> ['turnout', 'consumers'] (the package the file lives in)."""
    relative = path.relative_to(REPO).with_suffix("")
    return ["turnout", *relative.parts[:-1]]


def imported_modules(source: str, package: list[str]) -> list[tuple[int, str]]:
    """Every module an ``import`` statement names (relative imports resolved against
    ``package``; ``from X import y`` counts as ``X.y``, which is ``X`` itself or below it), plus
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                assert base, f"line {node.lineno}: relative import beyond the top-level package"
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.extend((node.lineno, module if alias.name == "*" else f"{module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(folder: str, source: str, package: list[str]) -> list[str]:
    allowed = {"schemas", folder, *ALSO_ALLOWED.get(folder, ())}
    problems = []
    for line, module in imported_modules(source, package):
        parts = module.split(".")
        if parts[0] in ARCHITECTURE_FOLDERS:  # `import streams`: not how the package is installed
            problems.append(f"line {line}: {module} (import turnout.{module} instead; and only if allowed)")
            continue
        if parts[0] != "turnout":
            continue
        if len(parts) == 1:
            problems.append(f"line {line}: bare 'turnout' package (the shell)")
        elif parts[1] in SHELL_MODULES:
            problems.append(f"line {line}: {module} is the command-line shell")
        elif parts[1] in ARCHITECTURE_FOLDERS and parts[1] not in allowed:
            problems.append(f"line {line}: {module} ({folder}/ may import only {', '.join(f'turnout.{name}' for name in sorted(allowed - {folder}))})")
        elif parts[1] not in ARCHITECTURE_FOLDERS:
            problems.append(f"line {line}: {module} is not an architecture folder")
    return problems


@pytest.mark.parametrize("folder", ARCHITECTURE_FOLDERS)
def test_folder_has_python_files(folder: str) -> None:
    assert python_files(folder), f"{folder}/ holds no .py file: the scan below would prove nothing"


@pytest.mark.parametrize(
    "path",
    [p for folder in ARCHITECTURE_FOLDERS for p in python_files(folder)],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_sibling_or_shell_imports(path: Path) -> None:
    folder = path.relative_to(REPO).parts[0]
    problems = violations(folder, path.read_text(), module_package(path))
    assert not problems, f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


# -- the checker itself can fail -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("folder", "package", "source"),
    [
        ("streams", ["turnout", "streams"], "from turnout.consumers.flow import backoff_s"),
        ("consumers", ["turnout", "consumers"], "import turnout.streams.rules"),
        ("producers", ["turnout", "producers"], "from turnout import analytics"),
        ("analytics", ["turnout", "analytics"], "from ..streams import rules"),
        ("schemas", ["turnout", "schemas"], "from turnout.streams.rules import plan_route"),
        ("schemas", ["turnout", "schemas"], "from ..consumers import flow"),
        ("streams", ["turnout", "streams"], "from turnout.cli import main"),
        ("streams", ["turnout", "streams"], "from turnout import stack"),
        ("streams", ["turnout", "streams"], "from .. import cli"),
        ("streams", ["turnout", "streams"], "import schemas.models"),
        ("streams", ["turnout", "streams"], "import turnout"),
        ("streams", ["turnout", "streams"], "from turnout import *"),
        ("consumers", ["turnout", "consumers"], "import importlib\nimportlib.import_module('turnout.streams.app')"),
        ("consumers", ["turnout", "consumers"], "def f():\n    from turnout.analytics import store\n"),
        ("producers", ["turnout", "producers"], "from turnout.gateway.wire import parse_chat"),
        ("streams", ["turnout", "streams"], "import turnout.gateway"),
        ("schemas", ["turnout", "schemas"], "from ..gateway import errors"),
        ("gateway", ["turnout", "gateway"], "from turnout.streams.rules import plan_route"),
        ("gateway", ["turnout", "gateway"], "from turnout.consumers import worker"),
        ("gateway", ["turnout", "gateway"], "from turnout.gateway_process import running_gateway"),
        ("gateway", ["turnout", "gateway"], "import gateway.wire"),
    ],
)
def test_checker_flags_forbidden_imports(folder: str, package: list[str], source: str) -> None:
    assert violations(folder, source, package)


@pytest.mark.parametrize(
    ("folder", "package", "source"),
    [
        ("streams", ["turnout", "streams"], "from turnout.schemas.models import InferenceRequest"),
        ("streams", ["turnout", "streams"], "from .rules import plan_route"),
        ("consumers", ["turnout", "consumers"], "import turnout.schemas.serde\nimport httpx\nimport asyncio"),
        ("schemas", ["turnout", "schemas"], "from .models import AvroRecord\nfrom . import topics"),
        ("analytics", ["turnout", "analytics"], "from ..schemas import settings"),
        ("analytics", ["turnout", "analytics"], "from turnout import schemas"),
        ("producers", ["turnout", "producers"], "from turnout.producers.client import TurnoutClient"),
        ("gateway", ["turnout", "gateway"], "from turnout.producers.client import TurnoutClient\nfrom turnout.schemas.models import ErrorInfo"),
        ("gateway", ["turnout", "gateway"], "from .wire import parse_chat"),
    ],
)
def test_checker_allows_schemas_and_own_folder(folder: str, package: list[str], source: str) -> None:
    assert violations(folder, source, package) == []


def test_shell_modules_are_known() -> None:
    assert {"cli", "stack"} <= set(SHELL_MODULES)
