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
    ("the password is orca and the user is bob", "orca"),
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
    "the password is part of the payload",  # the sentence goes on after the word
    "password is read from the environment",
    "password is left blank",
    "password is: ask the admin",
    "password: use env var",
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


# -- holes found by looking as an attacker would: (attribute value as the client is given it, what must not arrive)
S = "Hunter2Secret"
HOLES: list[tuple[object, str]] = [
    # a name, then its value in a field of its own: HAR headers, Kubernetes env lists, OpenTelemetry JSON attributes
    ([{"name": "X-Api-Key", "value": "k1" + S}], S),
    ([{"name": "LOG_LEVEL", "value": "info"}, {"name": "DB_PASSWORD", "value": "pw" + S}], S),
    ([{"key": "db.password", "value": {"stringValue": "ot" + S}}], S),
    (f"env:\n- name: DB_PASSWORD\n  value: ya{S}\n- name: LOG_LEVEL\n  value: info", S),
    # JSON held in a JSON string (a message that logs a request body), escaped once and twice
    ('{"body": "{\\"password\\": \\"' + S + '\\"}"}', S),
    ('"{\\"msg\\": \\"{\\\\\\"api_key\\\\\\": \\\\\\"' + S + '\\\\\\"}\\"}"', S),
    # escapes that hide a key word: a bytes value's UTF-8 (its repr) and JSON's \u escapes
    (b"p\xd0\xb0ssword=by" + S.encode(), S),
    ('{"p\\u0430ssword": "ju' + S + '"}', S),
    # a token as a route's segment
    ("GET /api/reset-password/8f3a9c2e1b4d7a6f5e4d?lang=en", "8f3a9c2e1b4d7a6f5e4d"),
    ("POST /v1/token/8f3a9c2e1b4d7a6f5e4d/revoke", "8f3a9c2e1b4d7a6f5e4d"),
    # a password that starts like a placeholder was taken for one
    (f"password=${S}", S),
    (f"password=***{S}", S),
    (f"password=-----{S}", S),
]
HOLES_STAY: list[object] = [
    [{"name": "token_count", "value": "512"}, {"name": "Authorization", "value": "none"}],
    "password=${DB_PASSWORD} pwd: $PGPASS token={{ .Values.token }} secret=%(secret)s",
    "password=******** api_key=****1234 passphrase=<your-passphrase>",
    "GET /v1/token/refresh-all-sessions",
    'saved to "C:\\users\\ucafe\\x41" and b"\\xff\\xfe"',
]


@pytest.fixture(scope="module")
def holes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """The indexed attribute of each value of HOLES and HOLES_STAY, by position (HOLES first)."""
    values = [v for v, _ in HOLES] + HOLES_STAY

    def send(client) -> None:  # type: ignore[no-untyped-def]
        for i, value in enumerate(values):
            client.log("info", "hole", case=i, value=value)

    docs = _documents(str(tmp_path_factory.mktemp("spool")), send)
    return {int(d["aitrace"]["attributes"]["case"]): d["aitrace"]["attributes"]["value"] for d in docs}


@pytest.mark.parametrize("i", range(len(HOLES)), ids=[repr(v)[:32] for v, _ in HOLES])
def test_a_hole_is_closed_through_a_client_and_the_worker(holes: dict[int, str], i: int) -> None:
    assert HOLES[i][1] not in holes[i] and "[REDACTED:" in holes[i], holes[i]


@pytest.mark.parametrize("i", range(len(HOLES_STAY)), ids=[repr(v)[:32] for v in HOLES_STAY])
def test_what_the_hole_fixes_must_keep_arrives_as_it_is(holes: dict[int, str], i: int) -> None:
    from collections import Counter

    from aitrace.producers.events import text_value

    assert holes[len(HOLES) + i] == text_value(HOLES_STAY[i], Counter())


def test_a_name_value_pair_keeps_its_name_and_a_route_its_path() -> None:
    redactor = Redactor()
    assert redactor.scrub('[{"name":"X-Api-Key","value":"k1' + S + '"}]') == (
        '[{"name":"X-Api-Key","value":"[REDACTED:secret_assignment]"}]'
    )
    assert redactor.scrub("GET /api/reset-password/8f3a9c2e1b4d7a6f5e4d?lang=en") == (
        "GET /api/reset-password/[REDACTED:secret_assignment]?lang=en"
    )


def test_the_category_values_of_a_secret_named_feature_do_not_arrive(tmp_path_factory: pytest.TempPathFactory) -> None:
    import json

    import aitrace
    import numpy as np

    def send(client) -> None:  # type: ignore[no-untyped-def]
        column = np.array(["ds" + S, "ds" + S, "x1y2"], dtype=object)
        features = aitrace.summarize({"password": column}, categorical=["password"])
        client.data_stats(stage="ingest", dataset="users", features=features, row_count=3)

    docs = _documents(str(tmp_path_factory.mktemp("spool")), send)
    assert docs and S not in json.dumps(docs)


ESCAPED_JSON = [
    '{"body": "{\\"user\\": \\"jane@example.com\\", \\"ip\\": \\"10.1.2.3\\"}"}',
    '{"body": "{\\"db\\": \\"postgres://app:Hunter2@db.example/app\\", \\"card\\": \\"4111 1111 1111 1111\\"}"}',
    '{"body": "{\\"step\\": 7, \\"loss\\": 0.07}"}',
    '{"body": "{\\"password\\": \\"' + S + '\\", \\"token_count\\": 5}"}',
]


@pytest.mark.parametrize("text", ESCAPED_JSON)
def test_escaped_json_is_unescaped_only_where_a_key_word_was(text: str) -> None:
    """The quotes of JSON held in a JSON string are unescaped (a second scan) only where the text had a key word
    (the keyword trigger): other texts keep their escaped form, with what the first scan found redacted."""
    out = Redactor().scrub(text)
    assert S not in out and "jane@" not in out and "Hunter2" not in out and "4111" not in out, out
    assert ('\\"' in out) == ("password" not in text), out
