"""Redaction of secrets and personal data before an event leaves the process.

:class:`Redactor` is a processor in the client's chain. It walks the **whole** event (envelope,
payload, labels) or metric block, map keys included, because every string there reaches the
broker and the index: service and run ids, request ids, span and metric names, stage and dataset
names, category values, class labels.

- **Field names.** A value whose key names a secret (``password``, ``db_pass``, ``apiKey``,
  ``authorization``, ...; see :func:`_secret_key`) is replaced whole by ``[REDACTED]``, unless it is
  a status word (``auth: healthy``). ``num_tokens``, ``tokenizer``, ``token_count`` are not secrets.
  Keys on the user's allow list are left untouched.
- **Patterns in text** (:mod:`aitrace.producers.secret_patterns`): provider keys, private keys, URL
  user-info, keyword assignments, high-entropy strings, e-mail, IBAN, SSN, cards, IP addresses;
  and phone numbers of any country (:mod:`aitrace.producers.phones`, asked only about digits grouped like
  a phone number). Each pattern runs only where a cheap trigger fired (a substring, a small
  regex), so a benign log line costs about 20 µs, not the 190 µs of one regex of everything.

Policy: free text gets ``[REDACTED:<kind>]``. An **identifier** (a map key or a field in
:data:`IDENTIFIER_FIELDS`) gets ``[REDACTED:<kind>#<8 letters>]``, a keyed hash of the secret, so
distinct ids stay distinct (no merged class counts, series still group) without the secret.
The hash key is ``hash_key`` (set ``AITRACE_REDACT_KEY`` to share it across processes), else
random per process: an unkeyed short hash of a phone number could be brute-forced. The event
still travels; every replacement is counted per kind (``client.stats()["redacted_<kind>"]``).

Envelope ids the client generates (``event_id``, ``trace_id``, ...) are skipped only at the top
level and only while they look generated (hex and dashes); anything else in them is scanned.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aitrace.producers import phones
from aitrace.producers.secret_patterns import (
    BARE_VALUE_CHAR,
    COOKIE_VALUE_CHAR,
    COOKIE_WHOLE,
    PASSWORD_ABROAD,
    PATTERNS,
    VALIDATORS,
    Validator,
    glued_secret,
    hardware_pin,
    kept_whole,
    luhn_ok,
    secret_spans,
    triggers,
    without_hex_ids,
)
from aitrace.producers.text_reading import (
    CONTROLS,
    control_readings,
    has_escapes,
    hides_in_controls,
    hiding_control,
    latin_reading,
    plain_variant,
    terminal_reading,
)

__all__ = ["REDACTED", "Redactor", "luhn_ok"]

REDACTED = "[REDACTED]"
# What a summary of a secret-named column keeps empty (aitrace.FeatureStats): every statistic a value shows in.
_FEATURE_VALUES: tuple[tuple[str, Any], ...] = (
    *((key, lambda: None) for key in ("mean", "variance", "min", "max")),
    ("quantiles", dict),
    ("histogram_edges", list),
    ("histogram_counts", list),
)


DEFAULT_DENY_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "passwort",
        "pwd",
        "pass",
        "secret",
        "secrets",
        "token",
        "authorization",
        "auth",
        "apikey",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "passphrase",
        "privatekey",
        "ssn",
        "privkey",
        "passcode",
        "pin",
        "pincode",
    }
    # "password" in other languages, as the key is read (latin_reading: "пароль" holds Cyrillic look-alikes); French
    # "mot de passe" is also a name (DEFAULT_DENY_NAMES)
    | {latin_reading(word.replace(" ", "")) for word in PASSWORD_ABROAD}
)
# Multi-word names whose words alone are harmless ("access", "key", "private").
DEFAULT_DENY_NAMES = frozenset(
    {
        "api_key",
        "de_passe",
        "access_key",
        "secret_key",
        "private_key",
        "client_secret",
        "set_cookie",
        "session_id",
        "x_api_key",
        "signing_key",
        "encryption_key",
        "hmac_key",
        "master_key",
        "fernet_key",
        "amz_signature",
        "goog_signature",
        "pin_code",
        "session_key",
    }
)
# Words after a secret word that keep the key a secret ("password_hash"); any other tail does not ("token_count").
_SECRET_TAILS = frozenset(
    {"key", "value", "hash", "header", "string", "str", "b64", "base64", "raw", "text", "data", "confirm",
     "confirmation", "again", "repeat"}
)  # fmt: skip
# Envelope fields the client generates itself; skipped only at the top level and while they look generated.
ENVELOPE_IDS = frozenset({"event_id", "trace_id", "span_id", "parent_span_id", "block_id", "batch_id"})
_REPEATED_IDS = frozenset({"trace_id", "span_id", "parent_span_id"})
_GENERATED = re.compile(r"[0-9A-Fa-f.\-]{1,80}")
DEFAULT_ALLOW: frozenset[str] = frozenset()
# Fields whose value names something (grouped, aggregated, joined on): redacted with a stable token.
IDENTIFIER_FIELDS = frozenset(
    {
        "service",
        "service_version",
        "environment",
        "host",
        "run_id",
        "request_id",
        "model_name",
        "model_version",
        "feature_version",
        "code_version",
        "name",
        "stage",
        "dataset",
        "batch",
        "label",
        "split",
        "logger",
        "kind",
        "error_type",
    }
)
_SCALARS = frozenset({int, float, bool})
_BARE_VALUE_AT = re.compile(BARE_VALUE_CHAR)
_BARE_VALUE_RUN = re.compile(f"{BARE_VALUE_CHAR}+")
_COOKIE_VALUE_AT = re.compile(COOKIE_VALUE_CHAR)
_CACHE_MAX = 20_000
_CACHE_LEN = 256
_BARE_VERSION = re.compile(r"\s*v?[\d.]+(?:[-+~][\w.+~-]*)?\s*")
_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _key_words(key: str) -> list[str]:
    """A field name's words, lower-cased: split at camel humps and at anything but letters and digits of any
    script (an ASCII-only split cut "contraseña" into "contrase" and "a")."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[\W_]+", spaced.lower()) if w]


_ALWAYS = "always"
# A compiled pass: the alternation, the pattern indices in it, and each pattern alone (by index).
_Pass = tuple["re.Pattern[str] | None", tuple[int, ...], dict[int, "re.Pattern[str]"]]


def _split(patterns: Iterable[tuple[str, ...]]) -> tuple[list[str], list[str], list[str]]:
    """Kinds, triggers and regexes of ``(kind, regex)`` or ``(kind, trigger, regex)`` entries."""
    kinds: list[str] = []
    trigs: list[str] = []
    regexes: list[str] = []
    for entry in patterns:
        kinds.append(entry[0])
        trigs.append(entry[1] if len(entry) == 3 else _ALWAYS)
        regexes.append(entry[-1])
    return kinds, trigs, regexes


# What :meth:`Redactor._spans` puts in place of a secret: one character of a private-use plane per kind, repeated (no
# pattern takes them for part of a word, a number or a key).
_MARK = 0xF0000
_KEYWORD_TRIGGERS = frozenset({"kv", "abroad", "dashp", "dashu"})
_MARKED = re.compile("([\U000f0000-\U000ffffd])\\1*")


_ASSIGNED = re.compile("[=:]")


def _key_end(text: str, start: int, end: int) -> int:
    """Where the key of a match ``text[start:end]`` ends: after its first ``=`` or ``:``, else at its end."""
    found = _ASSIGNED.search(text, start, end)
    return end if found is None else found.end()


# A word character, controls, a word character: where a match that ends at the controls cut a word short.
_WORD_AT = re.compile(f"\\w{CONTROLS.pattern}\\w")
_WORD_RUN = re.compile(r"\w{1,256}")
_SPACE_BEFORE_ASSIGN = re.compile(r"\s+(?=[=:])")


class _Marks(list[str]):
    """The ``found`` list of a scan that marks where its secrets are instead of replacing them: the kinds by mark."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[str] = []

    def mark(self, kind: str) -> str:
        if kind not in self.kinds:
            self.kinds.append(kind)
        return chr(_MARK + self.kinds.index(kind))


class Redactor:
    """A processor that scrubs secrets and PII from events and metric blocks (see the module doc).

    ``deny``/``allow`` extend the field-name lists; ``patterns`` replaces the default pattern list
    (``[(kind, regex), ...]``); ``phone_regions`` are the regions whose national formats
    (``020 7946 0958``) are recognised, ``()`` turns the phonenumbers pass off. ``counts`` tells
    how many values of each kind were redacted.
    """

    drop_reason = "redacted_drop"

    def __init__(
        self,
        deny: Iterable[str] = (),
        allow: Iterable[str] = (),
        patterns: Iterable[tuple[str, str]] | None = None,
        *,
        hash_key: str | bytes | None = None,
        phone_regions: Iterable[str] = ("GB", "US"),
    ) -> None:
        self.deny_words = set(DEFAULT_DENY_WORDS)
        self.deny_names = set(DEFAULT_DENY_NAMES)
        for name in deny:
            words = _key_words(name)
            (self.deny_words if len(words) == 1 else self.deny_names).add("_".join(words))
        self.allow = set(DEFAULT_ALLOW) | {a.lower() for a in allow}
        self._kinds, self._triggers, self._regexes = _split(PATTERNS if patterns is None else patterns)
        self._singles = [re.compile(r) for r in self._regexes]
        self._validators: list[Validator | None] = [VALIDATORS.get(k) for k in self._kinds]
        self._passes: dict[frozenset[str], _Pass] = {}
        keyword = [i for i, t in enumerate(self._triggers) if t == "kv"]
        # Kinds found only after a key word (an assignment, a bearer header, -p/-u flags): what a control character
        # inside a key word hides, and all that a text's readings around its controls are asked for
        unkeyed = {k for k, t in zip(self._kinds, self._triggers, strict=True) if t not in _KEYWORD_TRIGGERS}
        self._keyed = frozenset(self._kinds) - unkeyed
        self._kv_lower = self._compile(keyword)
        self._kv_any_case = self._compile(keyword, re.IGNORECASE)
        key = hash_key.encode("utf-8", "surrogatepass") if isinstance(hash_key, str) else hash_key
        self._hash_key = (key or os.urandom(16))[:64]
        self._regions = tuple(phone_regions) if patterns is None else ()
        self.counts: Counter[str] = Counter()
        self._key_cache: dict[str, int] = {}
        # Per clean key: (scrubbed name, key action, identifier field, version field).
        self._plans: dict[str, tuple[str, int, bool, bool]] = {}
        self._cache: dict[tuple[str, bool, bool], tuple[str, tuple[str, ...]]] = {}
        # Texts found clean, by the version flag (the only flag that changes what is found): the
        # common case (a service, a model name, a route, a message without numbers) is one set lookup.
        self._clean: tuple[set[str], set[str]] = (set(), set())
        self._ids: set[str] = set()  # top-level ids seen to look generated

    @property
    def runs_on_every_text(self) -> bool:
        """Whether a pattern without a trigger (a user's own) runs on every text, so none may go unscanned."""
        return _ALWAYS in self._triggers

    # -- field names

    def key_action(self, key: str) -> int:
        """0: scan the value, 1: redact it whole (a secret's name), 2: leave it (allow list). Cached per key."""
        action = self._key_cache.get(key)
        if action is None:
            # "ＰＡＳＳＷＯＲＤ", "pass\u200bword", "ΤΟΚΕΝ" (Greek): the word it reads as
            read = plain_variant(key) or key
            words = _key_words(latin_reading(read))
            if key.lower() in self.allow or "_".join(words) in self.allow:
                action = 2
            else:
                action = 1 if self._secret_key(words) else 0
                if not action and (hides_in_controls(read) or has_escapes(read)):  # "pass\x00word", "pass%00word"
                    glued = CONTROLS.sub("", terminal_reading(read))
                    action = 1 if self._secret_key(_key_words(latin_reading(plain_variant(glued) or glued))) else 0
            if len(self._key_cache) < 10_000:
                self._key_cache[key] = action
        return action

    def _secret_key(self, words: list[str]) -> bool:
        """A secret word (or pair, or glued word: ``pgpassword``) followed by nothing or by tails (``password_hash``,
        ``password_confirm``); not ``token_count``."""
        tails = len(words)  # where the run of tail words that ends the key starts (a slice a word: quadratic)
        while tails and words[tails - 1] in _SECRET_TAILS:
            tails -= 1
        for i, word in enumerate(words):
            pair = "_".join(words[i : i + 2])
            if pair in self.deny_names:
                rest = i + 2
            elif word == "pin" and i and hardware_pin(words[i - 1]):
                continue  # cpu_pin, numa_pin: a pinning to cores or nodes, not a PIN
            elif word in self.deny_words or glued_secret(word):  # PGPASSWORD, password1, apitoken, JSESSIONID
                rest = i + 1
            else:
                continue
            if rest >= tails:
                return True
        return False

    # -- text

    def scrub(self, text: str, ident: bool = False, version: bool = False) -> str:
        """``text`` with every secret replaced; ``ident`` gives stable tokens, ``version`` leaves dotted quads."""
        clean = self._clean[1 if version else 0]
        if len(text) < 6 or text in clean:
            return text
        if len(text) > _CACHE_LEN:
            return self._scrub(text, ident, version, None)
        cache_key = (text, ident, version)
        hit = self._cache.get(cache_key)
        if hit is None:
            found: list[str] = []
            out = self._scrub(text, ident, version, found)
            if not found:
                if len(clean) >= _CACHE_MAX:
                    clean.clear()
                clean.add(text)
                return out
            hit = (out, tuple(found))
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[cache_key] = hit
        else:
            for kind in hit[1]:  # a repeated value is counted each time it is redacted
                self.counts[kind] += 1
        return hit[0]

    def _scrub(self, text: str, ident: bool, version: bool, found: list[str] | None) -> str:
        """The text with its secrets replaced. A text holding a terminal's escape sequences is scanned as a terminal
        shows it (:func:`text_reading.terminal_reading`: ``\\x1b[36mpassword\\x1b[0m=`` reads ``password=``) and,
        where that shows a secret, sent in that reading, redacted; else as it was, codes and all. Scanned as it is,
        a code's own characters read as a value (``token: \\x1b[3;35mNone`` as ``token: \\x1b[3``)."""
        if has_escapes(text):
            shown = terminal_reading(text)
            if shown != text:
                out = self._scrub_shown(shown, ident, version, found)
                return text if out == shown else out
        return self._scrub_shown(text, ident, version, found)

    def _scrub_shown(self, text: str, ident: bool, version: bool, found: list[str] | None) -> str:
        """The text with its secrets replaced; then, where its plain variant (as a reader or a URL decoder sees
        it: ``pass<U+200B>word=...``, ``%3Fpassword%3D...``) shows one more, that variant redacted instead.

        The text itself first, so what its own form shows stays redacted whole (``password=a%20b``). Before it, where
        a control character could hide something (``pass\\x00word=...``: :meth:`_behind_controls`), what that hid."""
        if not text.isprintable() and hides_in_controls(text):
            text = self._behind_controls(text, ident, version, found)
        out, fired = self._scan(text, ident, version, found)
        variant = plain_variant(out, "kv" in fired)
        if variant is None:
            return out
        seen: list[str] = []
        if not variant.isprintable() and hides_in_controls(variant):  # decoded: "pass%00word=..."
            variant = self._behind_controls(variant, ident, version, seen)
        plain, _ = self._scan(variant, ident, version, seen)
        if not seen:
            return out
        if found is not None:
            found.extend(seen)
        return plain

    def _behind_controls(self, text: str, ident: bool, version: bool, found: list[str] | None) -> str:
        """``text`` with what a control character hid redacted, the rest (controls included) as it was.

        Two readings are scanned: each control as a space (``x\\x1bapi\\x1bkey=...`` reads as ``x api key=...``,
        ``--password\\x00...`` as ``--password ...``) and without controls (``pass\\x00word=...`` as ``password=...``).
        Only what follows a key word counts (an assignment, a bearer header, -p/-u flags: :attr:`_keyed`); glued, the
        words or numbers a control separates would read as an e-mail (``git\\x00clone\\x00git@github.com``), a card or
        a phone number (FIX fields: ``34=1080\\x0149=...``). A match of the first reading counts where it takes in a
        control in its key (up to its first ``=`` or ``:``) and, where it ends at one inside a word, shows a secret
        with the word glued on too (``auth\\ufff9: hea\\x00lthy`` is no ``auth: hea``: :meth:`_glued_too`); one of
        the second where a control it took out sat inside the key's words or between them and its ``=`` or ``:``
        (:func:`text_reading.hiding_control`). A control in the value only is left to the usual scan: glued, a value
        takes in the next field (``password=x\\x1fhost=db``).
        Their union is redacted in the text itself, mapped back by offsets; the usual scan then runs on that, so
        nothing it found before is lost.
        """
        spaced, removed, offsets = control_readings(text)
        keyed = self._keyed
        spans = [
            (a, b, kind)
            for a, b, kind in self._spans(spaced, ident, version)
            if kind in keyed
            and CONTROLS.search(text, a, _key_end(text, a, b))
            and (not _WORD_AT.match(text, b - 1) or self._glued_too(text, spaced, a, b, ident, version))
        ]
        for a, b, kind in self._spans(removed, ident, version):
            start, end = int(offsets[a]), int(offsets[b - 1]) + 1
            if kind in keyed and hiding_control(text[start : _key_end(text, start, end)]):
                spans.append((start, end, kind))
        if not spans:
            return text
        parts: list[str] = []
        pos = 0
        for start, end, kind in sorted(spans):
            if end <= pos:
                continue
            start = max(start, pos)
            parts.append(text[pos:start])
            parts.append(self._token(kind, text[start:end], ident, found))
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def _glued_too(self, text: str, spaced: str, start: int, end: int, ident: bool, version: bool) -> bool:
        """Whether a match ``spaced[start:end]`` that ends at controls inside a word still shows a secret with the
        word's rest glued on: ``--password\\x00Hunter2Secret\\x00verbose`` (NUL-separated argv) is read both ways a
        secret, ``auth\\ufff9: hea\\x00lthy`` only split (glued, "auth: healthy" is a status)."""
        controls = CONTROLS.match(text, end)  # (they are there: the match ends at them)
        rest = _WORD_RUN.match(text, controls.end() if controls is not None else end)
        glued = spaced[start:end] + (rest.group() if rest is not None else "")
        return bool(self._spans(_SPACE_BEFORE_ASSIGN.sub("", glued), ident, version))  # ("auth\ufff9:" as "auth:")

    def _spans(self, text: str, ident: bool, version: bool) -> list[tuple[int, int, str]]:
        """``(start, end, kind)`` of what a scan of ``text`` redacts (each replaced by a mark of its own length)."""
        marks = _Marks()
        marked, _ = self._scan(text, ident, version, marks)
        kinds = marks.kinds
        return [
            (m.start(), m.end(), kinds[ord(m.group()[0]) - _MARK])
            for m in _MARKED.finditer(marked)
            if ord(m.group()[0]) - _MARK < len(kinds) and text[m.start() : m.end()] != m.group()  # (not the text's own)
        ]

    def _scan(self, text: str, ident: bool, version: bool, found: list[str] | None) -> tuple[str, frozenset[str]]:
        """``text`` with what the patterns find replaced, and the triggers that fired on it."""
        fired = triggers(text)
        if "kv" in fired:  # keyword patterns first, on the lower-cased text (see secret_patterns)
            lower = text.lower()
            if len(lower) == len(text):
                text = self._run(text, lower, self._kv_lower, ident, version, found)
            else:  # a character whose lower case is longer: offsets would shift
                text = self._run(text, text, self._kv_any_case, ident, version, found)
        text = self._run(text, text, self._pass_for(fired), ident, version, found)
        if self._regions and "digits" in fired:
            plain = without_hex_ids(text)  # a UUID's or a trace id's digits are not a phone number
            if phones.hint(plain):
                text = self._phones(text, plain, ident, found)
        return text, fired

    def _pass_for(self, fired: frozenset[str]) -> _Pass:
        """One alternation of the (non-keyword) patterns whose trigger fired, compiled once per set of triggers."""
        entry = self._passes.get(fired)
        if entry is None:
            active = [i for i, t in enumerate(self._triggers) if t == _ALWAYS or (t in fired and t != "kv")]
            entry = self._passes[fired] = self._compile(active)
        return entry

    def _compile(self, active: list[int], flags: int = 0) -> _Pass:
        if not active:
            return None, (), {}
        regex = re.compile("|".join(f"(?P<p{i}>{self._regexes[i]})" for i in active), flags)
        singles = {i: re.compile(self._regexes[i], flags) for i in active}
        return regex, tuple(active), singles

    def _run(self, text: str, scan: str, run: _Pass, ident: bool, version: bool, found: list[str] | None) -> str:
        """Replace what ``run`` finds in ``scan`` (``text`` or its lower case: same offsets) in ``text``."""
        regex = run[0]
        if regex is None:
            return text
        match = regex.search(scan)
        if match is None:
            return text
        parts: list[str] = []
        pos = 0
        while match is not None:
            start = match.start()
            hit = self._accept(text, scan, match, run, version)
            if hit is None:  # a shape benign text shares: look again one character on
                match = regex.search(scan, start + 1)
                continue
            kind, end = hit
            parts.append(text[pos:start])
            parts.append(self._replaced(kind, text[start:end], ident, found))
            pos = end
            match = regex.search(scan, end) if end > start else regex.search(scan, end + 1)
        parts.append(text[pos:])
        return "".join(parts)

    def _accept(self, text: str, scan: str, match: re.Match[str], run: _Pass, version: bool) -> tuple[str, int] | None:
        """``(kind, end)`` of the first alternative at this position that passes its check."""
        _, active, singles = run
        start = match.start()
        first = int((match.lastgroup or "p0")[1:])
        end: int | None = match.end()
        for i in active[active.index(first) :]:
            if i > first:
                candidate = singles[i].match(scan, start)
                end = candidate.end() if candidate is not None else None
            if end is None or end == start:
                continue
            kind = self._kinds[i]
            if version and kind == "ipv4" and _BARE_VERSION.fullmatch(text):
                continue  # {"cudnn": "8.9.2.26"}: a version field holding only a version
            check = self._validators[i]
            if check is None or check(text[start:end], text, start):
                if kind == "secret_assignment":
                    end = self._whole(text, scan, start, end)
                return kind, end
        return None

    @staticmethod
    def _whole(text: str, scan: str, start: int, end: int) -> int:
        """Where an accepted assignment ends when its value ran past the pattern's bound (secret_patterns' ``_value``,
        ``_cookie``): at the end of the value's run, or of the Cookie header's pairs."""
        if scan.startswith("cookie:", start) and _COOKIE_VALUE_AT.match(text, end):
            whole = COOKIE_WHOLE.match(scan, start)
            return max(end, whole.end()) if whole is not None else end
        tail = _BARE_VALUE_RUN.match(text, end) if _BARE_VALUE_AT.match(text, end - 1) else None
        return tail.end() if tail is not None else end

    def _replaced(self, kind: str, match: str, ident: bool, found: list[str] | None) -> str:
        """A match with its secret parts (all of it, or a Cookie header's values) replaced by tokens."""
        spans = secret_spans(kind, match)
        if spans is None:
            return self._token(kind, match, ident, found)
        parts: list[str] = []
        pos = 0
        for start, end in spans:
            parts.append(match[pos:start])
            parts.append(self._token(kind, match[start:end], ident, found))
            pos = end
        parts.append(match[pos:])
        return "".join(parts)

    def _token(self, kind: str, secret: str, ident: bool, found: list[str] | None) -> str:
        if type(found) is _Marks:  # (a reading scanned for where its secrets are: nothing counted)
            return found.mark(kind) * len(secret)
        self.counts[kind] += 1
        if found is not None:
            found.append(kind)
        if not ident:
            return f"[REDACTED:{kind}]"
        # surrogatepass: a lone surrogate (os.fsdecode of a name that is not UTF-8) is hashed, not raised on
        data = secret.encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(data, key=self._hash_key, digest_size=4).hexdigest()
        return f"[REDACTED:{kind}#{digest.translate(_LETTERS)}]"  # letters, no ":" : a second pass finds nothing

    def _phones(self, text: str, plain: str, ident: bool, found: list[str] | None) -> str:
        """``text`` with the phone numbers found in ``plain`` (the same text, hex identifiers blanked) redacted."""
        parts: list[str] = []
        pos = 0
        for start, end in phones.find(plain, self._regions):
            parts.append(text[pos:start])
            parts.append(self._token("phone", text[start:end], ident, found))
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    # -- structures

    def value(self, value: Any, ident: bool = False, version: bool = False) -> Any:
        """Redact a value of any shape (strings scanned, mappings by key, sequences item by item)."""
        kind = type(value)
        if kind is str:
            return self.scrub(value, ident, version)
        if kind is dict:
            return self.mapping(value, ident_values=ident, version=version)
        if kind is list:
            # a numeric column (Avro arrays are typed); a JSON list mixes ([1, "password=..."] went out whole)
            if not value or (type(value[0]) in _SCALARS and _SCALARS.issuperset(map(type, value))):
                return value
            return [self.value(v, ident, version) for v in value]
        if kind is tuple and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
            return (value[0], self.mapping(value[1]))  # an Avro union branch: (record name, fields)
        if isinstance(value, str):  # numpy.str_, a StrEnum member: scanned, and sent, as the plain str it holds
            return self.scrub(str.__str__(value), ident, version)
        return value

    def mapping(
        self, mapping: dict[Any, Any], top: bool = False, ident_values: bool = False, version: bool = False
    ) -> dict[Any, Any]:
        """A copy of ``mapping``: keys scrubbed as identifiers, secret-named values blanked, others redacted."""
        if "dtype" in mapping and (hidden := self.hidden_feature(mapping)) is not None:
            mapping = hidden
        out: dict[Any, Any] = {}
        plans = self._plans
        clean, clean_versioned = self._clean
        for key, val in mapping.items():
            plan = plans.get(key) if type(key) is str else None
            if plan is None:
                plan = self._plan(key)
            name, action, ident, versioned = plan
            if type(val) is str:  # the common case first, with the clean-text check inlined
                known = action == 0 and val in (clean_versioned if version or versioned else clean)
                if known or action == 2 or (top and key in ENVELOPE_IDS and self._generated(key, val)):
                    out[name] = val
                elif action == 1:
                    out[name] = self._blank(val)
                else:
                    out[name] = self.scrub(val, ident or ident_values, version or versioned)
            elif type(val) is float and action == 1:  # {"ssn": 123456789.0} in a map of doubles (features)
                out[name] = math.nan
                self.counts["field"] += 1
            elif val is None or type(val) in _SCALARS or action == 2:
                out[name] = val
            elif action == 1:
                out[name] = self._blank(val)
            else:
                out[name] = self.value(val, ident or ident_values, version or versioned)
        return out

    def hidden_feature(self, feature: dict[Any, Any]) -> dict[Any, Any] | None:
        """A data batch's summary of a secret-named column (``password``, ``pin``), its values taken out; None
        for any other. Its top values are the secrets themselves, and so are a few rows' min, max, quantiles
        and histogram edges: rows and missing values are kept, the categories' counts summed under one name."""
        name = feature.get("name")
        if type(name) is not str or self.key_action(name) != 1:
            return None
        out = dict(feature)
        for key, empty in _FEATURE_VALUES:
            if key in out:
                out[key] = empty()
        if categories := out.get("categories"):
            out["categories"] = {REDACTED: sum(int(n) for n in categories.values())}
        self.counts["field"] += 1
        return out

    def _generated(self, key: str, value: str) -> bool:
        """An envelope id the client generated (hex and dashes): nothing in it to scan."""
        if value in self._ids:
            return True
        if _GENERATED.fullmatch(value) is None:
            return False
        if key in _REPEATED_IDS:  # remembered: many events share them (event ids are new each time)
            if len(self._ids) >= _CACHE_MAX:
                self._ids.clear()
            self._ids.add(value)
        return True

    def _plan(self, key: Any) -> tuple[Any, int, bool, bool]:
        """(scrubbed name, key action, identifier field, version field) of a key; cached while the key is clean."""
        if not isinstance(key, str):
            return key, 0, False, False
        key = str.__str__(key)  # a str subclass (numpy.str_): scanned as the plain str it holds
        before = self.total
        plan = (
            self.scrub(key, True),
            self.key_action(key),
            key in IDENTIFIER_FIELDS or key == "labels",
            "version" in key,
        )
        if self.total == before and len(self._plans) < 10_000:
            self._plans[key] = plan  # a key holding a secret is scrubbed, and counted, every time it comes
        return plan

    def _blank(self, value: Any) -> Any:
        """The value of a secret-named field: gone, whatever its shape (status words stay: ``auth: healthy``)."""
        if isinstance(value, str):
            if kept_whole(value):
                return value
            self.counts["field"] += 1
            return REDACTED
        if isinstance(value, dict):
            self.counts["field"] += len(value)
            return {self.scrub(k, True) if isinstance(k, str) else k: REDACTED for k in value}
        if isinstance(value, list):
            self.counts["field"] += len(value)
            return [REDACTED for _ in value]
        return value

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        """Processor entry point: an Event or a MetricBlock, walked whole (envelope, payload, labels, names)."""
        return self.mapping(item, top=True)

    @property
    def total(self) -> int:
        """How many values were redacted so far, all kinds together."""
        return sum(self.counts.values())
