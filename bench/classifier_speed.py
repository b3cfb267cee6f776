"""How long the task classifier takes per request, beside its budget.

The whole routing decision must stay under 1 ms at p99 for prompts up to 8,000
characters; the classifier's share of that budget is 150 µs at p99. This measures
``TaskModel.predict`` (features + scoring + softmax: everything the router calls) on
short prompts and on 8,000-character prompts (a pasted document, a code-heavy prompt
with fences, a prompt with a long system prompt), one call at a time as the router
makes them, after a warm-up, with the model already loaded.

    .venv/bin/python bench/classifier_speed.py [--calls 5000]

Ends with one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time

from turnout.streams.classifier import load_default, load_examples

BUDGET_P99_US = 150.0
PROMPT_CHARS = 8_000


def long_prompts(rng: random.Random) -> dict[str, tuple[str, str]]:
    """Three shapes of 8,000-character prompt, built from the pasted material (prose
    paragraphs, fenced code) in the labelled examples."""
    examples = load_examples()
    paragraphs = sorted({p for e in examples for p in e.text.split("\n\n") if len(p) > 300 and "```" not in p and "?" not in p})
    blocks = sorted({b for e in examples for b in e.text.split("```")[1::2] if len(b) > 150})
    rng.shuffle(paragraphs)
    rng.shuffle(blocks)
    doc = "\n\n".join(paragraphs)[:PROMPT_CHARS]
    code = "".join(f"```{b}```\n\n" for b in blocks)
    system = "You are a careful assistant for the legal team. " + "\n\n".join(paragraphs[-10:])[:2950]
    review = "\n\nReview the code above and list the bugs you find."
    summarize = "Summarize the following report in five bullet points for the board.\n\n"
    translate = "Translate the following into German, keep the formatting:\n\n"
    return {
        "8k-document": (summarize + doc[: PROMPT_CHARS - len(summarize)], ""),
        "8k-code": (_closed(code[: PROMPT_CHARS - len(review) - 4]) + review, ""),
        "8k+system": (translate + doc[: PROMPT_CHARS - len(translate)], system),
    }


def _closed(code: str) -> str:
    """``code`` cut at any point, its last fence closed (4 characters added)."""
    return code + ("\n```" if code.count("```") % 2 else "    ")


def short_prompts() -> dict[str, tuple[str, str]]:
    return {
        "short-chat": ("Hi there! How are you doing today?", ""),
        "short-task": ("Write a Python function that checks whether a string is a palindrome.", ""),
        "medium": (
            "Extract every date and amount from this email:\n\nDear Ms. Okafor, the shipment of 1,200 chairs (PO 77-4410) "
            "scheduled for May 18 will arrive around June 14. We will waive the freight charge of $3,860.",
            "You are an information extraction system.",
        ),
    }


def measure(model, text: str, system: str, calls: int) -> list[float]:
    for _ in range(200):
        model.predict(text, system)
    timings = []
    gc.disable()
    try:
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            model.predict(text, system)
            timings.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        gc.enable()
    return timings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    model = load_default()
    load_ms = (time.perf_counter() - t0) * 1000
    rng = random.Random(1)
    cases = {**short_prompts(), **long_prompts(rng)}

    print(f"python {platform.python_version()} on {platform.machine()}, model {model.method}, loaded in {load_ms:.0f} ms")
    print(f"{'prompt':<14} {'chars':>6} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8}   budget p99 {BUDGET_P99_US:.0f} µs")
    results = {}
    for name, (text, system) in cases.items():
        timings = measure(model, text, system, args.calls)
        p50, p99 = statistics.median(timings), percentile(timings, 0.99)
        results[name] = {"chars": len(text) + len(system), "p50_us": round(p50, 1), "p99_us": round(p99, 1)}
        label, confidence = model.predict(text, system)
        print(f"{name:<14} {len(text) + len(system):>6} {p50:>8.1f} {p99:>8.1f} {max(timings):>8.1f}   -> {label} ({confidence:.2f})")

    worst_p99 = max(r["p99_us"] for r in results.values())
    long_p99 = max(r["p99_us"] for n, r in results.items() if n.startswith("8k"))
    verdict = "within" if worst_p99 <= BUDGET_P99_US else "OVER"
    print(f"worst p99 {worst_p99:.1f} µs ({verdict} the {BUDGET_P99_US:.0f} µs budget); {1e6 / statistics.median(measure(model, *cases['8k-document'], 1000)):,.0f} predictions/s on 8k prompts")
    print(
        "BENCH "
        + json.dumps(
            {
                "name": "classifier",
                "p99_us": worst_p99,
                "p99_us_8k": long_p99,
                "budget_p99_us": BUDGET_P99_US,
                "ratio": round(worst_p99 / BUDGET_P99_US, 3),
                "cases": results,
                "load_ms": round(load_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
