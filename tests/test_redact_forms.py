"""Redaction, third round: the forms the second round left (Cookie headers with spaces and Set-Cookie, session ids,
all-letter prose passwords, short values after explicit key words, key words of look-alike letters only, pinnings
that are no PIN), each through a real client and the worker's Pipeline, and the sentences that must stay.

A secret here is marked by a substring that must not reach the index; ``None`` marks text that must arrive as it is.
"""

from __future__ import annotations

import pytest
from aitrace.producers.redact import REDACTED, Redactor
from test_redact import _documents

CY = str.maketrans("APIKEYCOSapiceo", "АРІКЕУСОЅарісео")  # Latin letters to their Cyrillic look-alikes


def cyrillic(word: str) -> str:
    """``word`` spelt with Cyrillic letters only (every letter of it has a Cyrillic look-alike)."""
    out = word.translate(CY)
    assert out.isalpha() and not any("a" <= c.lower() <= "z" for c in out), out
    return out


MUST_GO: list[tuple[str, str]] = [
    # Cookie headers: spaces around "=" and ";", Set-Cookie; the values go
    ("Cookie: sid = Hunter2Secret", "Hunter2Secret"),
    ("Cookie: theme = dark ; sid = Hunter2Secret", "Hunter2Secret"),
    ("Set-Cookie: session=Hunter2Secret; Path=/; HttpOnly", "Hunter2Secret"),
    ("set-cookie: JSESSIONID = Hunter2Secret; Secure", "Hunter2Secret"),
    ("GET /v1 HTTP/1.1\r\nSet-Cookie:  sid=Hunter2Secret\r\nHost: api", "Hunter2Secret"),
    # session identifiers are credentials
    ("session id is 8f3a9c2e1b4d7a6f", "8f3a9c2e1b4d7a6f"),
    ("the session id was 8f3a9c2e", "8f3a9c2e"),
    ("session_id: 8f3a9c2e1b4d", "8f3a9c2e1b4d"),
    ("sessionid=8f3a9c2e", "8f3a9c2e"),
    ("JSESSIONID=8F3A9C2E1B4D7A6F", "8F3A9C2E1B4D7A6F"),
    ("PHPSESSID=h2r8s9t0u1v2", "h2r8s9t0u1v2"),
    ('{"session_id": "8f3a9c2e1b4d"}', "8f3a9c2e1b4d"),
    ("ASP.NET_SessionId=x8f3a9c2e1b4d", "x8f3a9c2e1b4d"),
    # all-letter passwords after an explicit password-is or password: form
    ("the password is correcthorsebatterystaple", "correcthorsebatterystaple"),
    ("password is admin", "admin"),
    ("Password is Sunshine", "Sunshine"),
    ("the password for root was qwe", "qwe"),
    ("password : dragonfly", "dragonfly"),  # French spacing
    ("password\uff1afalcon", "falcon"),  # a full-width colon (CJK text)
    ("Passwort: «kestrel»", "kestrel"),  # guillemets
    # short values after explicit key words
    ("api_key: k1", "k1"),
    ("token: x1", "x1"),
    ("secret=x", "=x"),
    ("db_password: hi", "hi"),
    ("db:\n  password: ab\n  user: bob", "ab"),  # YAML
    ("export PGPASSWORD=xy", "xy"),  # env file
    ("train.py --password q --epochs 3", "q --"),  # CLI flag
    ("curl -H 'X-Api-Key: k9' https://api", "k9"),  # HTTP header
    ("2026-12-06 05:31:07 WARN db connect user=bob password=ab host=db", "ab host"),  # log line
    ('{"password": "ab", "user": "bob"}', '"ab"'),  # JSON
    # key words spelt with Cyrillic look-alikes only (no Latin letter beside them to fire the fold)
    (f'{{"{cyrillic("APIKEY")}": "Hunter2Secret"}}', "Hunter2Secret"),
    (f"{cyrillic('PASS')} = Hunter2Secret", "Hunter2Secret"),
    (f"{cyrillic('COOKIE')}: sid=Hunter2Secret", "Hunter2Secret"),
    (f"{cyrillic('ACCESS')} {cyrillic('KEY')}: Hunter2Secret", "Hunter2Secret"),
    # a PIN after a word that owns one
    ("card_pin=4921", "4921"),
    ("the sim pin is 4921", "4921"),
]

MUST_STAY: list[str] = [
    # sentences after "password is" / "password:"
    "password is too short",
    "password: too short",
    "Error: password: must be at least 8 characters",
    "password: see vault",
    "the password is stored in vault",
    "password is easy to guess",
    "the password is case sensitive",
    "your password is now changed",
    "password is being rotated",
    "the password is hashed with bcrypt",
    "password: Required",
    "password must contain a digit",
    "passwords do not match",
    "password is not set",
    "Passwort: zu kurz",  # German: too short ("zu" is two letters)
    # passes, secrets and sessions in ML prose
    "the second pass was faster",
    "the first pass is slow",
    "backward pass was 2.5x slower",
    "the secret is in the data",
    "the secret was revealed",
    "session length is 30 minutes",
    "session id is 42",
    "the session was closed",
    # short values that are no secret, settings named like secrets
    "token=a id=64",
    "pass: 2",
    '{"password_set": true, "password": null, "token_type": "bearer"}',  # JSON
    "password_policy: strict\nPASSWORD_MIN_LENGTH=12",  # YAML, env file
    "docker login --password-stdin && app --password-file /run/secrets/db",  # CLI flags
    'WWW-Authenticate: Bearer realm="api"',  # HTTP header
    "2026-12-06 05:31:07 INFO auth: healthy password_set=true",  # log line
    # pinnings to cores, nodes and memory
    "cpu_pin=1234 numa_pin=0-7 pin_memory=True",
    "numa pin is 1234",
    "spin=1/2 pinned=yes",
    # Set-Cookie attributes are no secret
    "no Set-Cookie header in the response; cookie consent: accepted",
]


@pytest.mark.parametrize(("text", "secret"), MUST_GO, ids=[t[:32] for t, _ in MUST_GO])
def test_a_secret_goes(text: str, secret: str) -> None:
    redactor = Redactor()
    out = redactor.scrub(text)
    assert secret not in out and "[REDACTED:" in out, out


@pytest.mark.parametrize("text", MUST_STAY)
def test_ordinary_text_stays(text: str) -> None:
    redactor = Redactor()
    assert redactor.scrub(text) == text
    assert redactor.total == 0


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """(message, attribute) of the document the worker makes of each text, by text."""
    texts = [t for t, _ in MUST_GO] + MUST_STAY

    def send(client) -> None:  # type: ignore[no-untyped-def]
        for i, text in enumerate(texts):
            client.log("info", text, case=i, note=text)

    docs = {}
    for doc in _documents(str(tmp_path_factory.mktemp("spool")), send):
        attributes = doc["aitrace"]["attributes"]
        docs[texts[int(attributes["case"])]] = (doc["message"], attributes["note"])
    assert len(docs) == len(texts)
    return docs


@pytest.mark.parametrize(("text", "secret"), MUST_GO, ids=[t[:32] for t, _ in MUST_GO])
def test_a_secret_goes_through_a_client_and_the_worker(
    indexed: dict[str, tuple[str, str]], text: str, secret: str
) -> None:
    message, note = indexed[text]
    assert secret not in message and secret not in note and "[REDACTED:" in message, message


@pytest.mark.parametrize("text", MUST_STAY)
def test_ordinary_text_stays_through_a_client_and_the_worker(indexed: dict[str, tuple[str, str]], text: str) -> None:
    assert indexed[text] == (text, text)


def test_cookie_names_and_set_cookie_attributes_stay() -> None:
    redactor = Redactor()
    assert redactor.scrub("Cookie: theme = dark ; sid = Hunter2Secret") == (
        "Cookie: theme = [REDACTED:secret_assignment] ; sid = [REDACTED:secret_assignment]"
    )
    assert redactor.scrub("Set-Cookie: session=Hunter2Secret; Path=/; Max-Age=3600; HttpOnly") == (
        "Set-Cookie: session=[REDACTED:secret_assignment]; Path=/; Max-Age=3600; HttpOnly"
    )


def test_pinnings_are_no_pin_and_pins_still_go() -> None:
    redactor = Redactor()
    kept = {"cpu_pin": "0-7", "numa_pin": "1", "gpu_pin": "0", "pin_memory": "true", "pinned": "x", "spin": "1/2"}
    assert redactor.mapping(kept) == kept
    pins = {"pin": "4921", "pincode": "4921", "card_pin": "0042", "PIN_CODE": "004921", "simPin": "1234"}
    assert redactor.mapping(pins) == dict.fromkeys(pins, REDACTED)


def test_session_and_look_alike_field_names_are_secret_names() -> None:
    redactor = Redactor()
    keys = ["JSESSIONID", "PHPSESSID", "sessionid", "session_key", "ASP.NET_SessionId", cyrillic("APIKEY"),
            cyrillic("COOKIE"), cyrillic("PASS")]  # fmt: skip
    assert redactor.mapping(dict.fromkeys(keys, "8f3a9c2e")) == dict.fromkeys(keys, REDACTED)
