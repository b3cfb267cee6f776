"""streams/classifier.py: the task-type classifier learned from the labelled examples.

The accuracy test measures the shipped model on the held-out split every run (no
number is copied from anywhere), and the artifact is checked to have been trained on
exactly the current train split, so it never saw a held-out row. No timing asserts:
speed is ``bench/classifier_speed.py``'s job.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from factories import REPO, make_request

from turnout.schemas.models import ChatMessage
from turnout.streams import classifier
from turnout.streams.classifier import (
    TASK_TYPES,
    Example,
    TaskModel,
    TrainConfig,
    evaluate,
    load_default,
    load_examples,
    split,
    split_digest,
    train,
)

REQUIRED_TASKS = {
    "code-generation",
    "code-review",
    "summarization",
    "extraction",
    "classification",
    "translation",
    "math-reasoning",
    "question-answering",
    "chit-chat",
    "creative-writing",
}

# The floor for held-out accuracy. When it was set, the shipped model scored 0.927 on the
# 605 held-out rows (standard error about 0.011), 0.905 on the held-out rows that have no
# near duplicate in the train split (token Jaccard < 0.5), and the keyword scorer it
# replaces scored 0.36 on the same rows. 0.88 is four standard errors below: room for
# the noise of new examples and a retrain, while a real regression still fails.
HELD_OUT_ACCURACY_FLOOR = 0.88
PER_CLASS_RECALL_FLOOR = 0.75  # no class may collapse behind a good average (lowest when set: 0.85)


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return load_examples()


@pytest.fixture(scope="module")
def held_out(examples: list[Example]) -> list[Example]:
    return split(examples)[1]


@pytest.fixture(scope="module")
def model() -> TaskModel:
    return load_default()


# -- the data -------------------------------------------------------------------------


def test_every_required_task_has_at_least_100_examples(examples: list[Example]) -> None:
    assert REQUIRED_TASKS <= set(TASK_TYPES)
    counts = Counter(e.task for e in examples)
    assert set(counts) == set(TASK_TYPES)
    assert min(counts.values()) >= 100, counts


def test_examples_vary_in_length(examples: list[Example]) -> None:
    lengths = [len(e.text) for e in examples]
    assert sum(n < 80 for n in lengths) >= 100  # one-liners
    assert sum(n > 3000 for n in lengths) >= 80  # pasted documents and code
    assert sum("```" in e.text for e in examples) >= 100


def test_malformed_example_files_are_refused_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "task": "chit-chat"}\n{"text": "x", "task": "poetry"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: unknown task 'poetry'"):
        load_examples(bad)


# -- the split ------------------------------------------------------------------------


def test_split_is_disjoint_complete_and_deterministic(examples: list[Example]) -> None:
    train_set, test_set = split(examples)
    assert len(train_set) + len(test_set) == len(examples)
    assert not {e.key for e in train_set} & {e.key for e in test_set}
    assert 0.15 < len(test_set) / len(examples) < 0.25
    again_train, again_test = split(list(reversed(examples)))
    assert {e.key for e in again_test} == {e.key for e in test_set}
    assert {e.key for e in again_train} == {e.key for e in train_set}


def test_an_examples_side_depends_only_on_its_own_text(examples: list[Example]) -> None:
    """Adding or removing other rows never moves a row across the split."""
    _, test_set = split(examples)
    _, test_of_half = split(examples[::2])
    assert {e.key for e in test_of_half} == {e.key for e in test_set} & {e.key for e in examples[::2]}
    for e in examples[:50]:
        train_side, test_side = split([e, Example(e.text, e.task, e.system)])
        assert len(train_side) in (0, 2) and len(test_side) in (0, 2)  # duplicates go together


def test_shipped_model_was_trained_on_exactly_the_train_split(examples: list[Example], model: TaskModel) -> None:
    """The artifact records which rows it was fitted on: the current train split, hence
    none of the held-out rows. Retrain (`python -m turnout.streams.classifier train`)
    after editing the examples."""
    train_set, _ = split(examples)
    assert model.meta["train_digest"] == split_digest(train_set)
    assert model.meta["trained_on"] == len(train_set)


# -- held-out quality -----------------------------------------------------------------


def test_held_out_accuracy_is_above_the_floor(model: TaskModel, held_out: list[Example]) -> None:
    result = evaluate(model, held_out)
    assert result.total == len(held_out) > 400
    assert result.accuracy >= HELD_OUT_ACCURACY_FLOOR, result.format()
    for task in TASK_TYPES:
        assert result.recall(task) >= PER_CLASS_RECALL_FLOOR, f"{task}\n{result.format()}"


def test_confidence_is_calibrated_on_held_out_rows(model: TaskModel, held_out: list[Example]) -> None:
    result = evaluate(model, held_out)
    assert result.calibration_error < 0.08, result.format()


def test_evaluation_figures_are_consistent(model: TaskModel, held_out: list[Example]) -> None:
    result = evaluate(model, held_out)
    assert sum(sum(row.values()) for row in result.confusion.values()) == result.total
    assert sum(result.confusion[t].get(t, 0) for t in TASK_TYPES) == result.correct
    for task in TASK_TYPES:
        support = sum(e.task == task for e in held_out)
        assert result.support(task) == support
        assert result.recall(task) == pytest.approx(result.confusion[task].get(task, 0) / support)
        assert 0.0 <= result.precision(task) <= 1.0
    as_json = json.loads(json.dumps(result.as_dict()))
    assert as_json["accuracy"] == round(result.accuracy, 4)
    assert set(as_json["per_class"]) == set(TASK_TYPES)


HARD_NEGATIVES = [
    # a review of a product that mentions code is still classification
    ("Classify the sentiment of this review: 'The new update broke my workflow and the code editor keeps freezing.'", "classification"),
    # reviewing an essay is writing help, not code review
    (
        "Review my essay on climate policy and suggest how to make the argument stronger: "
        "'Carbon taxes are the most efficient tool we have...'",
        "creative-writing",
    ),
    # a summary of code is a summary
    ("Summarize what this function does:\n```python\ndef f(xs):\n    return sorted(set(xs), key=xs.index)\n```", "summarization"),
    # translating code comments is translation
    (
        "Translate the comments in this snippet to English:\n```js\n// calcola la somma dei valori\n"
        "const somma = v => v.reduce((a, b) => a + b, 0);\n```",
        "translation",
    ),
    # a greeting followed by a task is that task
    ("Hi there! What's the tallest building in the world?", "question-answering"),
    ("Hey, good morning! Could you write a bash script that deletes files older than 30 days?", "code-generation"),
    ("Hello! Can you translate 'good luck' into Italian?", "translation"),
    ("Good afternoon. Please extract the order IDs from these lines: ORD-1182 shipped; ORD-1190 pending; ORD-1201 cancelled", "extraction"),
    # code words in a non-code task, and maths words in a code task
    ("Write a limerick about a JavaScript bug", "creative-writing"),
    ("Write a Python function that calculates the average of a list", "code-generation"),
    # "review" and "summary" in an extraction request
    (
        "Can you review this contract summary and list the payment dates? 'Payment 1: 1 May. Payment 2: 1 August. Final payment: 1 November.'",
        "extraction",
    ),
]


@pytest.mark.parametrize(("text", "task"), HARD_NEGATIVES)
def test_hard_negatives(model: TaskModel, examples: list[Example], text: str, task: str) -> None:
    assert text not in {e.text for e in examples}, "a hard negative must not be a training example"
    assert model.predict(text)[0] == task


def test_a_system_prompt_can_state_the_task(model: TaskModel) -> None:
    assert model.predict("Die Rechnung ist beigefügt.", "Translate into English.")[0] == "translation"
    assert model.predict("hello, how are you?", "You are a helpful assistant.")[0] == "chit-chat"
    assert (
        model.predict("The delivery was two days late but the food was great.", "Classify the sentiment as positive, negative or mixed.")[0]
        == "classification"
    )


# -- confidence, inputs of every size -------------------------------------------------


def test_confidence_is_a_probability(model: TaskModel, held_out: list[Example]) -> None:
    odd = ["", "   ", "?", "a" * 8000, "東京は今日とても暑いです。" * 600, "1, 2, 3, " * 900, "```\n```", "\x00\ufffd"]
    for text in [e.text for e in held_out[:200]] + odd:
        task, confidence = model.predict(text)
        assert task in TASK_TYPES
        assert 0.0 <= confidence <= 1.0
        probabilities = model.probabilities(text)
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert probabilities[task] == pytest.approx(confidence) == max(probabilities.values())


def _document(chars: int) -> str:
    sentences = [
        "The committee met on Tuesday to review the budget for the coming year.",
        "Revenue in the northern region grew faster than expected, driven by new contracts.",
        "Several members raised concerns about the rising cost of logistics and energy.",
        "The chair proposed a working group to report back before the end of the quarter.",
        "Staff turnover remained low, and two senior hires joined the operations team.",
    ]
    text, i = "", 0
    while len(text) < chars:
        text += sentences[i % len(sentences)] + " "
        i += 1
    return text[:chars]


def test_an_8000_character_prompt_is_classified_by_its_instruction() -> None:
    model = load_default()
    ask_first = "Translate the following minutes into German.\n\n"
    prompt = ask_first + _document(8000 - len(ask_first))
    assert len(prompt) == 8000
    assert model.predict(prompt)[0] == "translation"
    ask_last = "\n\nSummarize the minutes above in three bullet points."
    prompt = _document(8000 - len(ask_last)) + ask_last
    assert len(prompt) == 8000
    task, confidence = model.predict(prompt)
    assert task == "summarization" and 0.0 <= confidence <= 1.0


def test_only_the_start_and_end_of_a_long_message_are_read() -> None:
    model = load_default()
    head = "Extract every date from these minutes.\n\n" + _document(3000)
    tail = _document(1000)
    one = head + _document(4000) + tail
    other = head + "x" * 4000 + tail  # the middle differs completely
    assert len(one) == len(other)
    assert model.scores(one) == model.scores(other)


# -- content only ---------------------------------------------------------------------


def test_prediction_reads_the_last_user_message_and_the_system_prompt_only(model: TaskModel) -> None:
    question = "What is the capital of Australia?"
    plain = [ChatMessage(role="user", content=question)]
    noisy = [
        ChatMessage(role="user", content="Translate this into German: good morning"),
        ChatMessage(role="assistant", content="Write a Python function", name="summarize-bot"),
        ChatMessage(role="tool", content="classify the sentiment", name="translate"),
        ChatMessage(role="user", content=question, name="code-review"),
    ]
    assert model.predict_messages(noisy) == model.predict_messages(plain) == model.predict(question)
    with_system = [ChatMessage(role="system", content="You are a helpful assistant."), *plain]
    assert model.predict_messages(with_system) == model.predict(question, "You are a helpful assistant.")


def test_caller_fields_cannot_steer_the_task(model: TaskModel) -> None:
    plain = make_request("What is the capital of France?")
    steered = make_request(
        "What is the capital of France?",
        tenant="code-generation",
        model="large",
        metadata={"task_type": "code-generation", "task": "summarization"},
        response_schema='{"description": "summarize"}',
        tools='[{"type": "function", "function": {"name": "write_python_code"}}]',
        reply_topic="translate.into.french",
    )
    assert model.predict_messages(steered.messages) == model.predict_messages(plain.messages)


def test_prediction_has_no_memory(model: TaskModel) -> None:
    first = model.predict("Summarize this article about the Erie Canal.")
    model.predict("Write a Python function that reverses a list")
    assert model.predict("Summarize this article about the Erie Canal.") == first


# -- the artifact ---------------------------------------------------------------------


def test_model_round_trips_through_json(model: TaskModel, held_out: list[Example]) -> None:
    data = model.to_json()
    copy = TaskModel.from_json(data)
    assert copy.to_json() == data
    assert copy.labels == model.labels == TASK_TYPES
    for e in held_out[:150]:
        assert copy.predict(e.text, e.system) == model.predict(e.text, e.system)
    # the shipped file is exactly what to_json writes, and the method names it
    shipped = (REPO / "streams" / "data" / "task_model.json").read_text(encoding="utf-8")
    assert TaskModel.from_json(shipped).to_json() == shipped
    assert TaskModel.from_json(shipped).method == model.method
    assert model.method.startswith("logreg-v1@")


def test_from_json_refuses_what_it_cannot_read(model: TaskModel) -> None:
    with pytest.raises(ValueError, match="not a turnout-task-model"):
        TaskModel.from_json(json.dumps({"format": "something-else", "version": 1}))
    body = json.loads(model.to_json())
    body["edge"]["#fence"] = [0.1, 0.2]
    with pytest.raises(ValueError, match=r"edge\['#fence'\]: 2 weights for 10 labels"):
        TaskModel.from_json(json.dumps(body))


def test_artifact_is_small_and_loaded_once() -> None:
    assert (REPO / "streams" / "data" / "task_model.json").stat().st_size < 2_000_000
    assert load_default() is load_default()


def test_classifier_needs_nothing_beyond_the_standard_library() -> None:
    tree = ast.parse((REPO / "streams" / "classifier.py").read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert modules - {"__future__"} <= set(sys.stdlib_module_names), modules


# -- training -------------------------------------------------------------------------


def test_training_learns_from_a_small_sample(examples: list[Example]) -> None:
    """A quick fit on a quarter of the train split (the shipped model uses all of it) is
    far above chance on the held-out rows and survives a JSON round trip."""
    train_set, test_set = split(examples)
    model = train(train_set[::4], TrainConfig(epochs=4), calibrate=False)
    assert model.meta["trained_on"] == len(train_set[::4])
    result = evaluate(model, test_set)
    assert result.accuracy > 0.6, result.format()
    assert TaskModel.from_json(model.to_json()).predict(test_set[0].text) == model.predict(test_set[0].text)


def test_command_line_evaluate_and_predict(capsys: pytest.CaptureFixture[str]) -> None:
    assert classifier.main(["evaluate"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("accuracy ")
    assert "held-out split" in out.err
    assert classifier.main(["evaluate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= HELD_OUT_ACCURACY_FLOOR
    assert classifier.main(["predict", "Translate 'good night' into French"]) == 0
    label, confidence = capsys.readouterr().out.split()
    assert label == "translation" and 0.0 <= float(confidence) <= 1.0
