"""A deterministic, realistic mix of LLM requests for Turnout's benchmarks.

``generate(n, seed)`` returns ``n`` ``InferenceRequest`` objects; the same ``(n, seed)``
always gives the same requests, byte for byte (ids, timestamps and text included), so
two runs of a benchmark, or two benchmarks, see the same traffic.

The mix is meant to look like what an LLM gateway receives from several tenants:

| kind            | share | user content                                             |
| --------------- | ----- | -------------------------------------------------------- |
| chit-chat       | 14 %  | a few words, sometimes after a short conversation        |
| question        | 20 %  | factual and how-to questions, 30-400 characters          |
| code-generation | 14 %  | a short ask, or an ask with pasted code up to 8,000 chars|
| code-review     |  8 %  | "review this" with a pasted diff or file, 300-6,000      |
| summarization   | 12 %  | meeting notes, incident reports, articles, 1,500-8,000   |
| translation     |  8 %  | a sentence to a few paragraphs into a named language     |
| extraction      |  8 %  | emails and invoices, some with a JSON response schema    |
| math            |  8 %  | equations, arithmetic, word problems                     |
| classification  |  4 %  | sentiment and category of reviews and tickets            |
| creative        |  4 %  | poems, stories                                           |

No user message exceeds 8,000 characters. About a fifth of the requests carry a system
prompt, a few carry earlier turns, 2 % pin a fleet model, and every request has some
metadata (``source``, ``priority``, ``team``; ``pii`` and ``lang`` where they apply;
``bench_kind`` is the generator's own label, the ground truth for classifier accuracy,
which no router may route by).

Run ``python bench/prompts.py [N]`` to print the mix it generates.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from turnout.schemas.models import ChatMessage, InferenceRequest

MAX_CHARS = 8_000
T0 = datetime(2025, 6, 2, 9, 0, 0, tzinfo=timezone.utc)  # millisecond-precise, as Avro round-trips
FLEET = ("small", "medium", "large")  # the bundled dev.toml fleet, for the few pinned requests

TENANTS = (("acme", 35), ("globex", 25), ("initech", 15), ("umbrella", 10), ("hooli", 8), ("stark", 5), ("wayne", 2))
SOURCES = (("api", 50), ("batch", 25), ("pipeline", 15), ("notebook", 10))
PRIORITIES = (("normal", 70), ("low", 20), ("high", 10))
TEAMS = ("search", "support", "growth", "platform", "legal", "finance", "research", "mobile")

# -- word banks ---------------------------------------------------------------------------
NOUNS = (
    "customer", "pipeline", "invoice", "server", "dataset", "contract", "release", "budget", "cluster", "report",
    "schedule", "migration", "vendor", "dashboard", "incident", "roadmap", "policy", "service", "quarter", "team",
    "forecast", "ledger", "warehouse", "shipment", "account", "experiment", "model", "partition", "latency", "backlog",
)
ADJECTIVES = (
    "quarterly", "critical", "legacy", "new", "delayed", "approved", "regional", "internal", "shared", "primary",
    "unexpected", "stable", "expensive", "redundant", "secure", "manual", "automated", "weekly", "global", "minor",
)
VERBS = (
    "reviewed", "approved", "delayed", "migrated", "reduced", "increased", "replaced", "audited", "deployed", "escalated",
    "postponed", "measured", "rebuilt", "documented", "merged", "rejected", "prioritised", "tracked", "shipped", "paused",
)
PREPOSITIONS = ("for", "with", "after", "before", "across", "during", "without", "under")
PEOPLE = (
    "Alice Martin", "Bob Chen", "Carla Diaz", "Deepak Rao", "Elena Petrova", "Farid Haddad", "Grace Kim",
    "Hiro Tanaka", "Ines Moreau", "Jonas Weber", "Kwame Mensah", "Lucia Rossi", "Mateo Silva", "Nora Lindqvist",
)
COMPANIES = ("Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adventure Works", "Wide World Importers")
CITIES = ("Lisbon", "Osaka", "Toronto", "Nairobi", "Berlin", "Austin", "Melbourne", "Warsaw", "Santiago")
LANGUAGES = {"French": "fr", "German": "de", "Spanish": "es", "Italian": "it", "Japanese": "ja", "Chinese": "zh", "Portuguese": "pt"}
TOPICS = (
    "Kafka consumer groups", "TCP congestion control", "photosynthesis", "the French Revolution", "index funds",
    "vector databases", "garbage collection in the JVM", "the Krebs cycle", "OAuth 2.0", "plate tectonics",
    "B-trees", "inflation", "CRISPR", "the CAP theorem", "HTTP/2 multiplexing", "the Roman Republic",
)


# -- text builders --------------------------------------------------------------------------
def sentence(rng: random.Random) -> str:
    subject = f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    obj = f"the {rng.choice(NOUNS)} {rng.choice(PREPOSITIONS)} the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    tail = rng.choice(
        (
            "",
            f" by {rng.randint(2, 40)} percent",
            f" on {rng.randint(1, 28)} {rng.choice(('March', 'April', 'May', 'June', 'July'))}",
            f", according to {rng.choice(PEOPLE)}",
            f" in {rng.choice(CITIES)}",
        )
    )
    text = f"{subject} {rng.choice(VERBS)} {obj}{tail}."
    return text[0].upper() + text[1:]


def paragraph(rng: random.Random, sentences: tuple[int, int] = (3, 7)) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(*sentences)))


def fit(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, at a line or word boundary if one is near."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for sep in ("\n", " "):
        at = cut.rfind(sep)
        if at > limit * 0.8:
            return cut[:at]
    return cut


def document(rng: random.Random, target: int) -> str:
    """A long business document (meeting notes, incident report, article) of about ``target`` chars."""
    kind = rng.choice(("meeting notes", "incident report", "article", "research summary", "support transcript"))
    lines = [f"# {kind.title()}: {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} ({rng.choice(COMPANIES)})", ""]
    if kind == "support transcript":
        while sum(len(line) + 1 for line in lines) < target:
            who = rng.choice(("Agent", "Customer"))
            lines.append(f"{who} ({rng.choice(PEOPLE) if who == 'Customer' else 'Support'}): {paragraph(rng, (1, 3))}")
    else:
        section = 1
        while sum(len(line) + 1 for line in lines) < target:
            lines += [f"## {section}. {rng.choice(NOUNS).title()} {rng.choice(('status', 'risks', 'decisions', 'findings', 'timeline'))}", paragraph(rng), ""]
            if rng.random() < 0.3:
                lines += [f"- {rng.choice(PEOPLE)}: {sentence(rng)}" for _ in range(rng.randint(2, 5))] + [""]
            section += 1
    return fit("\n".join(lines), target)


def _py_function(rng: random.Random) -> str:
    name = f"{rng.choice(('load', 'parse', 'merge', 'score', 'rollup', 'dedupe', 'flush', 'resolve'))}_{rng.choice(NOUNS)}s"
    arg = rng.choice(("rows", "path", "records", "events", "items"))
    body = rng.choice(
        (
            f"    totals = {{}}\n    for row in {arg}:\n        key = row[0].strip().lower()\n        totals[key] = totals.get(key, 0) + float(row[{rng.randint(1, 4)}])\n    return totals\n",
            f"    seen = set()\n    out = []\n    for item in {arg}:\n        if item['id'] in seen:\n            continue\n        seen.add(item['id'])\n        out.append(item)\n    return out\n",
            f"    with open({arg}) as handle:\n        lines = [line.rstrip('\\n').split(',') for line in handle]\n    return [l for l in lines if len(l) > {rng.randint(2, 6)}]\n",
            f"    if not {arg}:\n        raise ValueError('empty input')\n    window = {rng.randint(3, 30)}\n    return [sum({arg}[i:i + window]) / window for i in range(len({arg}) - window + 1)]\n",
            f"    result = []\n    for i, value in enumerate({arg}):\n        if i % {rng.randint(2, 9)} == 0:\n            result.append(value * {rng.randint(2, 99)})\n    return result\n",
        )
    )
    return f"def {name}({arg}):\n    \"\"\"{sentence(rng)}\"\"\"\n{body}"


def _js_function(rng: random.Random) -> str:
    name = f"{rng.choice(('fetch', 'render', 'update', 'validate', 'format'))}{rng.choice(NOUNS).title()}"
    return (
        f"export async function {name}(id, options = {{}}) {{\n"
        f"  const response = await fetch(`/api/{rng.choice(NOUNS)}s/${{id}}`, {{ method: 'GET', ...options }});\n"
        f"  if (!response.ok) {{\n    throw new Error(`{name} failed: ${{response.status}}`);\n  }}\n"
        f"  const data = await response.json();\n  return data.items.filter((x) => x.{rng.choice(('active', 'visible', 'paid'))}).slice(0, {rng.randint(5, 50)});\n}}\n"
    )


def _sql_query(rng: random.Random) -> str:
    table = rng.choice(NOUNS) + "s"
    return (
        f"SELECT t.tenant, date_trunc('day', t.created_at) AS day, count(*) AS n, sum(t.amount) AS total\n"
        f"FROM {table} t\nJOIN accounts a ON a.id = t.account_id\n"
        f"WHERE t.created_at > now() - interval '{rng.randint(2, 90)} days' AND a.region = '{rng.choice(CITIES)}'\n"
        f"GROUP BY 1, 2\nORDER BY total DESC\nLIMIT {rng.randint(10, 500)};\n"
    )


def _rust_function(rng: random.Random) -> str:
    name = f"{rng.choice(('parse', 'sum', 'merge', 'find'))}_{rng.choice(NOUNS)}"
    return (
        f"pub fn {name}(input: &[u64]) -> Option<u64> {{\n    let mut acc = 0u64;\n"
        f"    for (i, v) in input.iter().enumerate() {{\n        if i % {rng.randint(2, 7)} == 0 {{\n            acc = acc.checked_add(*v)?;\n        }}\n    }}\n"
        f"    Some(acc)\n}}\n"
    )


CODE_LANGS: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "python": ("python", _py_function),
    "javascript": ("javascript", _js_function),
    "sql": ("sql", _sql_query),
    "rust": ("rust", _rust_function),
}


def code_block(rng: random.Random, lang: str, target: int) -> str:
    fence, make = CODE_LANGS[lang]
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < target:
        parts.append(make(rng))
    return f"```{fence}\n" + fit("\n".join(parts), target) + "\n```"


def length(rng: random.Random, low: int, high: int) -> int:
    """A length between ``low`` and ``high``, skewed towards the short end (log-uniform)."""
    return int(round(low * (high / low) ** rng.random()))


# -- the kinds of request -------------------------------------------------------------------
Made = tuple[str, dict[str, Any]]  # user content, extra request fields (system, history, metadata, ...)


def chit_chat(rng: random.Random) -> Made:
    text = rng.choice(
        (
            "Hi there! How are you doing today?",
            "Hello!",
            "Thanks a lot, that was helpful.",
            "Good morning, quick one for you.",
            "hey, are you there?",
            "Thank you, that fixed it!",
            "How are you?",
            "Good evening! Hope your day went well.",
            "Hi, can you help me with something later?",
            "thanks!!",
        )
    )
    extra: dict[str, Any] = {}
    if rng.random() < 0.3:  # a conversation already under way
        extra["history"] = [("user", f"What do you know about {rng.choice(TOPICS)}?"), ("assistant", paragraph(rng, (2, 4)))]
    return text, extra


def question(rng: random.Random) -> Made:
    topic, other = rng.sample(TOPICS, 2)
    text = rng.choice(
        (
            f"What is the difference between {topic} and {other}?",
            f"Can you explain {topic} to a new engineer in simple terms?",
            f"Why does {topic} matter for a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}?",
            f"How do I set up a {rng.choice(NOUNS)} for {rng.choice(CITIES)} with a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}?",
            f"Who should own the {rng.choice(NOUNS)} {rng.choice(('review', 'budget', 'rollout'))} when {sentence(rng).lower()}",
            f"Is it true that {sentence(rng).lower().rstrip('.')}? {paragraph(rng, (1, 2))} What would you check first?",
            f"What are the main trade-offs of {topic}?",
        )
    )
    extra: dict[str, Any] = {}
    if rng.random() < 0.25:
        extra["system"] = f"You are a concise assistant for the {rng.choice(TEAMS)} team. Answer in at most three paragraphs."
    return text, extra


def code_generation(rng: random.Random) -> Made:
    lang = rng.choice(tuple(CODE_LANGS))
    ask = rng.choice(
        (
            f"Write a {lang} function that validates a {rng.choice(NOUNS)} id and returns a typed error.",
            f"Implement a {lang} class that caches {rng.choice(NOUNS)}s with an LRU policy and a TTL.",
            f"Create a {lang} script that reads a CSV of {rng.choice(NOUNS)}s and prints the top 10 by amount.",
            f"Generate a {lang} query that counts {rng.choice(NOUNS)}s per tenant per day.",
        )
    )
    if rng.random() < 0.45:
        return ask, {}
    pasted = code_block(rng, lang, length(rng, 400, MAX_CHARS - 400))
    lead = rng.choice(
        (
            f"Write a {lang} function that merges these into one streaming pipeline with backpressure and tests:",
            f"Extend the following {lang} code with retries and structured logging; write the new code in full:",
            f"Implement the missing pieces of this {lang} module and add unit tests:",
        )
    )
    return f"{lead}\n\n{pasted}", {}


def code_review(rng: random.Random) -> Made:
    lang = rng.choice(tuple(CODE_LANGS))
    pasted = code_block(rng, lang, length(rng, 300, 6_000))
    lead = rng.choice(
        (
            "Review this code and find the bugs:",
            "Please do a code review of this pull request. Focus on error handling and naming.",
            "What's wrong with this code? It fails on large inputs.",
            "Refactor this function for readability and point out any code smells:",
        )
    )
    extra: dict[str, Any] = {}
    if rng.random() < 0.4:
        extra["system"] = "You are a senior engineer doing code review. Be specific; quote the lines you comment on."
    return f"{lead}\n\n{pasted}", extra


def summarization(rng: random.Random) -> Made:
    doc = document(rng, length(rng, 1_500, MAX_CHARS - 300))
    lead = rng.choice(
        (
            "Summarize the following document in five bullet points:",
            "TL;DR of this, please:",
            "Give me the key points and the decisions taken:",
            "Condense this into a one-paragraph summary for an executive:",
        )
    )
    return f"{lead}\n\n{doc}", {"pii": rng.random() < 0.3}


def translation(rng: random.Random) -> Made:
    lang = rng.choice(tuple(LANGUAGES))
    body = paragraph(rng, (1, 2)) if rng.random() < 0.6 else "\n\n".join(paragraph(rng) for _ in range(rng.randint(2, 6)))
    lead = rng.choice((f"Translate into {lang}:", f"Translate the following text to {lang}, keeping the tone formal:", f"Please translate this to {lang}."))
    return f"{lead}\n\n{fit(body, 1_500)}", {"lang": LANGUAGES[lang]}


def extraction(rng: random.Random) -> Made:
    person, other = rng.sample(PEOPLE, 2)
    source = rng.choice(("email", "invoice"))
    if source == "email":
        doc = (
            f"From: {person} <{person.split()[0].lower()}@{rng.choice(COMPANIES).split()[0].lower()}.example>\n"
            f"To: {other}\nDate: 2025-0{rng.randint(1, 9)}-{rng.randint(10, 28)}\nSubject: {rng.choice(NOUNS).title()} follow-up\n\n"
            + "\n\n".join(paragraph(rng, (2, 5)) for _ in range(rng.randint(1, 6)))
            + f"\n\nCall me on +1 555 01{rng.randint(10, 99)} if anything is unclear.\n{person}"
        )
    else:
        rows = "\n".join(
            f"{i + 1}. {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}  x{rng.randint(1, 20)}  {rng.randint(5, 900)}.{rng.randint(0, 99):02d} EUR"
            for i in range(rng.randint(3, 40))
        )
        doc = f"INVOICE {rng.randint(10000, 99999)}\nSeller: {rng.choice(COMPANIES)}, {rng.choice(CITIES)}\nBuyer: {person}\nDue: 2025-0{rng.randint(1, 9)}-{rng.randint(10, 28)}\n\n{rows}"
    lead = rng.choice(
        ("Extract the names, dates and amounts from the text below as JSON.",)
        + (("Pull out the names and emails mentioned in this message.",) if source == "email" else ())
        + (("Extract every line item (description, quantity, price) from this invoice.",) if source == "invoice" else ())
    )
    extra: dict[str, Any] = {"pii": True}
    if rng.random() < 0.5:
        extra["response_schema"] = (
            '{"type":"object","properties":{"names":{"type":"array","items":{"type":"string"}},'
            '"dates":{"type":"array","items":{"type":"string"}},"amounts":{"type":"array","items":{"type":"number"}}},'
            '"required":["names","dates","amounts"]}'
        )
    return f"{lead}\n\n{fit(doc, 3_000)}", extra


def math(rng: random.Random) -> Made:
    a, b, c = rng.randint(2, 99), rng.randint(2, 999), rng.randint(2, 9_999)
    text = rng.choice(
        (
            f"Solve for x: {a}x + {b} = {c}",
            f"Calculate {a} * {b} + {c} / {rng.randint(2, 9)}",
            f"What is the derivative of x^{rng.randint(2, 9)} * sin({a}x)?",
            f"Compute the integral of {a}x^2 from 0 to {rng.randint(2, 20)}.",
            f"A train leaves {rng.choice(CITIES)} at {rng.randint(6, 11)}:00 going {a} km/h; another leaves {b} km away at "
            f"{rng.randint(12, 14)}:00 going {rng.randint(40, 200)} km/h towards it. When do they meet? Show your steps.",
            f"Prove that the sum of the first {a} odd numbers is {a}^2.",
        )
    )
    return text, {"temperature": 0.0}


def classification(rng: random.Random) -> Made:
    review = paragraph(rng, (1, 4))
    lead = rng.choice(
        (
            "Classify the sentiment of this review as positive, negative or neutral:",
            "Categorize this support ticket into billing, bug, feature-request or other:",
            "Label this message as spam or not spam:",
        )
    )
    return f"{lead}\n\n{review}", {"max_tokens": 5}


def creative(rng: random.Random) -> Made:
    topic = rng.choice(TOPICS)
    text = rng.choice(
        (
            f"Write a haiku about {topic}.",
            f"Write a short story (300 words) about a {rng.choice(NOUNS)} in {rng.choice(CITIES)}.",
            f"Write a limerick about a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}.",
            f"A poem for my colleague {rng.choice(PEOPLE)} who is leaving the {rng.choice(TEAMS)} team, please.",
        )
    )
    return text, {"temperature": 0.9}


KINDS: tuple[tuple[str, int, Callable[[random.Random], Made]], ...] = (
    ("chit-chat", 14, chit_chat),
    ("question", 20, question),
    ("code-generation", 14, code_generation),
    ("code-review", 8, code_review),
    ("summarization", 12, summarization),
    ("translation", 8, translation),
    ("extraction", 8, extraction),
    ("math", 8, math),
    ("classification", 4, classification),
    ("creative", 4, creative),
)


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([name for name, _ in table], weights=[w for _, w in table])[0]


def make_request(rng: random.Random, index: int, seed: int, created: datetime) -> tuple[str, InferenceRequest]:
    """The ``index``-th request of the mix, created at ``created``: ``(kind, request)``."""
    kind, make = rng.choices([(k, f) for k, _, f in KINDS], weights=[w for _, w, _ in KINDS])[0]
    content, extra = make(rng)
    content = fit(content, MAX_CHARS)
    messages: list[ChatMessage] = []
    if "system" in extra:
        messages.append(ChatMessage(role="system", content=extra["system"]))
    for role, text in extra.get("history", []):
        messages.append(ChatMessage(role=role, content=text))
    messages.append(ChatMessage(role="user", content=content))
    metadata = {"source": _weighted(rng, SOURCES), "priority": _weighted(rng, PRIORITIES), "team": rng.choice(TEAMS), "bench_kind": kind}
    if extra.get("pii"):
        metadata["pii"] = "true"
    if "lang" in extra:
        metadata["lang"] = extra["lang"]
    request = InferenceRequest(
        id=f"bench-{seed}-{index:07d}",
        tenant=_weighted(rng, TENANTS),
        messages=messages,
        response_schema=extra.get("response_schema"),
        max_tokens=extra.get("max_tokens") or rng.choice((None, None, 256, 512, 1024)),
        temperature=extra.get("temperature"),
        metadata=metadata,
        created_at=created,
        deadline=created + timedelta(seconds=rng.choice((60, 120, 600))) if rng.random() < 0.3 else None,
        model=rng.choice(FLEET) if rng.random() < 0.02 else None,
    )
    return kind, request


def generate(n: int, seed: int = 7, now: datetime | None = None) -> list[InferenceRequest]:
    """``n`` requests of the mix, the same for the same ``(n, seed)``.

    They were created 7 ms apart, the last at ``now`` (default: a fixed instant, so the
    output is deterministic); a benchmark that routes them live passes the current time
    so that their deadlines (30 % have one, 60-600 s after creation) lie ahead.
    """
    rng = random.Random(seed)
    end = (now or T0).replace(microsecond=(now or T0).microsecond // 1000 * 1000)  # Avro keeps milliseconds
    return [make_request(rng, i, seed, end - timedelta(milliseconds=(n - 1 - i) * 7))[1] for i in range(n)]


def openai_messages(request: InferenceRequest) -> list[dict[str, str]]:
    """The request's messages as OpenAI chat-completions dicts (what LiteLLM takes)."""
    return [{"role": m.role, "content": m.content} for m in request.messages]


def describe(requests: list[InferenceRequest]) -> str:
    """A short table of the mix: kinds, tenants, lengths."""
    kinds = Counter(r.metadata.get("bench_kind", "?") for r in requests)
    tenants = Counter(r.tenant for r in requests)
    sizes = sorted(sum(len(m.content) for m in r.messages) for r in requests)

    def pct(p: float) -> int:
        return sizes[min(len(sizes) - 1, int(p * len(sizes)))]

    lines = [f"{len(requests)} requests, seed-deterministic"]
    lines.append("  kinds:   " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    lines.append("  tenants: " + ", ".join(f"{k} {v}" for k, v in tenants.most_common()))
    lines.append(
        f"  chars:   min {sizes[0]}, p50 {pct(0.5)}, p90 {pct(0.9)}, p99 {pct(0.99)}, max {sizes[-1]}, mean {sum(sizes) / len(sizes):.0f}"
    )
    lines.append(
        f"  pinned {sum(1 for r in requests if r.model)}, with system prompt {sum(1 for r in requests if r.messages[0].role == 'system')}, "
        f"multi-turn {sum(1 for r in requests if len(r.messages) > 2)}, with response_schema {sum(1 for r in requests if r.response_schema)}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)))
