"""The router's task-type classifier, learned from labelled examples kept in the repository.

A multinomial logistic regression over word unigrams and bigrams, plus a few cheap
features of where words sit (the first and last words of the user's message, where
people put instructions) and of the message's shape (code fences, a leading greeting,
a trailing question mark, arithmetic, non-Latin script, length). Pure Python and the
standard library: training takes seconds, prediction a few tens of microseconds.

What each label means (the examples in ``data/task_examples.jsonl`` follow this guide):

- ``code-generation``: produce code: implement, complete, port to another programming
  language, write tests, queries, configs, regexes.
- ``code-review``: judge existing code: review, find bugs, explain an error it raises,
  security or performance audit, refactor suggestions.
- ``summarization``: condense a given text (an article, a thread, a transcript, or what a
  piece of code does) into a shorter one.
- ``extraction``: pull given facts out of a text into a structure (entities, dates,
  amounts, fields, action items, function names).
- ``classification``: assign a label from a set (sentiment, topic, intent, spam, urgency,
  language identification).
- ``translation``: turn natural-language text into another human language, including
  code comments and UI strings.
- ``math-reasoning``: arithmetic, algebra, calculus, probability, proofs, word problems.
- ``question-answering``: a question about the world, a concept (programming concepts
  included), advice, or a question about a given passage.
- ``chit-chat``: greetings, thanks, small talk with no task in it. A greeting followed
  by a task is that task.
- ``creative-writing``: compose or edit prose and verse for people: stories, poems,
  lyrics, speeches, letters, copy; reviewing or polishing an essay.

Only the text is read: the last user message (its first ``HEAD_CHARS`` and last
``TAIL_CHARS`` characters, where instructions are) and the system prompt (its first
``SYSTEM_CHARS``), never a field the caller sets.

Commands::

    python -m turnout.streams.classifier train      # fit on the train split, write data/task_model.json, report held-out
    python -m turnout.streams.classifier evaluate   # held-out accuracy of the shipped model
    python -m turnout.streams.classifier predict "Summarize this thread"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

TASK_TYPES: tuple[str, ...] = (
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
)
FORMAT = "turnout-task-model"
FORMAT_VERSION = 1
METHOD = "logreg-v1"

HEAD_CHARS = 1000  # of the last user message
TAIL_CHARS = 500
SYSTEM_CHARS = 800  # of the system prompt(s)
HEAD_TOKENS = 12  # the first and last words of the user message get features of their own
TAIL_TOKENS = 8
SYSTEM_HEAD_TOKENS = 24  # the system prompt's first words, where it states the job
TEST_FRACTION = 0.2

_DATA = "data"
EXAMPLES_FILE = "task_examples.jsonl"
MODEL_FILE = "task_model.json"

# Tokens: lower-case, digits folded to 0 (a number keeps only its length), ASCII
# punctuation and the commonest typographic marks become spaces, then str.split. All of it
# runs in C, several times faster than a regex tokenizer. str.translate is fast only on
# ASCII strings (per character it is ~70 ns otherwise), so text with any non-ASCII
# character goes through bytes.translate on its UTF-8 instead, after the typographic
# marks are replaced: the two paths give the same tokens.
_ASCII_PUNCT = "".join(chr(c) for c in range(128) if not chr(c).isalnum())
_UNICODE_PUNCT = "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0\u00ab\u00bb\u00bf\u00a1\u3001\u3002\uff0c\uff1f\uff01\uff1a\u300c\u300d"
_TABLE = str.maketrans({**{ch: " " for ch in _ASCII_PUNCT}, **{d: "0" for d in "123456789"}})
_BYTES_TABLE = bytes(
    ord(" ") if chr(b) in _ASCII_PUNCT else ord("0") if chr(b) in "123456789" else b for b in range(256)
)
MAX_TOKENS = 300  # of the user message (prose: ~1,700 characters): bounds the work on dense text
KEEP_LAST_TOKENS = 80  # of those, the last ones (the rest from the start)
MAX_SYSTEM_TOKENS = 100
_GREETING = re.compile(
    r"\W*(hi|hello|hey|heya|hiya|yo|sup|howdy|greetings|good (morning|afternoon|evening|day)|morning|evening|thanks|thank you|ty|thx|cheers)\b"
)
_ARITHMETIC = re.compile(r"[\dxyn]\s?(?:[-+*/^=×÷]\s?[\dxyn(]|%)")  # starts with a class: re scans fast
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_CODE_CHARS = "{};=<>[]"


def tokenize(text: str) -> list[str]:
    """Lower-case words; every digit is 0."""
    lower = text.lower()
    if lower.isascii():
        return lower.translate(_TABLE).split()
    for mark in _UNICODE_PUNCT:
        if mark in lower:
            lower = lower.replace(mark, " ")
    return lower.encode("utf-8").translate(_BYTES_TABLE).decode("utf-8").split()


# ---------------------------------------------------------------------------- features


def message_text(messages: Iterable[Any]) -> tuple[str, str]:
    """(last user message, system prompts) of a chat: anything with ``.role`` and ``.content``."""
    user = ""
    systems: list[str] = []
    for message in messages:
        if message.role == "user":
            user = message.content
        elif message.role == "system":
            systems.append(message.content)
    return user, "\n".join(systems)


def window(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """The start and the end of a long text, where instructions are."""
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n" + text[-tail:] if tail else text[:head]


def features(text: str, system: str = "") -> tuple[set[Any], list[str]]:
    """(bag, edge) features of a request.

    ``bag``: the unigrams (str) and bigrams (tuple) of the user message outside fenced
    code blocks and triple-quoted blocks (pasted material: the request is around it),
    windowed, and of the system prompt. ``edge``: the first ``HEAD_TOKENS`` and last
    ``TAIL_TOKENS`` of those words, prefixed ``^`` and ``$``, the system prompt's first
    ``SYSTEM_HEAD_TOKENS``, prefixed ``@``, and the shape features, prefixed ``#``, which
    see the whole window."""
    user = window(text)
    body = user
    # Fences are matched on the whole message (a window can cut a block in two), but only
    # when the window shows one: a block wholly inside the unread middle changes nothing.
    if "```" in user:
        body = window(_outside(text, "```"))
    if '"""' in body:
        body = _outside(body, '"""')
    tokens = tokenize(body)
    if len(tokens) > MAX_TOKENS:
        tokens = tokens[: MAX_TOKENS - KEEP_LAST_TOKENS] + tokens[-KEEP_LAST_TOKENS:]
    bag: set[Any] = set(tokens)
    bag.update(zip(tokens, tokens[1:]))
    edge = ["^" + t for t in tokens[:HEAD_TOKENS]]
    edge += ["$" + t for t in tokens[-TAIL_TOKENS:]]
    if system:
        stokens = tokenize(window(system, SYSTEM_CHARS, 0))[:MAX_SYSTEM_TOKENS]
        bag.update(stokens)
        bag.update(zip(stokens, stokens[1:]))
        edge.extend({"@" + t for t in stokens[:SYSTEM_HEAD_TOKENS]})
        edge.append("#system")
    edge.extend(_shape(text, user, bool(system)))
    return bag, edge


def _outside(text: str, fence: str) -> str:
    """The text outside ``fence``-delimited blocks. An unclosed last fence is read as text,
    so that an instruction after code whose closing fence was forgotten is not lost."""
    parts = text.split(fence)
    if len(parts) % 2 == 0:
        parts[-2:] = [parts[-2] + " " + parts[-1]]
    return " \n ".join(parts[0::2])


def _shape(text: str, user: str, system: bool = False) -> list[str]:
    n = len(text)
    # A short message means small talk on its own, but not under a system prompt that
    # states the job (a pipeline sending one item at a time): separate features.
    out = [("#slen" if system else "#len") + ("0" if n < 40 else "1" if n < 200 else "2" if n < 1500 else "3")]
    if "```" in user:
        out.append("#fence")
    code = sum(map(user.count, _CODE_CHARS)) / (len(user) or 1)
    if code > 0.012:
        out.append("#code1" if code < 0.03 else "#code2")
    if _GREETING.match(user.lower() if len(user) < 64 else user[:64].lower()):
        out.append("#greet")
    stripped = user.rstrip()
    if stripped.endswith("?"):
        out.append("#q-end")
    elif "?" in stripped:
        out.append("#q")
    if _ARITHMETIC.search(user, 0, 500):
        out.append("#arith")
    if user.count("\n") > 4:
        out.append("#lines")
    if not user.isascii():
        out.append("#cjk" if _CJK.search(user, 0, 400) else "#nonascii")
    return out


# ---------------------------------------------------------------------------- model


@dataclass
class TaskModel:
    """Multinomial logistic regression. ``scores = bias + |bag|^-1/2 * sum(bag weights) +
    sum(edge weights)``; confidence is the softmax of ``scores / temperature``, the
    temperature fitted on data the weights were not trained on."""

    labels: tuple[str, ...]
    bias: tuple[float, ...]
    bag: dict[Any, tuple[float, ...]]
    edge: dict[str, tuple[float, ...]]
    temperature: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def method(self) -> str:
        """What analysts see as ``task_method``: the algorithm and the artifact's identity."""
        return f"{METHOD}@{self.meta.get('digest', 'unsaved')[:8]}"

    def scores(self, text: str, system: str = "") -> list[float]:
        """The logits, one per label."""
        bag, edge = features(text, system)
        packed_bag, packed_edge = self._packed
        total = list(self.bias)
        hits = list(filter(None, map(packed_bag.get, bag)))
        if hits:
            scale = 1.0 / (math.sqrt(len(bag)) * _QUANT)
            total = [t + scale * s for t, s in zip(total, _unpack(sum(hits), len(hits), len(total)))]
        hits = list(filter(None, map(packed_edge.get, edge)))
        if hits:
            total = [t + s / _QUANT for t, s in zip(total, _unpack(sum(hits), len(hits), len(total)))]
        return total

    @cached_property
    def _packed(self) -> tuple[dict[Any, int], dict[str, int]]:
        return _pack_table(self.bag), _pack_table(self.edge)

    def probabilities(self, text: str, system: str = "") -> dict[str, float]:
        return dict(zip(self.labels, _softmax(self.scores(text, system), self.temperature)))

    def predict(self, text: str, system: str = "") -> tuple[str, float]:
        """(task type, confidence in [0, 1]) for the last user message ``text`` and the
        system prompt ``system``."""
        probs = _softmax(self.scores(text, system), self.temperature)
        best = max(range(len(probs)), key=probs.__getitem__)
        return self.labels[best], probs[best]

    def predict_messages(self, messages: Iterable[Any]) -> tuple[str, float]:
        """The task of a chat: its last user message and its system prompts."""
        user, system = message_text(messages)
        return self.predict(user, system)

    # -- persistence

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": METHOD,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "bias": [round(b, 4) for b in self.bias],
            "meta": {k: v for k, v in self.meta.items() if k != "digest"},
            "edge": {k: [round(w, 4) for w in v] for k, v in sorted(self.edge.items())},
            "bag": {_bag_key(k): [round(w, 4) for w in v] for k, v in sorted(self.bag.items(), key=lambda kv: _bag_key(kv[0]))},
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | bytes) -> TaskModel:
        body = json.loads(data)
        if body.get("format") != FORMAT or body.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} artifact: format={body.get('format')!r} version={body.get('version')!r}")
        labels = tuple(body["labels"])
        k = len(labels)
        for name, table in (("bag", body["bag"]), ("edge", body["edge"])):
            bad = next((key for key, v in table.items() if len(v) != k), None)
            if bad is not None:
                raise ValueError(f"{name}[{bad!r}]: {len(table[bad])} weights for {k} labels")
        meta = dict(body.get("meta", {}))
        meta["digest"] = hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()
        model = cls(
            labels=labels,
            bias=tuple(body["bias"]),
            bag={_parse_bag_key(key): tuple(v) for key, v in body["bag"].items()},
            edge={key: tuple(v) for key, v in body["edge"].items()},
            temperature=float(body["temperature"]),
            meta=meta,
        )
        model._packed  # build the scoring tables now (~20 ms), not on the first request
        return model

    def save(self, path: str | Path) -> None:
        data = self.to_json()
        Path(path).write_text(data, encoding="utf-8")
        self.meta["digest"] = hashlib.sha256(data.encode()).hexdigest()


# Scoring adds up one weight vector per feature present: hundreds of 10-vectors for a
# long prompt. Summing them as tuples in Python costs ~40 µs; instead each vector is
# stored as one integer holding its weights as fixed-point fields (offset to be
# non-negative), and Python's C-level big-integer ``sum`` adds all fields at once.
# Fields are wide enough that no sum can carry into the next field (2**16 features of
# |weight| < 10**5), and the weights are already rounded to 1e-4 in the artifact, so the
# result is the same as the float sum to within float rounding.
_QUANT = 10_000
_FIELD_BITS = 48
_OFFSET = 1 << 30
_MASK = (1 << _FIELD_BITS) - 1


def _pack(weights: Sequence[float]) -> int:
    packed = 0
    for i, w in enumerate(weights):
        q = round(w * _QUANT)
        if not -_OFFSET < q < _OFFSET:
            raise ValueError(f"weight {w} out of range")
        packed |= (q + _OFFSET) << (_FIELD_BITS * i)
    return packed


def _pack_table(table: dict[Any, tuple[float, ...]]) -> dict[Any, int]:
    return {key: _pack(weights) for key, weights in table.items()}


def _unpack(total: int, count: int, k: int) -> list[int]:
    """The k field sums of ``count`` packed vectors added together, offsets removed."""
    base = count * _OFFSET
    return [((total >> (_FIELD_BITS * i)) & _MASK) - base for i in range(k)]


def _bag_key(key: Any) -> str:
    return " ".join(key) if isinstance(key, tuple) else key


def _parse_bag_key(key: str) -> Any:
    return tuple(key.split(" ", 1)) if " " in key else key


def _softmax(scores: Sequence[float], temperature: float = 1.0) -> list[float]:
    top = max(scores)
    exps = [math.exp((s - top) / temperature) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Example:
    text: str
    task: str
    system: str = ""

    @property
    def key(self) -> str:
        """What the split hashes: everything the classifier reads."""
        return f"{self.system}\x00{self.text}" if self.system else self.text


def load_examples(path: str | Path | None = None) -> list[Example]:
    """The labelled examples (``data/task_examples.jsonl`` unless ``path``)."""
    raw = Path(path).read_text(encoding="utf-8") if path else _data_file(EXAMPLES_FILE).read_text(encoding="utf-8")
    examples = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            example = Example(text=row["text"], task=row["task"], system=row.get("system") or "")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path or EXAMPLES_FILE}:{number}: {exc}") from exc
        if not isinstance(example.text, str) or example.task not in TASK_TYPES:
            raise ValueError(f"{path or EXAMPLES_FILE}:{number}: unknown task {example.task!r} (known: {', '.join(TASK_TYPES)})")
        examples.append(example)
    return examples


def split_bucket(example: Example, salt: str = "") -> float:
    """A stable number in [0, 1) from the example's text (SHA-256, not ``hash()``)."""
    digest = hashlib.sha256((salt + example.key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split(examples: Sequence[Example], test_fraction: float = TEST_FRACTION, salt: str = "") -> tuple[list[Example], list[Example]]:
    """(train, test): an example is in test when the hash of its text falls below
    ``test_fraction``; the same text always lands on the same side, whatever else the
    file holds, so training never sees a held-out row (duplicates included)."""
    train, test = [], []
    for example in examples:
        (test if split_bucket(example, salt) < test_fraction else train).append(example)
    return train, test


def split_digest(examples: Iterable[Example]) -> str:
    """Identity of a set of examples (order-free): recorded in the artifact so that a
    test can check that the shipped model was trained on exactly the current train split."""
    return hashlib.sha256("\n".join(sorted(hashlib.sha256(e.key.encode()).hexdigest() for e in examples)).encode()).hexdigest()


# ---------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    learning_rate: float = 0.1
    l2: float = 1e-2
    min_df: int = 2
    prune: float = 0.2
    seed: int = 7


def train(examples: Sequence[Example], config: TrainConfig = TrainConfig(), calibrate: bool = True) -> TaskModel:
    """Fit the model on ``examples`` (pass the train split). With ``calibrate``, the
    softmax temperature is fitted on a hash-selected fifth of ``examples`` by a model
    trained on the other four fifths, then the final weights are fitted on all of them."""
    examples = list(examples)
    temperature = 1.0
    if calibrate:
        fit, held = split(examples, 0.2, salt="calibrate:")
        probe = _fit(fit, config)
        temperature = _fit_temperature(probe, held)
    model = _fit(examples, config)
    model.temperature = temperature
    model.meta.update(
        {
            "trained_on": len(examples),
            "train_digest": split_digest(examples),
            "config": config.__dict__,
            "window": {
                "head_chars": HEAD_CHARS,
                "tail_chars": TAIL_CHARS,
                "system_chars": SYSTEM_CHARS,
                "head_tokens": HEAD_TOKENS,
                "tail_tokens": TAIL_TOKENS,
                "system_head_tokens": SYSTEM_HEAD_TOKENS,
            },
        }
    )
    return model


def _fit(examples: Sequence[Example], config: TrainConfig) -> TaskModel:
    labels = TASK_TYPES
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    # Sorted, so that the result does not depend on set order (PYTHONHASHSEED).
    encoded = []
    for e in examples:
        bag, edge = features(e.text, e.system)
        encoded.append((sorted(bag, key=_bag_key), sorted(edge), index[e.task]))
    bag_df: Counter[Any] = Counter()
    edge_df: Counter[str] = Counter()
    for bag, edge, _ in encoded:
        bag_df.update(bag)
        edge_df.update(list(dict.fromkeys(edge)))
    bag_vocab = {f: i for i, f in enumerate(f for f, c in bag_df.items() if c >= config.min_df)}
    edge_vocab = {f: i for i, f in enumerate(f for f, c in edge_df.items() if c >= config.min_df)}
    rows = []
    for bag, edge, y in encoded:
        rows.append(
            (
                [bag_vocab[f] for f in bag if f in bag_vocab],
                1.0 / math.sqrt(len(bag)) if bag else 0.0,
                [edge_vocab[f] for f in edge if f in edge_vocab],
                y,
            )
        )
    wb = [[0.0] * k for _ in bag_vocab]
    we = [[0.0] * k for _ in edge_vocab]
    # AdaGrad: each weight's step shrinks with its own squared-gradient history, so the
    # length-normalised bag features and the unit edge features learn at comparable rates.
    gb = [[1e-8] * k for _ in bag_vocab]
    ge = [[1e-8] * k for _ in edge_vocab]
    bias = [0.0] * k
    rng = random.Random(config.seed)
    order = list(range(len(rows)))
    lr, l2 = config.learning_rate, config.l2
    for _epoch in range(config.epochs):
        rng.shuffle(order)
        for i in order:
            bidx, scale, eidx, y = rows[i]
            scores = list(bias)
            if bidx:
                scores = [s + scale * t for s, t in zip(scores, map(sum, zip(*[wb[f] for f in bidx])))]
            if eidx:
                scores = [s + t for s, t in zip(scores, map(sum, zip(*[we[f] for f in eidx])))]
            grad = _softmax(scores)
            grad[y] -= 1.0
            bias = [b - 0.1 * g for b, g in zip(bias, grad)]
            for weights, history, idx, x in ((wb, gb, bidx, scale), (we, ge, eidx, 1.0)):
                gx = [g * x for g in grad]
                for f in idx:
                    w, h = weights[f], history[f]
                    step = [gi + l2 * wi for gi, wi in zip(gx, w)]
                    h = [hi + si * si for hi, si in zip(h, step)]
                    history[f] = h
                    weights[f] = [wi - lr * si / math.sqrt(hi) for wi, si, hi in zip(w, step, h)]
    return TaskModel(
        labels=labels,
        bias=tuple(round(b, 4) for b in bias),  # as the artifact stores them
        bag=_centre(bag_vocab, wb, config.prune),
        edge=_centre(edge_vocab, we, config.prune),
    )


def _centre(vocab: dict[Any, int], weights: list[list[float]], prune: float) -> dict[Any, tuple[float, ...]]:
    """Each feature's weights minus their mean (the softmax cannot tell the difference),
    rounded as the artifact stores them; features whose weights hardly differ between
    labels (spread below ``prune``) cannot move a decision and are dropped."""
    out = {}
    for f, i in vocab.items():
        w = weights[i]
        if max(w) - min(w) >= prune:
            mean = sum(w) / len(w)
            out[f] = tuple(round(x - mean, 4) for x in w)
    return out


def _fit_temperature(model: TaskModel, examples: Sequence[Example]) -> float:
    """The temperature that minimises the negative log-likelihood on ``examples``."""
    if not examples:
        return 1.0
    index = {label: i for i, label in enumerate(model.labels)}
    scored = [(model.scores(e.text, e.system), index[e.task]) for e in examples]

    def nll(t: float) -> float:
        return -sum(math.log(max(_softmax(s, t)[y], 1e-12)) for s, y in scored)

    grid = [round(0.2 + 0.05 * i, 2) for i in range(77)]  # 0.2 .. 4.0
    return min(grid, key=nll)


# ---------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    total: int
    correct: int
    labels: tuple[str, ...]
    confusion: dict[str, dict[str, int]]  # confusion[true][predicted]
    mean_confidence: float
    calibration_error: float  # expected calibration error, 10 bins
    errors: list[tuple[str, str, float, str]]  # (true, predicted, confidence, text head)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def precision(self, label: str) -> float:
        predicted = sum(row.get(label, 0) for row in self.confusion.values())
        return self.confusion.get(label, {}).get(label, 0) / predicted if predicted else 0.0

    def recall(self, label: str) -> float:
        actual = sum(self.confusion.get(label, {}).values())
        return self.confusion.get(label, {}).get(label, 0) / actual if actual else 0.0

    def support(self, label: str) -> int:
        return sum(self.confusion.get(label, {}).values())

    def per_class(self) -> dict[str, dict[str, float]]:
        return {
            label: {"precision": round(self.precision(label), 4), "recall": round(self.recall(label), 4), "support": self.support(label)}
            for label in self.labels
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "accuracy": round(self.accuracy, 4),
            "mean_confidence": round(self.mean_confidence, 4),
            "calibration_error": round(self.calibration_error, 4),
            "per_class": self.per_class(),
            "confusion": self.confusion,
        }

    def format(self, show_errors: int = 10) -> str:
        lines = [
            f"accuracy {self.accuracy:.4f} ({self.correct}/{self.total})  mean confidence {self.mean_confidence:.3f}  "
            f"expected calibration error {self.calibration_error:.3f}",
            f"{'task':<20} {'precision':>9} {'recall':>7} {'support':>8}",
        ]
        for label in self.labels:
            lines.append(f"{label:<20} {self.precision(label):>9.3f} {self.recall(label):>7.3f} {self.support(label):>8}")
        short = [label[:5] for label in self.labels]
        lines.append("confusion (rows: true, columns: predicted)")
        lines.append(" " * 20 + " ".join(f"{s:>5}" for s in short))
        for label in self.labels:
            row = self.confusion.get(label, {})
            lines.append(f"{label:<20}" + " ".join(f"{row.get(p, 0):>5}" for p in self.labels))
        for true, predicted, confidence, head in self.errors[:show_errors]:
            lines.append(f"  miss: {true} -> {predicted} ({confidence:.2f}): {head!r}")
        return "\n".join(lines)


def evaluate(model: TaskModel, examples: Sequence[Example]) -> Evaluation:
    """Accuracy, per-class precision and recall, confusion and calibration of ``model``
    on ``examples`` (pass the held-out split)."""
    confusion: dict[str, dict[str, int]] = {label: {} for label in model.labels}
    correct = 0
    confidences: list[tuple[float, bool]] = []
    errors = []
    for e in examples:
        predicted, confidence = model.predict(e.text, e.system)
        hit = predicted == e.task
        correct += hit
        row = confusion.setdefault(e.task, {})
        row[predicted] = row.get(predicted, 0) + 1
        confidences.append((confidence, hit))
        if not hit:
            errors.append((e.task, predicted, confidence, e.text[:80]))
    ece = 0.0
    for b in range(10):
        members = [(c, h) for c, h in confidences if b / 10 <= c < (b + 1) / 10 or (b == 9 and c == 1.0)]
        if members:
            ece += len(members) / len(confidences) * abs(sum(c for c, _ in members) / len(members) - sum(h for _, h in members) / len(members))
    return Evaluation(
        total=len(examples),
        correct=correct,
        labels=model.labels,
        confusion=confusion,
        mean_confidence=sum(c for c, _ in confidences) / len(confidences) if confidences else 0.0,
        calibration_error=ece,
        errors=sorted(errors, key=lambda err: -err[2]),
    )


# ---------------------------------------------------------------------------- shipped artifact


def _data_file(name: str) -> Any:
    return resources.files("turnout.streams").joinpath(_DATA, name)


@lru_cache(maxsize=1)
def load_default() -> TaskModel:
    """The shipped model (``data/task_model.json``), loaded once per process."""
    return TaskModel.from_json(_data_file(MODEL_FILE).read_bytes())


def default_paths() -> tuple[Path, Path]:
    """(examples, model) paths of the source tree, for the ``train`` command."""
    here = Path(__file__).resolve().parent / _DATA
    return here / EXAMPLES_FILE, here / MODEL_FILE


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    examples_path, model_path = default_paths()
    parser = argparse.ArgumentParser(prog="python -m turnout.streams.classifier", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p_train = commands.add_parser("train", help="fit on the train split, write the artifact, report held-out accuracy")
    p_eval = commands.add_parser("evaluate", help="accuracy of the model on the held-out split")
    p_pred = commands.add_parser("predict", help="classify one text")
    for p in (p_train, p_eval):
        p.add_argument("--data", type=Path, default=examples_path, help=f"labelled examples (default {examples_path})")
        p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    for p in (p_train, p_eval, p_pred):
        p.add_argument("--model", type=Path, default=model_path, help=f"artifact (default {model_path})")
    p_pred.add_argument("text")
    p_pred.add_argument("--system", default="")
    args = parser.parse_args(argv)

    if args.command == "predict":
        model = TaskModel.from_json(args.model.read_bytes())
        label, confidence = model.predict(args.text, args.system)
        print(f"{label}\t{confidence:.3f}")
        return 0

    examples = load_examples(args.data)
    train_set, test_set = split(examples)
    if args.command == "train":
        started = time.perf_counter()
        model = train(train_set)
        elapsed = time.perf_counter() - started
        result = evaluate(model, test_set)
        model.meta["heldout"] = {"examples": result.total, "accuracy": round(result.accuracy, 4)}
        model.save(args.model)
        print(
            f"trained on {len(train_set)} examples in {elapsed:.1f}s ({len(model.bag)} bag + {len(model.edge)} edge features, "
            f"temperature {model.temperature}); wrote {args.model} ({args.model.stat().st_size / 1024:.0f} KiB)",
            file=sys.stderr,
        )
    else:
        model = TaskModel.from_json(args.model.read_bytes())
        if model.meta.get("train_digest") != split_digest(train_set):
            print("warning: the model was not trained on the current train split (retrain with `train`)", file=sys.stderr)
        result = evaluate(model, test_set)
    print(f"held-out split: {len(test_set)} of {len(examples)} examples (train {len(train_set)}), model {model.method}", file=sys.stderr)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
