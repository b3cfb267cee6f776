"""`turnout route explain`: signals, every candidate with its reason, the plan."""

from __future__ import annotations

import json

from click.testing import CliRunner

from turnout.cli import cli

DEV = "turnout/defaults/dev.toml"


def explain(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["route", "explain", "--config", DEV, *args], input=input)


def test_json_names_every_candidate_and_the_plan():
    result = explain("--json", "--tenant", "acme-eu", "Write a Python function that parses dates")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["signals"]["task_type"] == "code-generation" and out["signals"]["token_method"].startswith("exact:")
    by_model = {c["model"]: c for c in out["candidates"]}
    assert set(by_model) == {"small", "medium", "large", "private"}
    assert by_model["large"]["kept"] is False and "tenants.acme-eu.regions" in by_model["large"]["reason"]
    assert out["plan"][0] == {"model": "medium", "role": "primary", "when": []}
    assert out["policy_version"] == "dev-1"


def test_a_refusal_exits_3_and_names_the_rule():
    result = explain("--json", "my key is sk-proj-4f9aQ2mZ7LxR8tB1nV6cK3wE0yH5uJ2s, why does it fail?")
    assert result.exit_code == 3
    out = json.loads(result.output)
    assert out["plan"] == [] and out["refused"]["code"] == "policy_refused"
    assert out["refused"]["details"]["rule"] == "default_tenant.sensitive.secret = block"
    assert "sk-proj" not in result.output  # the kind is named, never the value


def test_jsonl_prints_one_decision_per_line_and_reports_bad_lines():
    lines = "\n".join([
        json.dumps({"prompt": "Summarize: the meeting moved to May.", "tenant": "acme"}),
        "not json",
        json.dumps({"messages": [{"role": "user", "content": "hello!"}], "tenant": "acme-eu"}),
    ])
    result = explain("--file", "-", input=lines + "\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r.get("tenant") for r in rows] == ["acme", None, "acme-eu"]
    assert rows[1]["line"] == 2 and "not JSON" in rows[1]["error"]
    assert rows[0]["plan"] and rows[2]["plan"]


def test_the_plan_shows_the_confidence_threshold_of_a_low_confidence_escalation():
    from rich.console import Console

    from turnout.render import print_explanation

    explanation = {
        "signals": {},
        "policy_version": "v1",
        "tenant": "acme",
        "route": "cascade",
        "candidates": [],
        "notes": [],
        "plan": [
            {"model": "small", "role": "primary", "when": []},
            {"model": "large", "role": "escalation", "when": ["truncated", "low_confidence"], "min_confidence": 0.6},
        ],
    }
    console = Console(record=True, width=160)
    print_explanation(console, explanation)
    assert "truncated, low_confidence (< 0.6)" in console.export_text()
