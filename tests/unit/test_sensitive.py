"""streams/sensitive.py: the kinds of sensitive data in a prompt, never the values, and
the redactor used before prompts are stored."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.streams import sensitive
from turnout.streams.sensitive import (
    IBAN_LENGTHS,
    KINDS,
    dni_valid,
    find_sensitive,
    iban_valid,
    luhn_valid,
    nir_valid,
    redact,
    scan,
    ssn_valid,
)

# --------------------------------------------------------------------------- generators


def luhn_complete(prefix: str, length: int, rng: random.Random | None = None) -> str:
    """A card number of ``length`` digits starting with ``prefix`` and ending with the
    Luhn check digit."""
    rng = rng or random.Random(0)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


def make_iban(country: str, bban: str) -> str:
    """``bban`` with the country code and the ISO 13616 check digits in front."""
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def make_nir(body13: str) -> str:
    digits = body13.replace("2A", "19").replace("2B", "18") if body13[5:7] in ("2A", "2B") else body13
    return f"{body13}{97 - int(digits) % 97:02d}"


def dni_letter(number: str) -> str:
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(number) % 23]


def grouped(value: str, size: int = 4, sep: str = " ") -> str:
    return sep.join(value[i : i + size] for i in range(0, len(value), size))


K = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"  # a mixed-case key body


# --------------------------------------------------------------------------- checks


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("79927398710")


def test_iban_check() -> None:
    assert iban_valid("DE89370400440532013000")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89370400440532013001")  # mod-97 fails
    assert not iban_valid("DE8937040044053201300")  # length for DE is 22
    assert not iban_valid("QQ89370400440532013000")  # no such country
    assert IBAN_LENGTHS["NO"] == 15 and IBAN_LENGTHS["RU"] == 33


def test_national_id_checks() -> None:
    assert ssn_valid("536", "22", "1234")
    for area, group, serial in [("000", "12", "3456"), ("666", "12", "3456"), ("900", "12", "3456"), ("999", "12", "3456"),
                                ("123", "00", "4567"), ("123", "45", "0000"), ("078", "05", "1120")]:
        assert not ssn_valid(area, group, serial)
    assert dni_valid("12345678", "Z") and not dni_valid("12345678", "A")
    assert dni_valid("X1234567", "L") and dni_valid("Y1234567", dni_letter("11234567"))
    assert nir_valid("184127645108946")
    assert not nir_valid("184127645108947")
    corsica = make_nir("28405" + "2A" + "451089")  # Corse-du-Sud: 2A counts as 19
    assert nir_valid(corsica)


# --------------------------------------------------------------------------- true positives

POSITIVES: dict[str, list[str]] = {
    "email": [
        "john.doe@example.com",
        "a+tag@sub.example.co.uk",
        "x_y-z@dept.example.org",
        "John.Doe@Example.COM",
        "<jane@example.io>",
        "mailto:jane@example.io",
        "write to (bob@corp.example.com).",
        "Contact: o'brien.jr@mail.example.ie",
    ],
    "phone": [
        "+1 415 555 2671",
        "+14155552671",
        "+44 20 7946 0958",
        "+33 1 23 45 67 89",
        "+33 (0)1 23 45 67 89",
        "+4915112345678",
        "+49 (0) 30 1234567",
        "+81-3-1234-5678",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "415 555 2671",
        "1-800-555-0199",
        "1 (800) 555-0199",
        "020 7946 0958",
        "07700 900123",
        "01 23 45 67 89",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "030/1234567",
        "0171-1234567",
        "0044 20 7946 0958",
        "call (020) 7946 0958",
        "Tel: 0612345678",
        "phone 4155552671",
        "Mobile no. +447700900123",
    ],
    "payment_card": [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",
        "2223 0031 2200 3222",
        "3782 822463 10005",
        "371449635398431",
        "6011 1111 1111 1117",
        "3056 930902 5904",
        "3530 1113 3330 0000",
        "6200000000000005",
        "4222222222222",
        grouped(luhn_complete("4", 19)),
    ],
    "iban": [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "BE68539007547034",
        "CH9300762011623852957",
        "NO9386011117947",
        "IBAN: DE89370400440532013000.",
        make_iban("PL", "109010140000071219812874"),
    ],
    "national_id": [
        "123-45-6789",
        "536-22-1234",
        "SSN: 536 22 1234",
        "social security number 536 22 1234",
        "AB 12 34 56 C",
        "AB123456C",
        "JG103759A",
        "12345678Z",
        "12345678-Z",
        "X1234567L",
        "X-1234567-L",
        "1 84 12 76 451 089 46",
        "184127645108946",
        make_nir("28405" + "2A" + "451089"),
    ],
    "secret": [
        "export OPENAI_API_KEY=sk-" + K[:48],
        "key: sk-proj-" + K + "_-" + K,
        "sk-svcacct-" + K,
        "ANTHROPIC_API_KEY=sk-ant-api03-" + K + K + "-AA",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "token ghp_" + K[:36],
        "gho_" + K[:36],
        "github_pat_11ABCDEFG0123456789_" + K + "abcdefghij",
        "xoxb-123456789012-1234567890123-" + K[:24],
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "AIza" + "SyD" + K[:32],
        "sk_live_" + K[:24],
        "rk_test_" + K[:24],
        "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "Authorization: Bearer " + K,
        "DATABASE_URL=postgres://app:Sup3rS3cret!@db.internal:5432/app",
        "redis://:p4ssw0rd@cache:6379/0",
        "DB_PASSWORD=hunter22",
        '{"password": "correct horse battery staple"}',
        "password: s3cr3t!",
        "client_secret = 'x9Fq2LmP7vR4tY8wZ1aB'",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        'apiKey: "Zx81kLm2Qp0rSt5vWx7y"',
        "connect(host='db', user='app', password='pa55w0rd!')",
        "--password=Tr0ub4dor&3",
        "x-api-key: 8f14e45fceea167a5a36dedd4bea2543",
        "auth_token => 'AbCdEf0123456789GhIj'",
        "PASSWORD := 'Winter2024!'",
    ],
}
ALL_POSITIVES = [(kind, text) for kind, texts in POSITIVES.items() for text in texts]


@pytest.mark.parametrize(("kind", "text"), ALL_POSITIVES)
def test_each_kind_is_found(kind: str, text: str) -> None:
    assert find_sensitive(text) == {kind}


@pytest.mark.parametrize(("kind", "text"), ALL_POSITIVES)
def test_found_in_the_middle_of_a_sentence(kind: str, text: str) -> None:
    sentence = f"Please update the record. Details: {text} \u2014 thanks, Marie (ticket 42, 2024-05-14)."
    assert find_sensitive(sentence) == {kind}


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("4111 1111 1111 1111", "visa"),
        ("5555 5555 5555 4444", "mastercard"),
        ("3782 822463 10005", "amex"),
        ("6011 1111 1111 1117", "discover"),
        ("3530 1113 3330 0000", "jcb"),
        ("sk-ant-api03-" + K + K, "anthropic_key"),
        ("sk-proj-" + K, "openai_key"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
        ("536-22-1234", "us_ssn"),
        ("AB 12 34 56 C", "uk_nino"),
        ("12345678Z", "es_dni"),
        ("X1234567L", "es_nie"),
        ("184127645108946", "fr_nir"),
        ("+44 20 7946 0958", "e164"),
    ],
)
def test_findings_name_the_detector_not_the_value(text: str, detail: str) -> None:
    (finding,) = scan(text)
    assert finding.detail == detail
    assert text[finding.start : finding.end] not in repr(finding)


def test_a_key_in_an_assignment_is_reported_by_its_own_pattern() -> None:
    (finding,) = scan("OPENAI_API_KEY=sk-proj-" + K)
    assert finding.detail == "openai_key"
    (finding,) = scan('{"token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_X"}')
    assert finding.detail == "jwt"


def test_several_kinds_at_once() -> None:
    text = (
        "Hi, I'm Jane (jane.doe@example.com, +44 20 7946 0958). Please charge 4111 1111 1111 1111 "
        "or wire to DE89 3704 0044 0532 0130 00. My SSN is 536-22-1234 and the key is AKIAIOSFODNN7EXAMPLE."
    )
    assert find_sensitive(text) == set(KINDS)


def test_an_iban_is_not_also_a_phone_or_a_card() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00"
    assert [f.kind for f in scan(text)] == ["iban"]


def test_url_credentials_redact_only_the_user_and_password() -> None:
    assert redact("postgres://admin:s3cret@db.example.com:5432/app") == "postgres://[REDACTED:secret]@db.example.com:5432/app"


def test_a_truncated_private_key_is_redacted_through_its_base64_lines() -> None:
    text = "key below\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n\nthanks!"
    assert redact(text) == "key below\n[REDACTED:secret]\n\nthanks!"


# --------------------------------------------------------------------------- look-alikes

NEGATIVES = [
    # dates and times
    "2024-01-15", "15/01/2024", "01.02.2024", "2024/01/15", "15.01.2024 10:30", "01/02/2024 10:30:15",
    "2024-01-15T10:30:00Z", "Jan 15, 2024", "1700000000000", "1700000000", "ID: 20240115-0001",
    # versions and addresses
    "1.2.3", "v10.0.19041.1234", "Python 3.11.7", "node 18.17.1", "192.168.1.1", "10.0.0.255", "2001:db8::1",
    "see RFC 7231 section 6.5.1",
    # order ids, invoices, references
    "ORD-2024-000123", "INV-00012345", "#123456789", "order 123456789", "Invoice 2024-0937", "ISBN 978-3-16-148410-0",
    # UUIDs, hashes, hex
    "123e4567-e89b-12d3-a456-426614174000", "550e8400-e29b-41d4-a716-446655440000",
    "9fceb02d0ae598e95dc970b74767f19372d61af8", "commit 9fceb02", "0x7fffffffffffffff", "0123456789abcdef0123456789abcdef",
    # plain numbers
    "1,234,567.89", "3.14159265358979", "0.000123456", "12345678", "1234567890", "price: 1 299 000 EUR",
    "lat 48.858370, lon 2.294481", "€1.234.567,89", "phone: 123", "tel. 12 34", "(2024) report", "f(123456789)",
    "x = 4111111111111111a", "id=4111111111111111_",
    # invalid cards, IBANs, ids
    "4111 1111 1111 1112", "0000 0000 0000 0000", luhn_complete("1", 16), "DE89 3704 0044 0532 0130 01",
    "DE89 3704 0044 0532 0130", "QQ89370400440532013000", "000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567",
    "123-45-0000", "078-05-1120", "123 45 6789", "BG 12 34 56 A", "GB123456A", "QQ123456C", "AB123456E",
    "12345678A", "184127645108947",
    # not phones
    "call me at 555-123-4567", "(123) 456-7890",
    # not secrets
    "sk-learn", "use a task-management-system-for-teams", "disk-based-replication-strategy-for-clusters",
    "sk-" + "a" * 40, "AKIA1234", "ghp_short", "eyJ", "Bearer of bad news", "the bearer token must be sent",
    "password: ********", "password = os.environ['DB_PASSWORD']", "password=${DB_PASSWORD}", "password: %(pw)s",
    "api_key: <your-api-key>", "api_key = 'YOUR_API_KEY'", "max_tokens=1000", "tokenizer: o200k_base",
    "page_token: 'CAEQAAbcdefghijklmnop123'", "password_hash = hash(password)", "password = get_password()",
    "password = self.password", "password = user_password", "def check(password: str) -> bool:",
    "the password is required", "keyboard = 'qwertyuiop12'", "monkey=banana12345678", "key = 'name'",
    "secret: true", "token: 5", "passwords: [a, b]", "PRIVATE KEY", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
    "https://example.com:8080/path", "postgres://db.example.com:5432/app", "ftp://${USER}:${PASS}@host",
    # not emails
    "@app.get('/')", "icon@2x.png", "git@github.com:org/repo.git", "user@localhost", "foo@bar", "https://user@example.com",
    "npm i @babel/core@7.24.0", "pip install package==1.2.3",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_look_alikes_are_not_flagged(text: str) -> None:
    assert scan(text) == [], [(f.kind, f.detail, text[f.start : f.end]) for f in scan(text)]


def test_ordinary_prose_and_code_are_clean() -> None:
    prose = (
        "The committee met on 14 May 2024 at 10:30 to review version 2.3.1 of the proposal. "
        "Revenue grew 14% to $2.3 billion; 1,204 of 8,210 employees (14.7%) joined the plan. "
        "See section 4.2.1 and table 3 for the 2019-2023 figures. Order ORD-2024-000123 shipped."
    )
    code = (
        "def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:\n"
        "    key = lambda pair: pair[0]\n    tokens = tokenizer.encode(text)[:4096]\n"
        "    secret_santa = random.choice(names)\n    return sorted(intervals, key=key)\n"
        "assert merge([(1, 3), (2, 6)]) == [(1, 6)]  # 2024-01-15 fix for #1234\n"
        "x = np.array([[0.12345678, 1.23456789], [123456789.0, 987654321.0]])\n"
    )
    assert find_sensitive(prose) == frozenset()
    assert find_sensitive(code) == frozenset()


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(("kind", "text"), ALL_POSITIVES)
def test_redaction_never_leaves_the_value(kind: str, text: str) -> None:
    (finding,) = scan(text)
    value = text[finding.start : finding.end]
    redacted = redact(f"before {text} after")
    assert value not in redacted
    assert f"[REDACTED:{kind}]" in redacted
    assert redacted.startswith("before ") and redacted.endswith(" after")
    assert find_sensitive(redacted) == frozenset()


def test_redact_only_the_kinds_asked_for() -> None:
    text = "mail jane@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE"
    assert redact(text, kinds={"email"}) == "mail [REDACTED:email], card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE"
    assert redact(text, kinds=["payment_card", "secret"]) == (
        "mail jane@example.com, card [REDACTED:payment_card], key [REDACTED:secret]"
    )
    assert redact(text, kinds=()) == text
    assert redact(text) == "mail [REDACTED:email], card [REDACTED:payment_card], key [REDACTED:secret]"


def test_redact_with_a_subset_still_redacts_values_another_kind_overlaps() -> None:
    # the email inside URL credentials is not one when secrets are redacted too, but a
    # caller asking for emails only still gets that span redacted
    text = "postgres://admin:pw@db.example.com/app"
    assert redact(text, kinds={"email"}) == "postgres://admin:[REDACTED:email]/app"


def test_unknown_kinds_are_an_error() -> None:
    with pytest.raises(ValueError, match="unknown kinds"):
        redact("x", kinds={"emails"})


def test_text_without_findings_is_returned_unchanged() -> None:
    assert redact("") == ""
    assert redact("nothing to see here") == "nothing to see here"
    assert scan("") == [] and find_sensitive("") == frozenset()


# --------------------------------------------------------------------------- properties

_FILLER = st.text(
    alphabet=st.sampled_from(list(string.ascii_letters + " .,;:!?\n-'\"()é中")), min_size=0, max_size=40
)


@st.composite
def sensitive_values(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(KINDS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    if kind == "email":
        local = draw(st.text(string.ascii_lowercase + string.digits + "._+-", min_size=1, max_size=20)).strip(".") or "a"
        value = f"{local}@{draw(st.sampled_from(['example.com', 'mail.example.org', 'corp.co.uk']))}"
    elif kind == "phone":
        value = draw(st.sampled_from(["+{cc} {a} {b} {c}", "({a3}) {b3}-{c4}", "0{a2} {b2} {c2} {d2} {e2}"])).format(
            cc=rng.randint(1, 99), a=rng.randint(10, 99), b=rng.randint(1000, 9999), c=rng.randint(1000, 9999),
            a3=rng.randint(200, 999), b3=rng.randint(200, 999), c4=f"{rng.randint(0, 9999):04d}",
            a2=rng.randint(1, 9), b2=f"{rng.randint(0, 99):02d}", c2=f"{rng.randint(0, 99):02d}",
            d2=f"{rng.randint(0, 99):02d}", e2=f"{rng.randint(0, 99):02d}",
        )
    elif kind == "payment_card":
        prefix, length = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("3530", 16)])
        number = luhn_complete(prefix, length, rng)
        value = draw(st.sampled_from([number, grouped(number), grouped(number, sep="-")])) if length == 16 else number
    elif kind == "iban":
        country = rng.choice(["DE", "FR", "GB", "NL", "ES", "IT", "BE", "CH"])
        length = IBAN_LENGTHS[country] - 4
        bban = "".join(rng.choice(string.digits) for _ in range(length))
        iban = make_iban(country, bban)
        value = draw(st.sampled_from([iban, grouped(iban)]))
    elif kind == "national_id":
        number = f"{rng.randint(0, 99_999_999):08d}"
        value = draw(st.sampled_from([
            f"{rng.randint(1, 665):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}",
            number + dni_letter(number),
            make_nir(f"{rng.randint(1, 2)}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}"
                     f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"),
        ]))
    else:
        value = draw(st.sampled_from([
            "sk-proj-" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(40)) + "Aa1",
            "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16)),
            "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36)),
            "password='" + "".join(rng.choice(string.ascii_letters) for _ in range(8)) + "9!'",
        ]))
    return kind, value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sensitive_values(), _FILLER, _FILLER)
def test_generated_values_are_found_and_redacted(value: tuple[str, str], before: str, after: str) -> None:
    kind, secret = value
    text = f"{before} {secret} {after}"
    assert kind in find_sensitive(text)
    redacted = redact(text)
    core = secret.split("'")[1] if secret.startswith("password=") else secret
    assert core not in redacted


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_well_formed_findings(text: str) -> None:
    findings = scan(text)
    previous_end = 0
    for f in findings:
        assert f.kind in KINDS
        assert previous_end <= f.start < f.end <= len(text)
        previous_end = f.end
    assert find_sensitive(text) == {f.kind for f in findings}
    assert redact(text, kinds=()) == text
    if not findings:
        assert redact(text) == text


_LITERAL_SOUP = st.lists(
    st.one_of(st.sampled_from(list(sensitive._LITERALS)), st.text(max_size=6), st.sampled_from(["中", "é", "🙂", " ", "="])),
    max_size=25,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_LITERAL_SOUP)
def test_the_automaton_and_the_str_find_fallback_agree(text: str) -> None:
    assert sorted(sensitive._literal_hits(text)) == sorted(sensitive._literal_hits_fallback(text))


def test_results_do_not_depend_on_the_automaton(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [text for _, text in ALL_POSITIVES] + NEGATIVES
    expected = [scan(text) for text in texts]
    monkeypatch.setattr(sensitive, "_AUTOMATON", None)
    assert [scan(text) for text in texts] == expected


_DATE_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y-%m-%dT%H:%M:%SZ",
                 "%d/%m/%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%Y%m%d", "%b %d, %Y", "%d %B %Y"]


@st.composite
def look_alikes(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(st.datetimes()).strftime(draw(st.sampled_from(_DATE_FORMATS)))
    if choice == 1:  # versions (a major version of three digits and a 3-4 digit minor would be a dotted US phone)
        parts = [draw(st.integers(0, 99)), *draw(st.lists(st.integers(0, 99999), min_size=1, max_size=4))]
        return draw(st.sampled_from(["", "v", "version "])) + ".".join(map(str, parts))
    if choice == 2:  # IPv4 addresses, with or without a port
        address = ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
        return address + draw(st.sampled_from(["", f":{draw(st.integers(1, 65535))}"]))
    if choice == 3:  # UUIDs and git SHAs
        return str(draw(st.uuids())) if draw(st.booleans()) else draw(st.text("0123456789abcdef", min_size=7, max_size=40))
    if choice == 4:  # order and invoice ids
        return f"{draw(st.sampled_from(['ORD', 'INV', 'PO', 'REF']))}-{draw(st.integers(2000, 2030))}-{draw(st.integers(0, 999999)):06d}"
    # decimals and amounts
    value = draw(st.floats(min_value=0, max_value=1e9, allow_nan=False))
    return draw(st.sampled_from([f"{value:.2f}", f"{value:,.2f}", f"{value:.8f}", f"${value:,.0f}"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(look_alikes(), min_size=1, max_size=4), st.sampled_from([" ", ", ", "; ", " and ", "\n"]))
def test_generated_look_alikes_are_not_flagged(values: list[str], joiner: str) -> None:
    text = "Values: " + joiner.join(values) + "."
    assert scan(text) == [], [(f.kind, f.detail, text[f.start : f.end]) for f in scan(text)]
