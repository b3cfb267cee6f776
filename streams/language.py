"""Language of a prompt: an ISO 639-1 code and a confidence, offline.

The detector is py3langid (PyPI; a maintained fork of langid.py: naive Bayes over byte
n-grams, its model shipped inside the wheel, BSD licence). Its cost is linear in the
bytes it reads (about 80 ns per byte plus 15 µs on the reference machine) and it is
already right on a few dozen characters of ordinary prose, so it reads a bounded sample:
the first :data:`SAMPLE_BYTES` bytes of the text once fenced code blocks, inline code
and URLs are taken out (they are not the user's language and would crowd the sample)
and whitespace runs are collapsed. A call therefore costs about 60-80 µs (p50 on the
reference machine) whatever the prompt's length. :func:`detect_messages_language`
applies it to a chat request's last user turn.

Labels are limited to living languages that have an ISO 639-1 code (regional varieties
such as Egyptian Arabic or Cantonese fold into their macrolanguage, ``ar`` and ``zh``;
Latin, Sanskrit, Esperanto and Volapük are left out, since on a few words they outbid
the living language they resemble);
``"und"`` (undetermined, ISO 639-2) is returned with confidence 0.0 for empty text, for
text without letters, and when the best language's probability is below
:data:`MIN_CONFIDENCE`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["MIN_CONFIDENCE", "SAMPLE_BYTES", "UNDETERMINED", "detect_language", "detect_messages_language", "warm_up"]

UNDETERMINED = "und"
# Bytes of cleaned text the detector reads: about 35 µs of its byte walk, and far past
# the few dozen characters after which it stops making mistakes on ordinary prose.
SAMPLE_BYTES = 400
# Below this probability the best guess is reported as undetermined.
MIN_CONFIDENCE = 0.30

# py3langid labels without an ISO 639-1 code of their own: folded into a macrolanguage
# that has one, or (None) left out of the label set.
_FOLD: dict[str, str | None] = {
    "arz": "ar",  # Egyptian Arabic
    "ary": "ar",  # Moroccan Arabic
    "yue": "zh",  # Cantonese
    "wuu": "zh",  # Wu
    "uzs": "uz",  # Southern Uzbek
    "sdh": "ku",  # Southern Kurdish
    "gug": "gn",  # Paraguayan Guarani
    "kik": "ki",  # Kikuyu
    "fuv": "ff",  # Nigerian Fulfulde
    "zxx": None,  # "no linguistic content": reported as und by the letter check instead
    "ace": None, "bcl": None, "ext": None, "gcf": None, "gom": None, "grc": None, "hbo": None,
    "nso": None, "pcm": None, "crh": None, "gcr": None, "guw": None, "kab": None, "lij": None,
    "ltg": None, "vec": None,
    # classical and constructed languages: on a few words they outbid the living
    # language they resemble (Sanskrit for a Hindi greeting), and nobody routes on them
    "la": None, "sa": None, "eo": None, "vo": None,
}

# Not the user's language: fenced code blocks (found with str.find, so that a long
# block costs one search), inline code and URLs (regexes run on the bounded prose only).
_FENCE = "```"
_INLINE_NOISE = re.compile(r"`[^`\n]{0,200}`|https?://\S+|www\.\S+")
_LETTER = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=1)
def _identifier() -> Any:
    import numpy as np
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    keep = [label for label in identifier.labels if _FOLD.get(label, label) is not None]
    identifier.set_languages(keep)
    # The model ships its feature table as float16, which numpy gathers and multiplies
    # without SIMD: 350 µs for 640 bytes of varied prose. As float32 (about 48 MB) the
    # same call takes 60-70 µs.
    identifier.nb_ptc = np.ascontiguousarray(identifier.nb_ptc, dtype=np.float32)
    # It also keeps the full float16 table to undo set_languages, which is never
    # called again here: let those 28 MB go.
    if hasattr(identifier, "_full_model"):
        identifier._full_model = (identifier.nb_ptc, identifier.nb_pc, identifier.nb_classes)
    return identifier


def warm_up() -> None:
    """Load the model now (about 0.6 s and 100 MB) rather than on the first request."""
    _identifier()


def _prose(text: str, want: int) -> str:
    """Up to ``want`` characters of ``text`` from outside fenced code blocks (an
    unclosed fence runs to the end)."""
    parts: list[str] = []
    got = i = 0
    while got < want:
        j = text.find(_FENCE, i, i + want - got + len(_FENCE) - 1)
        if j < 0:
            parts.append(text[i : i + want - got])
            break
        parts.append(text[i:j])
        got += j - i
        close = text.find(_FENCE, j + len(_FENCE))
        if close < 0:
            break
        i = close + len(_FENCE)
    return " ".join(parts)


def _sample(text: str) -> str:
    window = _prose(text, SAMPLE_BYTES * 2)
    if "`" in window or "://" in window or "www." in window:
        window = _INLINE_NOISE.sub(" ", window)
    window = " ".join(window.split())  # collapse indentation and blank lines
    if len(window) > SAMPLE_BYTES:
        window = window[:SAMPLE_BYTES]
    data = window.encode("utf-8", "surrogatepass")
    if len(data) > SAMPLE_BYTES:  # non-ASCII: cut at a character boundary
        window = data[:SAMPLE_BYTES].decode("utf-8", "ignore")
    return window


def detect_language(text: str) -> tuple[str, float]:
    """``(ISO 639-1 code, confidence in [0, 1])`` for ``text``, from a bounded sample of
    it; ``("und", 0.0)`` when there is nothing to go on."""
    if not text:
        return UNDETERMINED, 0.0
    sample = _sample(text)
    if not _LETTER.search(sample):
        return UNDETERMINED, 0.0
    label, probability = _identifier().classify(sample)  # no shared state is mutated: thread-safe
    confidence = min(1.0, max(0.0, float(probability)))
    if confidence < MIN_CONFIDENCE:
        return UNDETERMINED, 0.0
    return _FOLD.get(label, label) or UNDETERMINED, round(confidence, 4)


def _field(message: Any, key: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(key)
    return getattr(message, key, None)


def detect_messages_language(messages: Iterable[Any]) -> tuple[str, float]:
    """The language of a chat request: that of its last user turn with text (the
    user's own words), else of its system prompt; ``ChatMessage`` models or dicts."""
    last_user = system = ""
    for message in messages:
        content = _field(message, "content")
        if not isinstance(content, str) or not content.strip():
            continue
        role = _field(message, "role")
        if role == "user":
            last_user = content
        elif role == "system" and not system:
            system = content
    result = detect_language(last_user) if last_user else (UNDETERMINED, 0.0)
    if result[0] == UNDETERMINED and system:
        result = detect_language(system)
    return result
