"""Language of a prompt: an ISO 639-1 code and a confidence, offline.

The detector is py3langid (PyPI; a maintained fork of langid.py: naive Bayes over byte
n-grams, its model shipped inside the wheel, BSD licence). Its cost is linear in the
bytes it reads (about 80 ns per byte plus 15 µs on the reference machine) and it is
already right on a few dozen characters of ordinary prose, so it reads a bounded sample:
the first :data:`SAMPLE_BYTES` bytes of the text once fenced code, inline code and URLs
are taken out (they are not the user's language and would crowd the sample). The cost
of a call therefore stops growing at about 60-70 µs whatever the prompt's length.

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
# Bytes of cleaned text the detector reads; about 60 µs, and well past the length at
# which it stops making mistakes on prose.
SAMPLE_BYTES = 640
# Below this probability the best guess is reported as undetermined.
MIN_CONFIDENCE = 0.30
# Cleaning (removing code and URLs) looks at most this far into the text.
CLEAN_WINDOW_CHARS = 16_384

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

# Not the user's language: fenced code blocks (to their end, or the text's end when
# unclosed), inline code, URLs.
_NOISE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]{1,200}`|\b(?:https?|ftp)://\S+|\bwww\.\S+", re.DOTALL)
_LETTER = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    keep = [label for label in identifier.labels if _FOLD.get(label, label) is not None]
    identifier.set_languages(keep)
    return identifier


def warm_up() -> None:
    """Load the model now (about 0.6 s) rather than on the first request."""
    _identifier()


def _sample(text: str) -> str:
    window = text[:CLEAN_WINDOW_CHARS]
    if "`" in window or "://" in window or "www." in window:
        window = _NOISE.sub(" ", window)
    data = window.encode("utf-8", "surrogatepass")
    if len(data) > SAMPLE_BYTES:
        if len(data) == len(window):
            window = window[:SAMPLE_BYTES]
        else:
            window = data[:SAMPLE_BYTES].decode("utf-8", "ignore")
    return " ".join(window.split())


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
