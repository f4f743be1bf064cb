"""Redaction: a corpus of realistic secrets and PII (zero misses) and benign ML text (zero false positives).

The secrets below are synthetic (documentation example keys, test card numbers, reserved
address ranges), shaped like the real thing.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.producers.redact import REDACTED, Redactor, luhn_ok

# (secret substring, the text it appears in)
SECRETS: list[tuple[str, str]] = [
    # e-mail addresses
    ("jane.doe@example.com", "user jane.doe@example.com failed to load checkpoint"),
    ("ml-ops+alerts@corp.example.org", "notify ml-ops+alerts@corp.example.org on divergence"),
    ("a_b@sub.domain.co.uk", "owner=a_b@sub.domain.co.uk"),
    # phone numbers
    ("+1-202-555-0143", "on-call phone +1-202-555-0143"),
    ("+44 20 7946 0958", "call +44 20 7946 0958 if the run stalls"),
    ("(555) 123-4567", "contact: (555) 123-4567"),
    ("555-867-5309", "customer phone 555-867-5309 in feature row"),
    ("+49 30 901820", "Berlin office +49 30 901820"),
    ("+33 1 42 68 53 00", "Paris +33 1 42 68 53 00"),
    # card numbers (test numbers; all pass Luhn)
    ("4111 1111 1111 1111", "payment with 4111 1111 1111 1111 declined"),
    ("5500-0000-0000-0004", "card 5500-0000-0000-0004 exp 12/29"),
    ("378282246310005", "amex 378282246310005"),
    ("6011111111111117", "discover:6011111111111117"),
    ("4012888888881881", "raw feature value 4012888888881881"),
    # IP addresses
    ("10.12.0.7", "connect to 10.12.0.7 refused"),
    ("192.168.1.254", "client ip=192.168.1.254 port 443"),
    ("203.0.113.42", "request from 203.0.113.42"),
    ("2001:db8:85a3::8a2e:370:7334", "peer 2001:db8:85a3::8a2e:370:7334 reset"),
    ("fe80::1ff:fe23:4567:890a", "link-local fe80::1ff:fe23:4567:890a"),
    ("::1", "bound to ::1 only"),
    # bearer tokens and authorization headers
    ("Bearer abcdef0123456789ABCDEF.ghij", "Authorization: Bearer abcdef0123456789ABCDEF.ghij"),
    ("dXNlcjpwYXNzd29yZA==", '{"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}'),
    ("ya29.a0AfH6SMBx3JkLm", "sent header bearer ya29.a0AfH6SMBx3JkLm to the API"),
    # provider API keys
    ("sk-proj-4f9Xk2LmN8pQ7rS1tU3vW5yZ0aB6cD", "OPENAI_KEY is sk-proj-4f9Xk2LmN8pQ7rS1tU3vW5yZ0aB6cD"),
    ("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx", "anthropic sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx leaked"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (
        "ghp_1A2b3C4d5E6f7G8h9I0jK1l2M3n4O5p6Q7r8",
        "git clone https://ghp_1A2b3C4d5E6f7G8h9I0jK1l2M3n4O5p6Q7r8@github.com/x/y",
    ),
    (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    ),
    ("xoxb-1234567890-0987654321-AbCdEfGhIjKl", "slack webhook xoxb-1234567890-0987654321-AbCdEfGhIjKl"),
    ("xoxp-11111-22222-33333-abcdef", "slack user xoxp-11111-22222-33333-abcdef"),
    ("AIzaSyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1v", "maps key AIzaSyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1v"),
    ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "HF hub hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
    # AWS keys
    ("AKIAIOSFODNN7EXAMPLE", "aws_access_key_id AKIAIOSFODNN7EXAMPLE"),
    ("ASIAY34FZKBOKMUTVV7A", "temporary creds ASIAY34FZKBOKMUTVV7A"),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in env"),
    ("je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY", "aws_secret_access_key=je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
    # JWTs
    (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "cookie jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U expired",
    ),
    # private keys
    (
        "MIIEowIBAAKCAQEA7bq",
        "loaded -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\nabc+/=\n-----END RSA PRIVATE KEY----- ok",
    ),
    (
        "b3BlbnNzaC1rZXktdjEAAAAA",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    ),
    ("MC4CAQAwBQYDK2VwBCIEI", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----"),
    # key=value assignments of secret-named keys
    ("hunter2hunter2", "db connect password=hunter2hunter2 host=db"),
    ("s3cr3t-P@ss", "DB_PASSWORD: s3cr3t-P@ss"),
    ("9f8e7d6c5b4a", "api_key=9f8e7d6c5b4a"),
    ("Zm9vYmFyYmF6", "X-Api-Key: Zm9vYmFyYmF6"),
    ("c0ffee-t0ken-42", "auth_token='c0ffee-t0ken-42'"),
    ("tok_live_abc123", '{"client_secret": "tok_live_abc123"}'),
    ("qwerty123456", "pwd=qwerty123456"),
    ("8675309123", "password: 8675309123"),
]

BENIGN: list[str] = [
    "step 12000 loss=0.3124 acc=0.9812 lr=3e-4 grad_norm=4.2",
    "epoch 3/10 train_loss 0.2931 val_loss 0.3350 val_acc 0.9021",
    "loss is nan at step 17; loss=inf; grad_norm=1e+10",
    "torch==2.1.0+cu121 numpy 1.26.4 transformers==4.35.2 python 3.11.7",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b (HEAD -> main)",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "checkpoint ckpt-000120.pt saved in 12.5 s (1.2 GB)",
    "batch 17 of 3125, 256 samples, 1234567 tokens seen",
    "num_tokens=2048 max_new_tokens: 512 token_count=5000 tokenizer=gpt2",
    "request 1234567812345678 served in 12.3 ms",  # 16 digits, fails Luhn: an id, not a card
    "order id 4111111111111112 shipped",  # card-like prefix, fails Luhn
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "uuid 123e4567-e89b-12d3-a456-426614174000 done",
    "date 2024-01-15 time 12:30:45.123 utc",
    "std::vector<float> and torch::nn::Linear in the C++ frontend",
    "shape (32, 3, 224, 224) dtype float32 device cuda:0",
    "mean 0.4850 std 0.2290 quantiles p50=0.51 p99=0.97",
    "lr schedule 0.1 -> 0.01 at epochs 30, 60, 90",
    "port 9092 broker 1 partition 3 offset 12345678",
    "MAC 00:1a:2b:3c:4d:5e on eth0",
    "layer.3.attention.self.query.weight shape [768, 768]",
    "throughput 1,234,567 samples/s on 8 GPUs",
    "accuracy 98.7% on 10000 test images (0.9870)",
    "model resnet50-v1.5 version 2.0.1 fine-tuned",
    "feature f_12 has 3.2% missing values, PSI=0.13",
    "Basic statistics: mean, variance and quantiles per feature",
    "tokens_per_second=4321.5 and auth_enabled: true",
    "AUC 0.912, F1 0.884, precision 0.90, recall 0.87",
    "gpu memory 23456 MiB / 81920 MiB, util 97 %",
    "wandb run abc123xy synced; mlflow run_id 5f1d2c3b4a",
    "seed 1234567890 for reproducibility",
    "phone_feature_count=3 email_domain_count=12",
    "cosine similarity 0.9999 between emb[0] and emb[1]",
    "BASE64_SAMPLE_ID_0000000000000000000000",
]


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(("secret", "text"), SECRETS, ids=[s[:24] for s, _ in SECRETS])
def test_every_secret_in_the_corpus_is_redacted(redactor: Redactor, secret: str, text: str) -> None:
    out = redactor.scrub(text)
    assert secret not in out, out
    assert "[REDACTED" in out
    assert redactor.total >= 1


@pytest.mark.parametrize("text", BENIGN)
def test_benign_ml_text_is_left_alone(redactor: Redactor, text: str) -> None:
    assert redactor.scrub(text) == text
    assert redactor.total == 0


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")
    assert not luhn_ok("1234567812345678")


def test_counts_per_kind(redactor: Redactor) -> None:
    redactor.scrub("mail a@example.com and b@example.com, card 4111111111111111")
    assert redactor.counts["email"] == 2
    assert redactor.counts["card"] == 1


def test_deny_listed_fields_are_blanked_whatever_their_value(redactor: Redactor) -> None:
    out = redactor.mapping(
        {
            "password": "correct horse battery staple",
            "db_password": "x",
            "Authorization": "anything at all",
            "apiKey": "plain",
            "api_key": "plain",
            "X-Api-Key": "plain",
            "session_id": "abc",
            "num_tokens": "2048",
            "tokenizer": "gpt2",
            "author": "jane",
            "secrets": {"a": "1", "b": "2"},
        }
    )
    for key in ("password", "db_password", "Authorization", "apiKey", "api_key", "X-Api-Key", "session_id"):
        assert out[key] == REDACTED, key
    assert out["num_tokens"] == "2048"
    assert out["tokenizer"] == "gpt2"
    assert out["author"] == "jane"
    assert out["secrets"] == {"a": REDACTED, "b": REDACTED}


def test_allow_list_skips_a_field_and_deny_extends_the_list() -> None:
    redactor = Redactor(allow=["support_email"], deny=["customer_ref", "pin"])
    out = redactor.mapping({"support_email": "help@example.com", "contact": "help@example.com", "customer_ref": "C-1"})
    assert out["support_email"] == "help@example.com"
    assert out["contact"] == "[REDACTED:email]"
    assert out["customer_ref"] == REDACTED
    assert redactor.mapping({"PIN": "1234"})["PIN"] == REDACTED


def test_custom_patterns_replace_the_defaults() -> None:
    redactor = Redactor(patterns=[("employee", r"\bEMP-\d{6}\b")])
    assert redactor.scrub("EMP-123456 at a@example.com") == "[REDACTED:employee] at a@example.com"


def test_processor_redacts_event_payloads_labels_and_metric_names(redactor: Redactor) -> None:
    event = {
        "event_id": "e1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "labels": {"team": "ml", "api_token": "abc"},
        "payload": (
            "aitrace.LogRecord",
            {
                "level": "error",
                "message": "login failed for jane@example.com from 10.0.0.1",
                "attributes": {"password": "p4ss", "step": "7"},
                "stack_trace": "File x.py, AKIAIOSFODNN7EXAMPLE",
            },
        ),
    }
    out = redactor(event)
    name, payload = out["payload"]
    assert name == "aitrace.LogRecord"
    assert payload["message"] == "login failed for [REDACTED:email] from [REDACTED:ipv4]"
    assert payload["attributes"] == {"password": REDACTED, "step": "7"}
    assert "AKIA" not in payload["stack_trace"]
    assert out["labels"] == {"team": "ml", "api_token": REDACTED}
    assert out["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    block = {"block_id": "b", "series": [{"name": "loss jane@example.com", "values": [1.0]}]}
    # a metric name is an identifier: a stable token, so the series still groups
    name = redactor(block)["series"][0]["name"]
    assert re.fullmatch(r"loss \[REDACTED:email#[a-p]{8}\]", name), name
    assert redactor(block)["series"][0]["name"] == name


def test_secret_named_fields_keep_status_words_and_non_secret_tails(redactor: Redactor) -> None:
    out = redactor.mapping(
        {"auth": "healthy", "token": "none", "token_count": "5000", "auth_enabled": "yes", "password_hash": "x1"}
    )
    assert out == {"auth": "healthy", "token": "none", "token_count": "5000", "auth_enabled": "yes",
                   "password_hash": REDACTED}  # fmt: skip


def test_the_whole_event_is_walked_envelope_ids_and_keys_included(redactor: Redactor) -> None:
    event = {
        "event_id": "7d33302d1864-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "jane@example.com",  # not generated: scanned
        "service": "svc-ops@example.com",
        "run_id": "run-10.1.2.3",
        "labels": {"owner@example.com": "x", "team": "ml"},
        "payload": (
            "aitrace.InferenceRecord",
            {"request_id": "req 4111 1111 1111 1111", "attributes": {"trace_id": "bob@example.com"}},
        ),
    }
    out = redactor(event)
    assert out["event_id"] == "7d33302d1864-1" and out["trace_id"] == event["trace_id"]
    assert "@" not in repr(out) and "4111" not in repr(out) and "10.1.2.3" not in repr(out)
    assert re.fullmatch(r"svc-ops\[REDACTED:email#[a-p]{8}\]|\[REDACTED:email#[a-p]{8}\]", out["service"])
    assert out["payload"][1]["request_id"].startswith("req [REDACTED:card#")
    assert redactor.counts["email"] == 4 and redactor.counts["card"] == 1 and redactor.counts["ipv4"] == 1


def test_version_fields_keep_dotted_versions_but_not_addresses(redactor: Redactor) -> None:
    payload = {"library_versions": {"cudnn": "8.9.2.26"}, "code_version": "deployed from 10.0.0.7"}
    out = redactor.mapping(payload)
    assert out["library_versions"] == {"cudnn": "8.9.2.26"}
    assert out["code_version"] == "deployed from [REDACTED:ipv4#" + out["code_version"].split("#")[1]
    # the policy: a dotted quad is a version only right after a version word or a library name
    assert redactor.scrub("cudnn 8.9.2.26 and 8.9.2.26") == "cudnn 8.9.2.26 and [REDACTED:ipv4]"


# -- the cached fast paths (texts found clean, key plans) answer exactly as a cold pass does

HOSTILE_EVENT: dict[str, object] = {
    "event_id": "7d33302d1864-1f",
    "trace_id": "jane.doe@example.com",  # an envelope id that is not generated: scanned
    "service": "checkout",
    "labels": {"team": "ml", "owner": "ml-ops+alerts@corp.example.org", "db_password": "checkout"},
    "payload": (
        "aitrace.LogRecord",
        {
            "message": "card 4111 1111 1111 1111 from 203.0.113.42",
            "attributes": {
                "checkout": "checkout",  # the same text as a clean value and as a key
                "apiKey": "checkout",  # a clean text under a secret's name: blanked all the same
                "naïve_é": "user ünïcødé.ñame@example.com",
                "nested": {"deeper": {"Authorization": "Bearer abcdefghijklmnop"}},
                "jane.doe@example.com": "1",  # a secret in a key
                "cudnn_version": "8.9.2.26",
                "note": "8.9.2.26",  # the same text outside a version field is an address
            },
        },
    ),
}


def test_warm_caches_redact_exactly_as_a_cold_redactor() -> None:
    warm = Redactor(hash_key="k")
    first = warm(HOSTILE_EVENT)
    counts = dict(warm.counts)
    again = [warm(HOSTILE_EVENT) for _ in range(3)]  # every text and key now cached
    assert all(out == first for out in again)
    assert first == Redactor(hash_key="k")(HOSTILE_EVENT)
    assert dict(warm.counts) == {kind: 4 * n for kind, n in counts.items()}  # counted every time
    text = repr(first)
    for secret in ("jane.doe@example.com", "ml-ops+alerts", "4111 1111", "203.0.113.42", "ünïcødé", "abcdefghijklmnop"):
        assert secret not in text
    attributes = first["payload"][1]["attributes"]
    assert attributes["checkout"] == "checkout" and attributes["apiKey"] == REDACTED
    assert first["labels"]["db_password"] == REDACTED
    assert attributes["cudnn_version"] == "8.9.2.26" and attributes["note"] == "[REDACTED:ipv4]"


@pytest.mark.parametrize("order", [("version", "plain"), ("plain", "version")])
def test_a_text_clean_in_a_version_field_is_not_clean_elsewhere(order: tuple[str, str]) -> None:
    redactor = Redactor()
    expected = {"version": "10.1.2.3", "plain": "[REDACTED:ipv4]"}
    for mode in order * 2:
        assert redactor.scrub("10.1.2.3", version=mode == "version") == expected[mode]


def test_a_clean_verdict_is_per_text_not_per_shape() -> None:
    redactor = Redactor()
    assert redactor.scrub("request 12345") == "request 12345"
    assert redactor.scrub("request 12345", ident=True) == "request 12345"
    assert redactor.scrub("request 4111111111111111") == "request 4111111111111111"  # an id word before a run
    assert redactor.scrub("card 4111111111111111") == "card [REDACTED:card]"
    assert redactor.mapping({"x": "card 4111111111111111"})["x"] == "card [REDACTED:card]"


def test_the_kv_trigger_is_a_substring_test_of_the_lower_cased_text() -> None:
    from aitrace.producers.secret_patterns import _KV_WORDS, triggers

    texts = [t for _, t in SECRETS] + BENIGN + ["to\u212aen=abc", "PASS\u0130WORD", "ſecret", "Ünïcødé AUTH", ""]
    for text in texts:
        lower = text.lower()
        assert ("kv" in triggers(text)) == any(w in lower for w in _KV_WORDS), text


def test_the_digits_and_long_triggers_fire_exactly_where_their_regexes_match() -> None:
    """Long ASCII texts are ruled out by C loops over their bytes first (joined columns, long log lines): the
    result is the regex's, for digits with gaps, runs of 19 and 20 id characters, Unicode digits, any length."""
    import random
    import string

    from aitrace.producers.secret_patterns import _DIGITS, _LONG, triggers

    rng = random.Random(7)
    alphabet = string.ascii_letters + "0123456789" * 4 + " .()/+-_=\n\t@:#" * 2 + "\u0663\u096a\u00e9"
    texts = ["\n".join(f"req-{i}" for i in range(300)), "x" * 60 + "1 2.3(4)5/6+7-8", "a" * 19 + "!" + "a" * 40]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(120))) for _ in range(20_000)]
    texts += ["-" * 50 + "12 34 5" + "\u0663" * k for k in (0, 1)] + ["y" * 50 + "A" * 20, "y" * 50 + "\u0663" * 7]
    for text in texts:
        fired = triggers(text)
        assert ("digits" in fired) == bool(_DIGITS.search(text)), text
        assert ("long" in fired) == bool(_LONG.search(text)), text


def test_hex_identifiers_are_never_taken_for_card_numbers() -> None:
    """About 1 random UUID in 1,300 (and trace ids, SHAs alike) holds a run of digits that passes
    the card prefix and Luhn, e.g. ``...-b246-548991270564``: request ids were cut in the index."""
    import random
    import uuid

    rng = random.Random(1)
    r = Redactor()
    uuids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20_000)]
    hexes = [f"{rng.getrandbits(128):032x}" for _ in range(10_000)] + [
        f"{rng.getrandbits(160):040x}" for _ in range(10_000)
    ]
    assert [t for t in uuids + hexes if r.scrub(t) != t] == []
    assert r.scrub("313874cd-dfbc-423d-b246-548991270564") == "313874cd-dfbc-423d-b246-548991270564"


def test_a_card_beside_a_uuid_is_still_redacted_and_the_uuid_kept() -> None:
    r = Redactor()
    text = "order 313874cd-dfbc-423d-b246-548991270564 paid by card 4111 1111 1111 1111"
    assert r.scrub(text) == "order 313874cd-dfbc-423d-b246-548991270564 paid by card [REDACTED:card]"
    for card in ("4111-1111-1111-1111", "4111111111111111", "pan=5500005555555559"):
        assert "REDACTED" in r.scrub(card), card


def _uuids(n: int, seed: int) -> list[str]:
    import random
    import uuid

    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def test_lower_case_hex_ids_fire_no_trigger_and_the_full_scan_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """Request ids are mostly UUIDs or hex: their column skips the scrub (20-50 µs an id, most of it in the
    phone library) because no pattern can match one, which the full scan of each confirms."""
    import random

    from aitrace.producers import secret_patterns

    rng = random.Random(5)
    ids = _uuids(3_000, seed=2) + [f"{rng.getrandbits(128):032x}" for _ in range(2_000)]
    ids += [f"{rng.getrandbits(160):040x}" for _ in range(1_000)] + [f"{u}-{i}" for i, u in enumerate(_uuids(500, 3))]
    ids = [t for t in ids if not t.replace("-", "").isdigit()]
    assert {t for t in ids if secret_patterns.triggers(t)} == set()
    assert secret_patterns.triggers("\n".join(ids)) == frozenset()  # a block's column, joined
    assert secret_patterns.triggers("\n".join([*ids[:3], "card 4111 1111 1111 1111"])) >= {"digits"}
    others = (
        ids[0][:4].upper() + ids[0][4:],
        "41111111-1111-1111-1111-111111111111",
        f"x{ids[0]}",
        f"{ids[0]} 4111",
        "ab1234567",
    )
    for other in others:  # mixed case, no hex letter, other characters, or under 16 hex digits: scanned as before
        assert secret_patterns.triggers(other), other
    monkeypatch.setattr(secret_patterns, "_PLAIN_HEX_IDS", re.compile(r"(?!)"))  # the full scan
    r = Redactor()
    assert [t for t in ids if r.scrub(t) != t] == []


def test_prefixed_and_upper_case_request_ids_fire_no_trigger_and_the_full_scan_agrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``req_<uuid>`` and upper-case UUIDs cost 23-38 µs an id in the full scan; no pattern can match them."""
    import random

    from aitrace.producers import secret_patterns

    rng = random.Random(7)
    words = ["req", "trace", "run", "job", "request", "span", "abc", "x", "idempotency"]
    ids = [f"{rng.choice(words)}{rng.choice('_-')}{u}" for u in _uuids(2_000, seed=4)]
    ids += [f"{rng.choice(words)}_{rng.getrandbits(128):032x}" for _ in range(1_000)]
    ids += [u.upper() for u in _uuids(3_000, seed=5)]
    ids = [t for t in ids if not t.rsplit("_", 1)[-1].replace("-", "").isdigit()]
    assert {t for t in ids if secret_patterns.triggers(t)} == set()
    assert secret_patterns.triggers("\n".join(ids)) == frozenset()  # a block's column, joined
    hexes = [f"{rng.getrandbits(144):036x}" for _ in range(3)]
    secrets = [f"ghp_{hexes[0]}", f"sk-{_uuids(1, 6)[0]}", f"hf_{hexes[1]}", f"xoxb-{_uuids(1, 7)[0]}"]
    # a word that is a secret's literal or a key word, an upper-case id not in the 8-4-4-4-12 form (20 characters:
    # an AWS access key's length), a mixed-case or digit-only UUID: scanned as before
    others = ["token_" + hexes[2], "ACCA" + hexes[2][:16].upper(), _uuids(1, 8)[0][:9].upper() + _uuids(1, 8)[0][9:]]
    others.append("41111111-1111-1111-1111-111111111111")
    for other in secrets + others:
        assert secret_patterns.triggers(other), other
    r = Redactor()
    assert [t for t in secrets if "[REDACTED:" not in r.scrub(t)] == []
    assert r.scrub(others[1]) == "[REDACTED:aws_access_key]"
    monkeypatch.setattr(secret_patterns, "_PLAIN_HEX_IDS", re.compile(r"(?!)"))  # the full scan
    monkeypatch.setattr(secret_patterns, "_ID_LINES", re.compile(r"(?!)"))
    r = Redactor()
    assert [t for t in ids if r.scrub(t) != t] == []


def test_digits_inside_a_hex_identifier_are_not_a_phone_number() -> None:
    r = Redactor()
    assert r.scrub("call 4155550143-deadbeefcafe0123") == "call 4155550143-deadbeefcafe0123"
    assert r.scrub("call 415-555-0143 now") == "call [REDACTED:phone] now"


GLUED_KEYS = [
    "PGPASSWORD={}",  # libpq's environment variable
    "pgpassword={}",
    "DBPASSWORD: {}",
    "rootpassword={}",
    "username=bob&password1={}&password2={}",  # Django's UserCreationForm
    "password_confirm={}",
    "passwordConfirmation: {}",
    "APPSECRET={}",
    "apitoken={}",
    "HFTOKEN={}",
    "csrftoken={}",
]


@pytest.mark.parametrize("template", GLUED_KEYS)
def test_secret_words_glued_to_a_prefix_or_a_digit_still_name_a_secret(redactor: Redactor, template: str) -> None:
    text = template.format("Hunter2Secret", "Hunter2Secret")
    out = redactor.scrub(text)
    assert "Hunter2Secret" not in out, out
    key = re.split(r"[=:&]", template.split("&")[-1])[0]
    assert redactor.mapping({key: "Hunter2Secret"}) == {key: REDACTED}


def test_glued_words_that_are_not_secrets_stay(redactor: Redactor) -> None:
    for text in ("compass=north", "bypass=cache", "author=jane", "tokenizer=bert-base", "maxtoken=512k",
                 "passthrough=enabled-mode", "secretary=jane", "subtoken=bpe-merges"):  # fmt: skip
        assert redactor.scrub(text) == text
        key, value = text.split("=")
        assert redactor.mapping({key: value}) == {key: value}


@pytest.mark.parametrize(
    "text",
    [
        "Cookie: theme=dark; JSESSIONID=Hunter2Secret",
        "set-cookie: sid=Hunter2Secret; Path=/; HttpOnly",
        "GET /v1/predict\r\nCookie: _ga=GA1.2.3; sessionid=Hunter2Secret\r\nHost: api",
        "saved /tmp/ckpt_Cookie: theme=dark; JSESSIONID=Hunter2Secret",  # after "_", where \b sees no boundary
        '{"cookie": "theme=dark; sid=Hunter2Secret"}',  # a quoted value keeps its ";" and spaces
        '{"password": "correct horse Hunter2Secret"}',
        "--password 'correct horse Hunter2Secret' --epochs 3",
    ],
)
def test_a_cookie_header_and_a_quoted_value_are_redacted_whole(redactor: Redactor, text: str) -> None:
    out = redactor.scrub(text)
    assert "Hunter2Secret" not in out, out


def test_a_quoted_value_ends_at_its_quote(redactor: Redactor) -> None:
    assert redactor.scrub("{'password': 'Hunter2Secret', 'user': 'bob'}").endswith(", 'user': 'bob'}")
    assert redactor.scrub("GET /v1/predict\r\nCookie: sid=Hunter2Secret\r\nHost: api").endswith("\r\nHost: api")
    assert redactor.scrub('{"token": "none", "cookie": ""}') == '{"token": "none", "cookie": ""}'


@pytest.mark.parametrize("length", [40, 255, 257, 400, 1200])
def test_a_random_token_is_redacted_whatever_its_length(redactor: Redactor, length: int) -> None:
    """An AWS session token or a SAML response is longer than the 256 characters a run was once bounded by."""
    import base64
    import random

    token = base64.b64encode(random.Random(length).randbytes(length)).decode()[:length]
    out = redactor.scrub(f"retrying with {token} as credentials")
    assert token not in out and out.startswith("retrying with [REDACTED:") and out.endswith(" as credentials"), out


@pytest.mark.parametrize(
    "text",
    [
        "ＰＡＳＳＷＯＲＤ＝Hunter2Secret",  # full-width
        "pass\u200bword=Hunter2Secret",  # zero-width space inside the key word
        "password\u200b=Hunter2Secret",
        "password=Hun\u200bter2Secret",  # and inside the secret: the reader still reads it whole
        "𝐩𝐚𝐬𝐬𝐰𝐨𝐫𝐝=Hunter2Secret",  # mathematical bold
        "".join(chr(0xE0000 + ord(c)) for c in "password=Hunter2Secret"),  # tag characters, invisible
        "GET /cb?next=%2Flogin%3Fpassword%3DHunter2Secret",
        "redirect=postgres%3A%2F%2Fadmin%3AHunter2Secret%40db%2Fprod",
        "next=%252Flogin%253Fpassword%253DHunter2Secret",  # encoded twice
    ],
)
def test_a_secret_disguised_by_unicode_or_percent_encoding_is_redacted(redactor: Redactor, text: str) -> None:
    out = redactor.scrub(text)
    plain = out.translate({c: c - 0xE0000 for c in range(0xE0020, 0xE007F)}).replace("\u200b", "")
    assert "Hunter2Secret" not in plain and "[REDACTED:" in out, out


def test_a_disguised_secret_named_field_is_blanked(redactor: Redactor) -> None:
    assert redactor.mapping({"ＰＡＳＳＷＯＲＤ": "Hunter2Secret", "pass\u200bword": "x1"}) == {
        "ＰＡＳＳＷＯＲＤ": REDACTED,
        "pass\u200bword": REDACTED,
    }


def test_a_key_spelt_with_cyrillic_or_greek_look_alikes_is_a_secret_name(redactor: Redactor) -> None:
    keys = (f"p{CYRILLIC_A}ssw{CYRILLIC_O}rd", "\u03a4\u039f\u039a\u0395\u039d")  # Greek capitals: "TOKEN"
    assert redactor.mapping(dict.fromkeys(keys, "Hunter2Secret")) == dict.fromkeys(keys, REDACTED)
    assert redactor.mapping({"\u0440\u0435\u0437\u0443\u043b\u044c\u0442\u0430\u0442": "ok"}) == {
        "\u0440\u0435\u0437\u0443\u043b\u044c\u0442\u0430\u0442": "ok"
    }


def test_a_field_named_password_in_another_language_is_blanked(redactor: Redactor) -> None:
    # The split into words was ASCII-only: "contraseña" read as "contrase" and "a", "пароль" as nothing.
    secret = ("contraseña", "пароль", "密码", "パスワード", "userPasswort", "mot_de_passe", "motDePasse", "hasło")
    kept = {"contrast": "high", "parola": "ciao", "результат": "ok", "senha_count": "3", "de_passe_count": "2"}
    assert redactor.mapping({**dict.fromkeys(secret, "Hunter2x"), **kept}) == {
        **dict.fromkeys(secret, REDACTED),
        **kept,
    }


def test_a_password_in_another_language_assigned_in_text_is_redacted(redactor: Redactor) -> None:
    # Only field names were read in other languages: "contraseña=Hunter2xyz" in a log line went to the index whole.
    assigned = ("contraseña=Hunter2xyz", "mot de passe: soleil42", "пароль: qwerty123", "密码：abc12345",
                "senha: minhasenha1", "wachtwoord = Tulip2024", "hasło: Żółw2024", "lösenord=ab",
                "パスワード: himitsu99", "비밀번호 = qwer1234")  # fmt: skip
    for text in assigned:
        out = redactor.scrub(f"login failed {text} retrying")
        assert out == "login failed [REDACTED:secret_assignment] retrying", out
    assert redactor.scrub('{"senha": "s3cr3t!"}') == '{"[REDACTED:secret_assignment]}'  # as "password" in JSON
    # a word glued before it in a language without spaces ("user password: ..."), but not in Latin script
    assert redactor.scrub("用户密码：abc12345") == "用户[REDACTED:secret_assignment]"
    for text in ("mot de passe: trop court", "the contraseña policy needs 8 characters", "senhas: 2", "asenha: x"):
        assert redactor.scrub(text) == text


def test_a_pin_named_field_is_blanked(redactor: Redactor) -> None:
    fields = {"pin": "4921", "card_pin": "0042", "PIN_CODE": "004921", "pin_memory": "true", "spin": "1/2"}
    assert redactor.mapping(fields) == {
        "pin": REDACTED,
        "card_pin": REDACTED,
        "PIN_CODE": REDACTED,
        "pin_memory": "true",
        "spin": "1/2",
    }


def test_text_whose_plain_variant_holds_nothing_keeps_its_own_form(redactor: Redactor) -> None:
    for text in ("训练完成，损失下降到０．３１", "loss fell 50% in epoch 3", "/files/report%202024%20final.pdf",
                 "👩‍💻 shipped model v3 ✅", "ｍｏｄｅｌ　ｌｏａｄｅｄ", "Ünïcödé feature name"):  # fmt: skip
        assert redactor.scrub(text) == text
    assert redactor.total == 0


def test_a_secret_whose_own_form_holds_an_escape_is_redacted_whole(redactor: Redactor) -> None:
    """The text's own form first: its decoded variant would have cut the value at the decoded space."""
    assert redactor.scrub("password=abc%20defghi") == "[REDACTED:secret_assignment]"


def test_a_password_of_digits_is_redacted_other_short_numbers_stay(redactor: Redactor) -> None:
    """A short number after a secret word is a setting (``token: 512``), after a password word a PIN-like password."""
    for text in ("password=123456", '{"db": {"password": 4242}}', "PGPASSWORD=2024", "pwd: 0000"):
        assert "[REDACTED:secret_assignment]" in redactor.scrub(text), text
    for text in ("token: 512", "auth: 30s", "token_ttl=3600", "pass: 2", "password_ttl=3600"):
        assert redactor.scrub(text) == text


@pytest.mark.parametrize(
    "key",
    ["signing_key", "ENCRYPTION_KEY", "hmacKey", "master_key", "FERNET_KEY", "privkey", "passcode",
     "X-Amz-Signature", "X-Goog-Signature"],
)  # fmt: skip
def test_key_material_names_are_secret_names(redactor: Redactor, key: str) -> None:
    value = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # hex: no pattern of its own
    assert value not in redactor.scrub(f"https://bucket.s3.amazonaws.com/x?{key}={value}&y=1")
    assert value not in redactor.scrub(f"{key}: {value}")
    assert redactor.mapping({key: value}) == {key: REDACTED}


def test_key_words_of_other_meanings_stay(redactor: Redactor) -> None:
    texts = ("primary_key=user_id", "sort_key: created_at", "model signature: (float32[1, 3])", "partition_key=day")
    for text in texts:
        assert redactor.scrub(text) == text


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE USER bob WITH PASSWORD 'Hunter2Secret'",  # PostgreSQL
        "ALTER ROLE app WITH LOGIN PASSWORD 'Hunter2Secret' VALID UNTIL 'infinity'",
        "CREATE USER 'bob'@'%' IDENTIFIED BY 'Hunter2Secret'",  # MySQL
        "ALTER USER bob IDENTIFIED WITH mysql_native_password BY 'Hunter2Secret'",
        'CREATE USER app IDENTIFIED BY "Hunter2Secret"',  # Oracle
    ],
)
def test_a_password_in_a_sql_statement_is_redacted(redactor: Redactor, statement: str) -> None:
    """A span's ``db.statement`` or a migration's log line: the password follows its keyword without ``=``."""
    out = redactor.scrub(statement)
    assert "Hunter2Secret" not in out and "[REDACTED:secret_assignment]" in out, out
    assert redactor.scrub("user identified by email; the password policy was updated") == (
        "user identified by email; the password policy was updated"
    )


@pytest.mark.parametrize("password", ["Xq8v/R2m+K9p", "Hunter2#Secret", "Hunter2?Secret"])
def test_a_url_password_holding_a_slash_or_a_hash_is_redacted(redactor: Redactor, password: str) -> None:
    out = redactor.scrub(f"connecting to postgres://admin:{password}@db.internal:5432/prod")
    assert out == "connecting to postgres://[REDACTED:url_credentials]@db.internal:5432/prod"
    token = redactor.scrub(f"postgres://admin:{password}@db.internal/prod", ident=True)
    assert password not in token and redactor.scrub(token, ident=True) == token  # its own token is not found again


def test_a_url_password_holding_an_at_sign_and_a_slash_goes_whole(indexed: dict[str, tuple[str, str]]) -> None:
    message, _ = indexed["postgres://user:p@ss/w0rd@db.example:5432/app"]
    assert message == "postgres://[REDACTED:url_credentials]@db.example:5432/app"  # the host stays


def test_a_dotted_host_after_the_password_is_the_host(redactor: Redactor) -> None:
    """An "@" in the path of a URL with credentials: a dotted host or a port right after the first "@" is the host."""
    for url, kept in [("https://admin:Hunter2@api.example.com/users/bob@example.com", "@api.example.com/users/"),
                      ("https://u:Hunter2@host:8080/users/bob@x.com", "@host:8080/users/")]:  # fmt: skip
        out = redactor.scrub(url)
        assert "Hunter2" not in out and kept in out and "bob@" not in out, out


def test_a_port_and_a_path_before_an_at_sign_are_not_a_password(redactor: Redactor) -> None:
    assert redactor.scrub("GET https://host:8080/users/jane@example.com") == (
        "GET https://host:8080/users/[REDACTED:email]"
    )
    assert redactor.scrub("see https://x.io/a?b=c#d@e") == "see https://x.io/a?b=c#d@e"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"api"), (b"authorization", b"Basic dXNlcjpwYXNz")],  # an ASGI scope's headers
        [("Content-Type", "application/json"), ("X-Api-Key", "Hunter2Secret")],
        [["cookie", "sid=Hunter2Secret; theme=dark"]],
    ],
)
def test_a_secret_header_as_a_name_value_pair_is_redacted(redactor: Redactor, headers: list) -> None:
    """A header list logged as an attribute is text by then (its repr or JSON): the pair's value is redacted."""
    from aitrace.producers.events import text_value

    value = dict(headers)[headers[-1][0]]
    value = value.decode() if isinstance(value, bytes) else value
    out = redactor.scrub(text_value(headers, Counter()))
    assert value not in out and "[REDACTED:secret_assignment]" in out, out


def test_a_pair_of_field_names_or_a_status_word_is_no_secret(redactor: Redactor) -> None:
    for text in ("fields=('password', 'email')", "[('authorization', 'none')]", '["token", "attention_mask"]'):
        assert redactor.scrub(text) == text


@pytest.mark.parametrize(
    "command",
    ["curl -u admin:Hunter2Secret https://api", "curl --user admin:Hunter2Secret https://api",
     "curl -s --user=admin:Hunter2Secret https://api", "wget --user bob:Hunter2Secret http://files"],
)  # fmt: skip
def test_a_user_password_pair_of_an_http_client_is_redacted(redactor: Redactor, command: str) -> None:
    out = redactor.scrub(command)
    assert "Hunter2Secret" not in out and "[REDACTED:user_password]" in out, out


def test_dash_u_of_other_commands_stays(redactor: Redactor) -> None:
    for text in ("docker run -u 1000:1000 img", "docker run -u root:root img", "python -u train.py --lr 3e-4"):
        assert redactor.scrub(text) == text


def test_a_double_under_a_secret_name_is_nan_other_numbers_stay(redactor: Redactor) -> None:
    """A map of doubles (an inference's features) cannot hold "[REDACTED]": the number goes, NaN stands for it."""
    out = redactor.mapping({"ssn": 123456789.0, "password": 4242.0, "amount": 12.5, "token_count": 3.0})
    assert math.isnan(out["ssn"]) and math.isnan(out["password"])
    assert (out["amount"], out["token_count"]) == (12.5, 3.0)
    assert redactor.mapping({"token": 5, "auth": True}) == {"token": 5, "auth": True}  # counts, flags: not secrets


# ---------------------------------------------------------------- through a client and the worker

# (text, what of it must not reach the index; None: the text must arrive as it is). Each is sent as a log
# message and as a log attribute of a real client and read back from the documents the worker would index.
CYRILLIC_A, CYRILLIC_O = "\u0430", "\u043e"
THROUGH: list[tuple[str, str | None]] = [
    # the word "cookie" in prose is no Cookie header (it was redacted to the end of the line)
    ("the cookie: banner was shown", None),
    ("cookie: consent dialog closed", None),
    ("Cookie: theme=dark; JSESSIONID=Hunter2Secret", "Hunter2Secret"),
    ("GET /v1 cookie: sid=Hunter2Secret", "Hunter2Secret"),
    # Cyrillic and Greek letters that look like Latin ones in a key word (no pattern matched them)
    (f"p{CYRILLIC_A}ssw{CYRILLIC_O}rd=Hunter2Secret", "Hunter2Secret"),
    (f"t{CYRILLIC_O}ken: Hunter2Secret", "Hunter2Secret"),
    ("\u0391\u03a1\u0399_\u039a\u0395\u03a5=Hunter2Secret", "Hunter2Secret"),  # Greek capitals: "API_KEY"
    ("\u03a4\u039f\u039a\u0395\u039d: Hunter2Secret", "Hunter2Secret"),  # "TOKEN", Greek letters only
    ("Пароль сменён, модель сохранена в ckpt-0042.pt", None),  # Russian and Greek text: no key word
    ("η ακρίβεια είναι 0.93 στο epoch 3", None),
    # prose: "<secret word> [for|of <one or two words>] is|was[:] <value>"; the value goes when it looks like a
    # secret (see secret_patterns.secret_like), the sentence's next word stays
    ("the password for admin is hunter2", "hunter2"),
    ("password is: Xk9#mQ2v", "Xk9#mQ2v"),
    ("my api key is sk-proj-4f9Xk2LmN8pQ7rS1tU3vW5yZ0aB6cD", "4f9Xk2LmN8pQ7rS1tU3vW5yZ0aB6cD"),
    ("my api key is 9f8e7d6c5b4a3f2e", "9f8e7d6c5b4a3f2e"),
    ("pwd was Tr0ub4dor&3", "Tr0ub4dor"),
    ("the password of the day is swordfish", "swordfish"),
    ("the secret key for prod was s3cr3t-v4lue", "s3cr3t-v4lue"),
    ("password is required", None),
    ("password is incorrect", None),
    ("password\tis incorrect", None),
    ("login failed: password is incorrect for user bob", None),
    ("the password for admin is incorrect.", None),
    ("password was changed by admin", None),
    ("password is too short", None),
    ("token count is 512", None),
    ("the key is missing", None),
    ("password reset email sent", None),
    ("the next token is London", None),
    ("pad token is [PAD] and eos token is </s>", None),
    ("the token was generated", None),
    ("the api key is not set", None),
    ("pwd is /home/bob/project", None),  # $PWD, a directory, as in pwd=/home/bob
    # a PIN: 4-12 digits after "pin" (pin=1234 went through: no pattern knew the word)
    ("pin=1234", "1234"),
    ("card pin: 4921 accepted", "4921"),
    ("the pin was 8472", "8472"),
    ("PIN_CODE=004921", "004921"),
    ("pin_memory=True num_workers=8", None),
    ("spin=1/2 particle, pin: true", None),
    ("numa pin was 0-7", None),
    # a bare "key" names a cache, sort or lookup key in logs, no secret: key=value stays (api_key=, secret_key=
    # and the other named keys are secrets; a key's value with a provider's shape or random is found by those)
    ("cache key=user:42 hit", None),
    ("sort key=timestamp", None),
    ("lookup miss for key=user:42:profile", None),
    # a URL password holding "@" and "/": it ends at the last "@" before the host, not at the first
    ("postgres://user:p@ss/w0rd@db.example:5432/app", "@ss/"),  # "ss/" was left
    ("redis://:p@ss/w0rd@cache:6379/0", "@ss/"),
    # card numbers in text: 13-19 digits, spaces or dashes allowed, a card prefix and Luhn
    ("paid with 4111 1111 1111 1111", "1111 1111 1111"),
    ("card 5500-0000-0000-0004 exp 12/29", "0000-0000-0004"),
    ("visa 4222222222222 declined", "4222222222222"),  # 13 digits
    ("amex 3782 822463 10005", "822463"),
    ("raw feature value 4012888888881881", "4012888888881881"),
    ("order id 4111111111111112 shipped", None),  # fails Luhn
    ("request 4111111111111111 served", None),  # a run of digits after an id word is an id
]


def _documents(spool_dir: str, send: Callable[[aitrace.Client], None]) -> list[dict[str, Any]]:
    """What the worker would index of what ``send`` sent through a real client (its default chain) whose broker
    is down: its records read back from the spool and run through the worker's Pipeline."""
    from aitrace.infra.stack import free_port
    from aitrace.processors.options import WorkerOptions
    from aitrace.processors.pipeline import Pipeline
    from aitrace.producers.spool import Spool

    client = aitrace.init(service="through", kafka_bootstrap=f"127.0.0.1:{free_port()}", spool_dir=spool_dir,
                          delivery_timeout_ms=1000)  # fmt: skip
    send(client)
    client.close(timeout=5)
    spool, pipe, docs = Spool(spool_dir, 1 << 30), Pipeline(WorkerOptions(index=True)), []
    while (record := spool.next_record()) is not None:
        spool.ack(record)
        out = pipe.process_record(record.value, key=None, topic="t", partition=0, offset=0, traces={}, now=time.time())
        docs.extend(action["_source"] for action in out.actions)
    return docs


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """(message, attribute) of the document the worker makes of each text of THROUGH, by text."""

    def send(client: aitrace.Client) -> None:
        for i, (text, _) in enumerate(THROUGH):
            client.log("info", text, case=i, note=text)

    docs = {}
    for doc in _documents(str(tmp_path_factory.mktemp("spool")), send):
        attributes = doc["aitrace"]["attributes"]
        docs[THROUGH[int(attributes["case"])][0]] = (doc["message"], attributes["note"])
    assert len(docs) == len(THROUGH)
    return docs


@pytest.mark.parametrize(("text", "secret"), THROUGH, ids=[t[:32] for t, _ in THROUGH])
def test_through_a_client_and_the_worker(indexed: dict[str, tuple[str, str]], text: str, secret: str | None) -> None:
    message, note = indexed[text]
    if secret is None:
        assert (message, note) == (text, text)
    else:
        assert secret not in message and secret not in note and "[REDACTED:" in message, message


def test_a_cookie_header_keeps_its_cookie_names(indexed: dict[str, tuple[str, str]]) -> None:
    message, _ = indexed["Cookie: theme=dark; JSESSIONID=Hunter2Secret"]
    assert message == "Cookie: theme=[REDACTED:secret_assignment]; JSESSIONID=[REDACTED:secret_assignment]"
    redactor = Redactor()
    again = redactor.scrub(message)
    assert (again, redactor.total) == (message, 0)  # its tokens are not found again


def test_prose_loses_its_secret_word_only(indexed: dict[str, tuple[str, str]]) -> None:
    message, _ = indexed["the password for admin is hunter2"]
    assert message == "the password for admin is [REDACTED:secret_assignment]"


def test_numbers_in_number_fields_are_not_card_checked(tmp_path: Path) -> None:
    """A double holds no card number: features and metric values keep theirs, though 1 in 10 random ones of 16
    digits with a card prefix passes Luhn (4111111111111111 does)."""
    number = 4111111111111111.0

    def send(client: aitrace.Client) -> None:
        client.inference(request_id="r-1", model_name="m", latency_ms=1.0, features={"t_us": number})

    [doc] = _documents(str(tmp_path / "spool"), send)
    text = json.dumps(doc)
    assert "REDACTED" not in text and "4111111111111111" in text, text


def test_an_int_log_attribute_shaped_like_a_card_number_is_redacted(tmp_path: Path) -> None:
    """Attributes are text (``map<string>``) before the redactor sees them, so an int is checked
    like any text. Chosen: a card number a program holds as an int (a database column) must not
    leak; an id that happens to take a card's prefix and pass Luhn loses its digits, the safe
    side. Epoch timestamps (17... in microseconds) have no card prefix and stay."""

    def send(client: aitrace.Client) -> None:
        client.log("info", "tick", n=4111111111111111, t_us=1765000000000000)

    [doc] = _documents(str(tmp_path / "spool"), send)
    attributes = doc["aitrace"]["attributes"]
    assert "4111111111111111" not in json.dumps(doc) and "REDACTED" in attributes["n"]
    assert attributes["t_us"] == "1765000000000000"


def test_a_str_subclass_is_scanned_as_the_plain_str_it_holds() -> None:
    """numpy.str_ and StrEnum members were passed by (``type(value) is str``), secrets and all."""
    import enum

    import numpy as np
    from aitrace.producers import events as ev

    class Mode(enum.StrEnum):
        X = "password=hunter2xyz"

    redactor = Redactor()
    out = redactor.mapping({"note": np.str_("key AKIAQWERTYUIOPASDFGA"), "mode": Mode.X, np.str_("a@example.com"): 1})
    assert type(out["note"]) is str and "AKIA" not in out["note"] and "hunter2xyz" not in out["mode"]
    assert not any("example.com" in k for k in out)
    assert type(ev.text_value(np.str_("x"), Counter())) is str and ev.text_value(Mode.X, Counter()) == Mode.X.value


_HIDDEN = ["\x00", "\x7f", "\x1b", "\x08", "\x01", "\x1f", "\x0c", "\x85", "\ufff9", "\ufffb", "\U0001d173"]


@pytest.mark.parametrize("hidden", _HIDDEN, ids=[f"U+{ord(c):04X}" for c in _HIDDEN])
def test_a_control_character_inside_a_key_word_does_not_hide_it(hidden: str) -> None:
    """Shown by a review: a NUL, DEL, ESC or backspace (or an interlinear annotation or musical formatting mark)
    inside ``password`` hid the assignment from every pattern (``pass\\x00word=Hunter2Secret`` went out as it was).
    A control between a key's words (``secret\\x1fkey``, ``set\\x00cookie``) must keep them a secret's name: taking
    the controls out glued them (``secretkey``), which 4db65e5 did."""
    redactor = Redactor()
    for text in (
        f"pass{hidden}word=Hunter2Secret",
        f"tab\there pass{hidden}word=Hunter2Secret\tafter",
        f"password{hidden}=Hunter2Secret",
        f'{{"pass{hidden}word": "Hunter2Secret"}}',
        f"p{hidden}a{hidden}s{hidden}s{hidden}w{hidden}o{hidden}r{hidden}d: Hunter2Secret",
        f"secret{hidden}key=Hunter2Secret",
        f"x{hidden}api{hidden}key=Hunter2Secret",
        f"python{hidden}train.py{hidden}--password{hidden}Hunter2Secret{hidden}--epochs{hidden}3",
        f"python{hidden}train.py{hidden}--password{hidden}Hunter2Secret{hidden}verbose",  # (argv: ends in a word)
    ):
        assert "Hunter2" not in redactor.scrub(text), repr(text)
        assert "Hunter2" not in redactor.scrub(text, ident=True), repr(text)
    for key in ("pass{0}word", "secret{0}key", "set{0}cookie", "x{0}api{0}key", "api{0}key", "db{0}password"):
        assert redactor.mapping({key.format(hidden): "Hunter2Secret"}) == {key.format(hidden): REDACTED}, key


@pytest.mark.parametrize("hidden", ["\x00", "\x01", "\x1f", "\x0c"], ids=["NUL", "SOH", "US", "FF"])
def test_text_a_control_character_separates_is_not_glued(hidden: str) -> None:
    """Benign text whose words or fields a control separates (NUL-separated argv, FIX's SOH, unit separators) stays
    as it was: read without its controls it would glue into e-mails (``git\\x00clone\\x00git@github.com``), phone
    numbers (FIX fields) or a value that takes in the next field; read with a control as a space, a status word
    split by one (``hea\\x00lthy``) would read as a short secret."""
    from corpus.secrets import benign

    redactor, plain = Redactor(), Redactor()
    plain._behind_controls = lambda text, *_: text  # type: ignore[method-assign]  # the scan without the readings
    for line in benign():
        text = line.replace(" ", hidden)
        assert redactor.scrub(text) == plain.scrub(text), repr(text)
    fix = "8=FIX.4.2|9=178|35=D|34=1080|49=TESTBUY1|52=20180920-18:14:19.508|56=TESTSELL1|11=636730640278898634|"
    fix += "15=USD|21=2|38=7000|40=1|54=1|55=MSFT|60=20180920-18:14:19.492|10=092|"
    for text in (
        fix.replace("|", hidden),
        f"auth\ufff9: hea{hidden}lthy",
        f"\x1b[31mERROR\x1b[0m{hidden}epoch 3 done",
        f"id{hidden}5551234{hidden}567{hidden}row",
    ):
        assert redactor.scrub(text) == text, repr(text)
    field = f"db{hidden}connect{hidden}password=kS1pAWTN3l{hidden}host=db"  # (a NUL or SOH ends no value, US and FF do)
    assert redactor.scrub(field) == plain.scrub(field) and "kS1p" not in redactor.scrub(field)


def test_the_control_readings_are_the_text_with_each_control_as_a_space_or_taken_out() -> None:
    """The two readings and the offsets come from C loops (translate, numpy): a regex substitution per control and
    a list of every offset cost 1.2 s on 1 MB of NUL-separated words. Checked against the definition on random
    texts of letters, controls of every kind, non-ASCII and astral characters."""
    import random

    from aitrace.producers.text_reading import CONTROLS, control_readings

    rng = random.Random(0)
    alphabet = ["a", "=", " ", "é", "\U0001f600", "\x00", "\x1f", "\x7f", "\x85", "\ufff9", "\U0001d173", "\t", "\n"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        spaced, removed, offsets = control_readings(text)
        assert spaced == CONTROLS.sub(lambda m: " " * len(m.group()), text)
        assert removed == CONTROLS.sub("", text)
        assert [text[i] for i in offsets] == list(removed)


@pytest.mark.parametrize(
    "line",
    [
        "\x1b[1mdb connect\x1b[0m \x1b[36mpassword\x1b[0m=\x1b[35mHunter2Secret\x1b[0m",  # structlog's ConsoleRenderer
        "\x1b[1;34mapi_key\x1b[0m\x1b[1m:\x1b[0m 'Hunter2Secret'",
        "\x1b[38;5;208mpassword\x1b[0m=\x1b[38;2;4;5;6mHunter2Secret\x1b[0m",  # 256 colours, true colour
        "pass\x1b[1mword=Hunter2Secret",
        "db password: \x1b[1;36m48291377\x1b[0m",  # rich's highlighter: the value stopped at the code's ";"
        "\x1b[1mBearer Hunter2Secretabcd\x1b[0m",  # loguru's <level>: a code before a word-start anchor
        "run: \x1b[33m--password\x1b[0m Hunter2Secret",
        "\x1b[36mssn\x1b[0m=\x1b[35m123456789\x1b[0m",
        "the \x1b[1mpassword\x1b[0m for admin is Hunter2Secret",
        "\x1b[36mpassword\x1b(B\x1b[m=Hunter2Secret",  # tput sgr0
        "\x1b]8;;https://x\x1b\\\x1b[33mpassword\x1b[0m\x1b]8;;\x1b\\=\x1b[35mHunter2Secret",  # rich's hyperlink
        "done\x1b]0;password=Hunter2Secret\x07",  # a window title: hidden on the terminal, in the index
        "password=Hunter\x1b[1C2Secret",  # a cursor move inside a value (a review: the value was cut at a space)
        # a second secret on the line (a review of a170d12: the reading alone glued the code's boundary away)
        "Charged bob@example.com card \x1b[1;36m4111111111111111\x1b[0m. password=Hunter2Secret",
        "ssn 123-45-6789 bob@example.com \x1b[1mpassword\x1b[0m=Hunter2Secret",
        # a link's text beside a number (a review of fd3bc30: read inline, its "8;id=" made the card another number)
        "charged card \x1b[1;36m4111111111111111\x1b[0m \x1b]8;id=1;file:///app/x.py\x1b\\x.py\x1b]8;;\x1b\\",
        "password=\x1b]8;id=1;https://vault.example/s/1\x1b\\Hunter2Secret\x1b]8;;\x1b\\ host=db",
        "db_pass: Fq\x1b[1AZfWe7ihGyiR",  # a cursor move inside a token (read as a line break, it split it)
        "x \x1b[4111111111111111m y",  # no code: read as one, the text went out unscanned
        "token=Hunter2Secret card " + " ".join(["\x1b[1;36m4111\x1b[0m"] + ["\x1b[1;36m1111\x1b[0m"] * 3) + ".",
    ],
)
def test_a_terminal_s_escape_codes_do_not_hide_a_secret(line: str) -> None:
    """Shown by reviews: structlog's ConsoleRenderer(colors=True) wraps each key in colour codes
    (``\\x1b[36mpassword\\x1b[0m=``), rich's highlighter each number; a terminal shows ``password=...`` and the
    secret went out. A text is read as a terminal shows it, and sent in that reading where it shows a secret."""
    out = Redactor().scrub(line)
    for secret in ("Hunter", "2Secret", "48291377", "123456789", "123-45-6789", "4111", "bob@", "ZfWe7"):
        assert secret not in out, out


@pytest.mark.parametrize(
    "line",
    [
        "\x1b[1mdb connect\x1b[0m \x1b[36mhost\x1b[0m=\x1b[35mdb\x1b[0m \x1b[36mrows\x1b[0m=\x1b[35m42\x1b[0m",
        "\x1b[36mauth\x1b[0m=\x1b[35mok\x1b[0m \x1b[36mtoken\x1b[0m=\x1b[35mNone\x1b[0m \x1b[36mpass\x1b[0m: 3 of 4",
        "token: \x1b[3;35mNone\x1b[0m auth=\x1b[35mok\x1b[0m",  # rich: "[REDACTED];35mNone" at d71dd26
        "libcudnn8-dev_\x1b[1;92m8.9.2.26\x1b[0m-1+cuda12.1",  # rich's highlighted version: no IP address
        "Saved 4539578763621486.json",  # a file name
        "Done" + "\x1b[1A\x1b[2K" * 3_000,  # a redraw's chain of cursor codes: read in one pass
        "\x1b[" + "0;" * 5_000,  # no final byte: no code
        # UTF-8 decoded as Latin-1 holds C1's CSI and OSC bytes: no codes (a review: they ate Hebrew and Czech letters)
        "שלום עולם, děkuji, věc".encode().decode("latin-1"),
        "\x9d" * 5_000,
    ],
)
def test_what_a_plain_line_keeps_is_kept_coloured(line: str) -> None:
    """A review of e07b103 (a code read as a control) found ``auth=ok`` and ``token=None`` redacted coloured."""
    assert Redactor().scrub(line) == line


def test_the_terminal_reading() -> None:
    """Codes taken out; an OSC's payload, which the index holds, on a line of its own; C1's 8-bit forms are no codes:
    UTF-8 text decoded as Latin-1 holds their bytes (a review: Hebrew and Czech text lost letters)."""
    from aitrace.producers.text_reading import terminal_reading

    assert terminal_reading("\x1b[1;36mpass\x1b[0mword") == "password"
    assert terminal_reading("a\x1b[2Cb\x1b[1Ac\x1b[Kd\x1b[?25le") == "abcde"
    assert terminal_reading("see \x1b]8;id=1;https://x/y\x1b\\link\x1b]8;;\x1b\\.") == "see link.\n8;id=1;https://x/y"
    assert terminal_reading("\x1b]0;my title\x07done") == "done\n0;my title"
    assert terminal_reading("\x1b(Bx\x1b7y\x1b8z") == "xyz"  # a charset, cursor saves
    kept = ("\x1b[", "\x1b[12;", "\x1b]0;title\nnext\x07", "\x1b", "\x1b=", "\x1b[=H", "\x9b36mx\x9d0;t\x9c", "plain")
    for text in kept:
        assert terminal_reading(text) == text
    assert Redactor().key_action("\x1b[36mpassword\x1b[0m") == 1 and Redactor().key_action("pass\x1b[0mword") == 1


def test_no_pattern_holds_two_whitespace_runs_that_only_an_optional_character_separates() -> None:
    """``\\s*,?\\s*`` tries every split of a run of spaces at every step back: "token" followed by 10,000 spaces (a
    padded report) took 680 ms of the sender's CPU, 100,000 took 66 s; now 3.4 ms and 32 ms. ``\\s*(?:,\\s*)?``
    matches the same text in one pass."""
    from aitrace.producers.secret_patterns import PATTERNS

    twice = re.compile(r"\\s[*+]\)?(?:\[[^\]]*\]|\\.|[^\\\[(])\?\\s[*+]")
    assert [kind for kind, _, regex in PATTERNS if twice.search(regex)] == []


@pytest.mark.parametrize(
    "text",
    [
        "pass%00word=Hunter2Secret",  # a control once percent-decoded
        "next=%2Flogin%3Fpass%00word%3DHunter2Secret",
        "pass\u0336word=Hunter2Secret",  # combining marks no letter composes with: a struck-through s
        "p\u0308assword: Hunter2Secret",
        "to\u20dbken=Hunter2Secret",
        "pass\u0600word=Hunter2Secret",  # Arabic prepended marks: nothing shown beside Latin letters
        "pass\u0605word=Hunter2Secret",
    ],
)
def test_marks_and_decoded_controls_inside_a_key_word_do_not_hide_it(text: str) -> None:
    """Shown by a review (each as at c9fe80f and d71dd26): a key word split by a percent-encoded NUL, a combining mark
    a reader reads through, or a prepended format mark went out in clear."""
    redactor = Redactor()
    assert "Hunter2" not in redactor.scrub(text), text
    name = text.split("=")[0].split(":")[0].split("%3F")[-1]
    if "%2F" not in text:
        assert redactor.key_action(name) == 1, name


def test_accented_text_is_not_read_without_its_accents() -> None:
    """Only marks NFKC leaves on a Latin letter are taken off: French or Vietnamese text keeps its accents."""
    redactor = Redactor()
    for text in ("café crème password_policy=strict", "naïve token=None", "Mật khẩu đã đổi", "pas\u0301sword reset"):
        assert redactor.scrub(text) == text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("charged card 4111 1111 1111 1111.", "4111"),  # before a sentence's full stop (a review: it went out)
        ("user got key Z8xK2mQ9vL4nR7tY1wE5uI3oP6aS0dF.", "Z8xK"),
    ],
)
def test_a_number_or_a_key_before_a_full_stop_is_redacted(text: str, secret: str) -> None:
    assert secret not in Redactor().scrub(text)
    for kept in ("took 4111111111111111.23 s", "file Z8xK2mQ9vL4nR7tY1wE5uI3oP6aS0dF.tar.gz"):  # a decimal, a name
        assert Redactor().scrub(kept) == kept


def test_wordish_segments_are_decided_run_by_run_as_the_regex_did() -> None:
    """One regex tried every way to cut a run of capitals before failing: "A" * 42 + "1aa-x" (a 47-byte body) took
    8 s in the sender (a review). The run-by-run decision accepts the same segments (random strings checked against
    the regex it replaces) and looks at 100,000 capitals at once."""
    import random

    from aitrace.producers import secret_patterns

    regex = re.compile(
        r"(?:[A-Z][a-z]+|[A-Z]{2,5}|[a-z]{2,})+(?:[A-Z]?\d+[A-Za-z]?)?|\d+[A-Za-z]{0,2}|[A-Za-z]\d{0,3}[A-Za-z]?|v\d+"
    )
    rng = random.Random(0)
    for length in range(12):
        for _ in range(3_000):
            text = "".join(rng.choice("aAbBzZv019é٣") for _ in range(length))
            assert secret_patterns._wordish(text) == (regex.fullmatch(text) is not None), text
    assert not secret_patterns.looks_random("A" * 100_000 + "1aa-x")


def test_a_list_that_starts_with_a_number_is_still_scanned() -> None:
    """A JSON body {"a": [1, "password=..."]} went out whole: a list whose first item was a number was taken for a
    numeric column (a review)."""
    out = Redactor().value({"a": [1, "password=Hunter2Secret", {"token": "Hunter2Secret"}]})
    assert "Hunter2" not in repr(out) and out["a"][0] == 1


def test_a_value_past_the_pattern_s_bound_is_redacted_whole() -> None:
    """A bare value is matched 512 characters at most (unbounded, each key word a check refused took its value to the
    end of the text again: "xtoken=" * 20,000 cost 12.8 s, a review); an accepted one is still taken whole."""
    out = Redactor().scrub("password=" + "Ab1" * 700 + " next=1")
    assert "Ab1" not in out and out.endswith(" next=1")
    out = Redactor().scrub("Cookie: sid=" + "Zq9" * 2_000 + "; theme=dark")
    assert "Zq9" * 1_400 not in out  # (a cookie value is matched 4,096 characters at most: browsers keep no more)


@pytest.mark.parametrize(
    "key", ["password", "password_hash", "db_password_confirm_again", "api_key_value", "x_api_key", "user_pin"]
)
def test_secret_names_with_their_tails(key: str) -> None:
    """The tails after a secret word are found in one pass from the end (a slice a word cost a 640,000-character
    name 4.4 s)."""
    redactor = Redactor()
    assert redactor.key_action(key) == 1
    assert redactor.key_action(key + "_count") == 0 and redactor.key_action("cpu_pin") == 0


@pytest.mark.parametrize(
    "text",
    [
        "- name: DB_PASSWORD\n  value: " + "S3CR-planet_94river.94coffee-" * 25,  # a name, then its value
        '{"name": "X-Api-Key", "value": "' + "S3CR-planet_94river" * 40 + '"}',
        "Cookie: big=" + "x" * 4_097 + "; session=S3CRsession99; csrf=S3CRcsrf99",  # pairs after a long one
        "cookie: sid=" + "S3CR" * 1_100 + ",more" + "S3CR" * 20,
        "id-token-eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IiLCJleHAiOjF9.c2lnbmF0dXJlc2lnbmF0dXJl",
    ],
)
def test_long_values_and_glued_tokens_are_redacted_whole(text: str) -> None:
    """A review of the bounds put on values (d1de6c1): a name/value pair's value past 512 characters, a Cookie
    header's pairs after a value past 4,096 and a JWT after a '-' went out in part."""
    out = Redactor().scrub(text)
    assert "S3CR" not in out and "planet" not in out and "eyJzdWIi" not in out, out


def test_prose_with_a_long_value_keeps_its_key() -> None:
    out = Redactor().scrub("the password is " + "Zq9" * 200 + " ok")
    assert out.startswith("the password is [REDACTED") and out.endswith(" ok")


_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
_PROVIDER_KEYS = [
    "AKIAZ7QW3RTY5UIO9PLK",
    _JWT,
    "ghp_" + "A1b2C3d4E5" * 3 + "A1b2C3",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
]


@pytest.mark.parametrize("key", _PROVIDER_KEYS, ids=lambda k: k[:6])
@pytest.mark.parametrize("word", ["loss", "layer3", "encoder.layers.0.q_proj.weight", "uploading with creds"])
def test_a_provider_key_glued_on_with_an_underscore_is_redacted(redactor: Redactor, word: str, key: str) -> None:
    """``\\b`` is no boundary after "_": "layer3_AKIA...", "creds_ghp_..." and "val_acc_eyJ..." kept the key whole,
    in metric names, text and attribute keys alike (/work/rev-ae D5: the AWS key 38 times in the index)."""
    glued = f"{word}_{key}"
    leaked = [key[i : i + 12] for i in range(len(key) - 11)]
    for out in (redactor.scrub(glued), redactor.scrub(glued, ident=True), *redactor.mapping({glued: 1})):
        assert not any(part in out for part in leaked), out


@pytest.mark.parametrize(
    "key",
    [
        *(key for key in _PROVIDER_KEYS if not key.startswith("hf_")),
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",  # glued, a token's own 34 letters (base64 digests hold "hf_" too)
        "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd",
        "AIzaSyD-1234567890abcdefGHIJKLMNOPQRSTU",
    ],
    ids=lambda k: k[:6],
)
@pytest.mark.parametrize("glued", ["layer3{}", "loss{}", "err\\t{}", "{}suffix", "x{}.y9"])
def test_a_provider_key_glued_to_a_letter_or_a_digit_is_redacted(redactor: Redactor, glued: str, key: str) -> None:
    """No separator at all: "layer3AKIA...", a JSON-escaped tab's "\\tAKIA...", "AKIA...EXAMPLEsuffix" kept the key
    whole (/work/rev-af), and "loss" before a JWT made its first 36 characters an AWS secret's 40, leaving the rest."""
    text = glued.format(key)
    leaked = [key[i : i + 12] for i in range(len(key) - 11)]
    for out in (redactor.scrub(text), redactor.scrub(text, ident=True)):
        assert not any(part in out for part in leaked), out


@pytest.mark.parametrize(
    "text",
    [
        '"UserId": "AIDAJQABLZS4A3QDU576Q"',  # an IAM user's unique id (aws sts get-caller-identity): no secret
        '"principalId": "AROAJ2UCCR6DPCEXAMPLE:session"',
        "eval/mask-RCNN_resnet50_fpn_v2/mAP",
        "risk-Adjusted_return_2024",
        "sha256=3F2ACCA9B1C4D7E6A5F8E9D0C1B2A3F4E5D6C7B8A9F0E1D2C3B4A5F6E7D8C9B0",  # upper-case hex
        "pandas/tests/series/methods/test_truncate.py,sha256=ohf_xX2TRMtlwP1e93WawB9QlLW0cByINkF6HN6Evv4,3689",
    ],
)
def test_names_the_glued_key_patterns_once_took_stay(redactor: Redactor, text: str) -> None:
    """A review of the glued-key patterns (/work/rev-ak): an IAM id lost 20 of its 21 characters, a bare "sk-"
    glued inside a model's name or a sha256's base64 and "ACCA" inside upper-case hex were taken for keys."""
    assert redactor.scrub(text) == text and redactor.scrub(text, ident=True) == text


def test_an_aws_secret_before_a_jwt_is_redacted_with_it(redactor: Redactor) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    out = redactor.scrub(f"{secret}.{_JWT}")
    assert secret[:12] not in out and "SflKxwRJSMeK" not in out, out


def test_upper_case_sequences_are_no_aws_key_ids(redactor: Redactor) -> None:
    # a protein's "...AKIA..." or a DNA read's "...ACCA..." with 16 more letters: a glued key has a digit among them
    rng = random.Random(0)
    sequences = ["".join(rng.choice(alphabet) for _ in range(400)) for alphabet in ("ACDEFGHIKLMNPQRSTVWY", "ACGT")]
    for text in sequences:
        assert redactor.scrub(text) == text


@pytest.mark.parametrize(
    "name",
    [
        "layer_norm_sk_weight", "model_hf_base_v2", "train_xoxo_count", "feat_AIza", "run_ghp_count",
        # run, shard and file names a review found redacted once keys glued on with "_" were (/work/rev-af D4)
        "run_sk-learn-baseline-logreg-c1e-3-seed0", "exp_sk-resnet50-lr1e-3-bs256-cosine",
        "/data/tfrecords/train_sk-00001-of-01024-shuffled", "ckpt_hf_3f2a9c1b4d7e6a5f8e9d0c1b2a3f4e5d6c7b8a9f.bin",
        "cache_hf_bertbaseuncasedfinetunedsst2epoch3", "ckpt_5d41402abc4b2a76b9719d911017c592-us1.pt",
        "hugs_xoxo-forever-and-always-2024", "run_ACde9f1c3b2a4d5e6f7a8b9c0d1e2f3a4b5c6.log",
    ],
)  # fmt: skip
def test_identifiers_that_only_look_like_a_prefix_after_an_underscore_stay(redactor: Redactor, name: str) -> None:
    assert redactor.scrub(name) == name and redactor.scrub(name, ident=True) == name
