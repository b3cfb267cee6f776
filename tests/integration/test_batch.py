"""``turnout batch`` on the real stack: a JSONL file of Turnout and OpenAI Batch lines is
published, answered and written back in input order with per-line errors; a job
interrupted halfway and resubmitted publishes only the lines without an answer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path

from click.testing import CliRunner, Result

from stacks import read_topic
from turnout.cli import cli
from turnout.producers.ids import line_request_id

WAIT_S = "120"


def turnout(stack, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=stack.env)


def write_jsonl(path: Path, rows: list[object | str]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def openai_chat(custom_id: str, content: str, model: str = "auto") -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 100}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_a_mixed_file_is_answered_in_input_order_with_per_line_errors(stack, tmp_path):
    job = f"mixed-{uuid.uuid4().hex[:6]}"
    source = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "Hello! How are you today?"},
            openai_chat("request-1", "Write a Python function that parses ISO dates."),
            "{this is not json",
            "",
            openai_chat("request-2", "Hi", model="gpt-4o"),  # not in the fleet: refused at submission
            {"custom_id": "doomed", "prompt": "What is the tallest mountain?", "model": "flaky"},  # pinned to a model that always fails
            openai_chat("request-3", "Summarize: trains run on rails."),
        ],
    )
    state = str(tmp_path / "state")
    submitted = turnout(stack, "batch", "submit", str(source), "--job", job, "--state-dir", state, "--no-progress")
    assert submitted.exit_code == 3, submitted.output  # invalid lines were left out
    assert "line 3: not JSON" in submitted.output and "line 5: model 'gpt-4o' is not in the fleet" in submitted.output
    assert "6 lines, 4 published, 0 already answered, 2 invalid" in submitted.output

    out = tmp_path / "answers.jsonl"
    results = turnout(stack, "batch", "results", job, "-o", str(out), "--wait", WAIT_S, "--state-dir", state, "--no-progress")
    assert results.exit_code == 0, results.output
    assert "6 lines" in results.output and "3 ok, 1 failed, 2 invalid, 0 without an answer yet" in results.output.replace("\n", " ")

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row.get("custom_id") for row in rows] == ["line-1", "request-1", "line-3", "request-2", "doomed", "request-3"], "input order"
    hello, code, not_json, unknown_model, doomed, summary = rows

    assert hello["line"] == 1 and hello["error"] is None and hello["response"]["status"] == "ok"
    assert hello["id"] == line_request_id(job, "line-1") == hello["response"]["id"]

    assert code["id"] == f"batch_req_{line_request_id(job, 'request-1')}" and code["error"] is None
    assert code["response"]["status_code"] == 200
    completion = code["response"]["body"]
    assert completion["object"] == "chat.completion" and completion["choices"][0]["message"]["content"]
    assert completion["model"] == "medium" and completion["turnout"]["route"] == "code", "the router chose by content"
    assert completion["usage"]["completion_tokens"] > 0

    assert not_json["response"] is None and not_json["error"]["code"] == "invalid_line"
    assert unknown_model["response"] is None and "not in the fleet" in unknown_model["error"]["message"]

    assert doomed["response"]["status"] == "error" and doomed["error"]["code"] == "all_backends_failed"
    assert summary["response"]["status_code"] == 200


def test_a_job_interrupted_halfway_and_resubmitted_publishes_only_the_unanswered(stack, tmp_path):
    job = f"resume-{uuid.uuid4().hex[:6]}"
    rows = [{"prompt": f"Question {i}: why is the sky blue?"} if i % 2 else openai_chat(f"r-{i}", f"Question {i}: hello?") for i in range(20)]
    full = write_jsonl(tmp_path / "full.jsonl", rows)
    half = write_jsonl(tmp_path / "half.jsonl", rows[:8])  # what was published before the interruption
    state = str(tmp_path / "state")

    first = turnout(stack, "batch", "submit", str(half), "--job", job, "--state-dir", state, "--no-progress")
    assert first.exit_code == 0 and "8 published" in first.output, first.output
    waited = turnout(stack, "batch", "results", job, "-o", str(tmp_path / "partial.jsonl"), "--wait", WAIT_S, "--state-dir", state, "--no-progress")
    assert waited.exit_code == 0, waited.output

    resumed = turnout(stack, "batch", "submit", str(full), "--job", job, "--state-dir", state, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert "20 lines, 12 published, 8 already answered, 0 invalid" in resumed.output

    out = tmp_path / "answers.jsonl"
    done = turnout(stack, "batch", "results", job, "-o", str(out), "--wait", WAIT_S, "--state-dir", state, "--no-progress")
    assert done.exit_code == 0, done.output
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(answers) == 20 and all(a["error"] is None for a in answers)

    # Without the manifest, the input file gives the same lines, ids and order.
    again = turnout(stack, "batch", "results", job, "-o", str(tmp_path / "again.jsonl"), "--input", str(full), "--state-dir", str(tmp_path / "none"), "--no-progress")
    assert again.exit_code == 0, again.output
    assert [json.loads(x)["id"] for x in (tmp_path / "again.jsonl").read_text().splitlines()] == [a["id"] for a in answers]

    # Each line was answered once: nothing answered before the interruption was served again.
    records = asyncio.run(read_topic(stack.settings, stack.settings.topics.batch(job), expected=20))
    assert Counter(Counter(r.key for r in records).values()) == {1: 20}


def test_results_of_an_unknown_job_say_what_is_missing(stack, tmp_path):
    result = turnout(stack, "batch", "results", "no-such-job", "-o", str(tmp_path / "x.jsonl"), "--state-dir", str(tmp_path))
    assert result.exit_code == 1 and "no manifest of job no-such-job" in result.output and "--input" in result.output
