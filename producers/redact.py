"""Redaction of secrets and personal data before an event leaves the process.

Two mechanisms, both applied by :class:`Redactor`, a processor in the client's chain:

- **Field names.** A value whose key is on the deny list (``password``, ``token``,
  ``authorization``, ``api_key``, ...) is replaced whole by ``[REDACTED]``. Keys are split into
  words (``db_password`` -> ``db``, ``password``), so ``num_tokens`` or ``tokenizer`` are not
  mistaken for ``token``. Keys on the allow list are left untouched (no pattern scan either).
- **Patterns in text.** Every other string is scanned for: private key blocks, JWTs, bearer
  tokens, provider API keys (``sk-``, ``ghp_``, ``xox?-``, ``AIza``, ...), AWS access key ids
  and secret keys, ``key=value`` assignments of secret-named keys, e-mail addresses, card
  numbers (13-19 digits with a card prefix **and** a valid Luhn checksum, so ids that fail
  Luhn stay), IPv4 / IPv6 addresses (validated by :mod:`ipaddress`), phone numbers (with a
  ``+`` country code or the (NNN) NNN-NNNN shape, so bare step counts stay).

Each match becomes ``[REDACTED:<kind>]`` and is counted per kind. Patterns are one compiled
alternation, so text with nothing to hide costs one regex scan.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "[REDACTED]"

DEFAULT_DENY_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "pwd",
        "secret",
        "secrets",
        "token",
        "authorization",
        "auth",
        "apikey",
        "cookie",
        "credential",
        "credentials",
        "passphrase",
        "privatekey",
        "ssn",
    }
)
# Multi-word names whose words alone are harmless ("access", "key", "private").
DEFAULT_DENY_NAMES = frozenset(
    {"api_key", "access_key", "secret_key", "private_key", "client_secret", "set_cookie", "session_id", "x_api_key"}
)
# Envelope fields the client fills itself: ids and numbers, never user text.
DEFAULT_ALLOW = frozenset(
    {"event_id", "trace_id", "span_id", "parent_span_id", "block_id", "batch_id", "request_id", "time", "level"}
)

_SECRET_KEY_WORDS = (
    r"(?:api[_-]?key|apikey|access[_-]?key|secret(?:[_-]?key)?|token|password|passwd|pwd|auth|authorization"
    r"|credentials?|cookie)"
)

# Order matters: earlier alternatives win where matches overlap (a JWT inside "Bearer ...").
_PATTERNS: list[tuple[str, str]] = [
    ("private_key", r"-----BEGIN[A-Z ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?-----END[A-Z ]*PRIVATE KEY( BLOCK)?-----"),
    ("bearer", r"(?i:\bbearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    ("api_key", r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}"),
    ("api_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("api_key", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}"),
    ("api_key", r"\bxox[abprse]-[A-Za-z0-9-]{10,}"),
    ("api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("api_key", r"\bhf_[A-Za-z0-9]{30,}"),
    ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    (
        "secret_assignment",
        # A secret-named key (a whole word: "num_tokens" is not "token") = a value
        # (not a short number: token_count=5000 stays; not a boolean: auth_enabled: true stays).
        rf"(?i:\b(?:[a-z0-9]+[_.-])*{_SECRET_KEY_WORDS}(?:[_.-][a-z0-9]+)*\b)[\"']?\s*[:=]\s*[\"']?"
        r"(?![\d.]{1,5}\b)(?!(?i:true|false|null|none|yes|no|on|off)\b)(?i:(?:bearer|basic|token)\s+)?[^\s\"',;&]{4,}",
    ),
    ("aws_secret_key", r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    ("card", r"(?<![\d.])[2-6]\d(?:[ -]?\d){11,17}(?![\d.])"),
    (
        "ipv4",
        r"(?<![\w.:])(?<!==)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])",
    ),
    ("ipv6", r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])"),
    ("phone", r"(?<![\w+])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\d)"),
    ("phone", r"(?<![\w(])\(\d{3}\)\s?\d{3}[ .-]\d{4}(?!\d)|(?<![\w.-])\d{3}[.-]\d{3}[.-]\d{4}(?![\w.-])"),
]


_SCALARS = frozenset({int, float, bool})


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` passes the Luhn checksum (as every real card number does)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _valid_card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _valid_ipv6(text: str) -> bool:
    if text.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", text):
        return False
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _valid_aws_secret(text: str) -> bool:
    # 40 random base64 characters mix cases and digits; git SHAs (lower hex) and words do not.
    return bool(re.search(r"[a-z]", text) and re.search(r"[A-Z]", text) and re.search(r"\d", text))


_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "card": _valid_card,
    "ipv6": _valid_ipv6,
    "aws_secret_key": _valid_aws_secret,
}


def _compile(patterns: Iterable[tuple[str, str]]) -> tuple[re.Pattern[str], list[str]]:
    kinds: list[str] = []
    parts: list[str] = []
    for i, (kind, regex) in enumerate(patterns):
        kinds.append(kind)
        parts.append(f"(?P<p{i}>{regex})")
    return re.compile("|".join(parts)), kinds


def _key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


class Redactor:
    """A processor that scrubs secrets and PII from events and metric blocks (see the module doc).

    ``deny``/``allow`` extend the default field-name lists; ``patterns`` replaces the default
    pattern list (``[(kind, regex), ...]``). ``counts`` tells how many values of each kind
    were redacted.
    """

    drop_reason = "redacted_drop"

    def __init__(
        self,
        deny: Iterable[str] = (),
        allow: Iterable[str] = (),
        patterns: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.deny_words = set(DEFAULT_DENY_WORDS)
        self.deny_names = set(DEFAULT_DENY_NAMES)
        for name in deny:
            words = _key_words(name)
            (self.deny_words if len(words) == 1 else self.deny_names).add("_".join(words))
        self.allow = set(DEFAULT_ALLOW) | {a.lower() for a in allow}
        self._regex, self._kinds = _compile(_PATTERNS if patterns is None else patterns)
        self.counts: Counter[str] = Counter()
        self._key_cache: dict[str, int] = {}

    # -- field names

    def key_action(self, key: str) -> int:
        """0: scan the value, 1: redact it whole (deny list), 2: leave it (allow list). Cached per key."""
        action = self._key_cache.get(key)
        if action is None:
            words = _key_words(key)
            joined = "_".join(words)
            if key.lower() in self.allow or joined in self.allow:
                action = 2
            elif joined in self.deny_names or any(w in self.deny_words for w in words):
                action = 1
            else:
                action = 0
            if len(self._key_cache) < 10_000:
                self._key_cache[key] = action
        return action

    # -- text

    def scrub(self, text: str) -> str:
        """``text`` with every pattern match replaced by ``[REDACTED:<kind>]``."""
        if not text or len(text) < 6:
            return text
        return self._regex.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        group = match.group(0)
        # The p<i> groups are the outermost ones, so lastgroup names the alternative that matched.
        kind = self._kinds[int((match.lastgroup or "p0")[1:])]
        validator = _VALIDATORS.get(kind)
        if validator is not None and not validator(group):
            return group
        self.counts[kind] += 1
        return f"[REDACTED:{kind}]"

    # -- structures

    def value(self, value: Any) -> Any:
        """Redact a value of any shape (strings scanned, mappings by key, sequences item by item)."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return self.mapping(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
            return (value[0], self.mapping(value[1]))  # an Avro union branch: (record name, fields)
        return value

    def mapping(self, mapping: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``mapping`` with deny-listed keys blanked and other values redacted."""
        out: dict[str, Any] = {}
        for key, val in mapping.items():
            if val is None or type(val) in _SCALARS:  # most payload fields: nothing to scan or blank
                out[key] = val
                continue
            action = self.key_action(key) if isinstance(key, str) else 0
            if action == 2:
                out[key] = val
            elif action == 1 and not isinstance(val, dict | list):
                self.counts["field"] += 1
                out[key] = REDACTED
            elif action == 1 and isinstance(val, dict):
                out[key] = {k: REDACTED for k in val}
                self.counts["field"] += len(val)
            else:
                out[key] = self.value(val)
        return out

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        """Processor entry point: an Event (scrub payload and labels) or a MetricBlock (scrub names)."""
        if "payload" in item:
            item["payload"] = self.value(item["payload"])
            if item.get("labels"):
                item["labels"] = self.mapping(item["labels"])
            return item
        for series in item.get("series", ()):
            series["name"] = self.scrub(series["name"])
        return item

    @property
    def total(self) -> int:
        """How many values were redacted so far, all kinds together."""
        return sum(self.counts.values())
