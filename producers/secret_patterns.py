"""What a secret or a piece of personal data looks like: the patterns and checks :mod:`aitrace.producers.redact` uses.

Each entry of :data:`PATTERNS` is ``(kind, regex)``; a kind listed in :data:`VALIDATORS` must
also pass its check (a checksum, an entropy test, a look at the words around it), so shapes
that benign ML text shares (ids, versions, hashes) stay. Coverage follows detect-secrets'
plugins (AWS, Azure storage, Artifactory, URL user-info, Discord, GitHub, GitLab, IBM, JWT,
Mailchimp, npm, OpenAI, PyPI, SendGrid, Slack, Softlayer, Square, Stripe, Twilio, Telegram,
private keys, keyword assignments, high-entropy strings) plus personal data: e-mail (non-ASCII
too), phone numbers, IBAN (mod 97), US SSN, card numbers (prefix + Luhn), IP addresses.

Choices that keep benign text:

- **IPv4.** A dotted quad right after a version word or a library name (``cudnn 8.9.2.26``,
  ``driver=535.104.05.01``, ``torch==...``) or followed by ``-``/``+``/``~`` and a word (a
  package revision) is a version, not an address.
- **Cards.** 13-19 digits need a card prefix (Visa, Mastercard, Amex, Discover, Diners, JCB,
  UnionPay, Maestro) and Luhn; an unseparated run right after an id word (``sample``,
  ``step``, ``id``, ``seed``, ...) is an id, unless a card word is near; so are digits inside a
  longer hex identifier (a UUID, a trace id, a SHA: 16+ hex digits with a letter among them).
- **High entropy.** Only base64-like runs of 24+ characters mixing upper, lower and digits
  with Shannon entropy and class changes of random text. Pure hex (git SHAs, sha256, trace
  ids, UUIDs) is never flagged by entropy alone: hex secrets are caught by their key
  (``secret=...``) or their provider shape.
- **Keyword values.** Booleans, status words (``auth: healthy``), short numbers and whole
  placeholders (``$DB_PASS``, ``{{ ... }}``, ``****1234``) are not secrets; a value of one or
  two characters is one after a password, secret or key word (``api_key: k1``) or when it mixes
  letters and digits, not after token or pass (``token=a``). After ``key: `` a word of a
  sentence stays ("password: too short"). ``pin`` after a hardware word (``cpu_pin``) is none.
- **Prose.** ``<secret word> [for|of <one or two words>] is|was[:] <value>`` ("the password for
  admin is hunter2") loses the value only, and only where it looks like a secret
  (:func:`secret_like`): after password, passphrase or passcode, any word but one of the
  sentence; after pwd, secret, pin, a digit, punctuation or an inner capital, or a word of 6+
  letters that does not read as English; after token, api key, auth, cookie, session id, 8+
  characters mixing letters and digits. "password is incorrect", "the next token is London",
  "token count is 512" stay.
- **Cookies.** A Cookie or Set-Cookie header loses its values; cookie names and Set-Cookie
  attributes (Path, Domain, Expires, ...) stay.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections import Counter
from collections.abc import Callable


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# "password" in the languages a key is most often written in besides English (in lower case; "пароль" in Cyrillic
# letters, the Latin look-alikes of some of them are its reading by text_reading.latin_reading). Words that mean
# something else too stay out ("parola" is Italian for "word", "şifre" Turkish for "cipher").
PASSWORD_ABROAD = (
    "contraseña", "contrasena", "senha", "mot de passe", "kennwort", "wachtwoord", "lösenord", "losenord",
    "adgangskode", "passord", "salasana", "hasło", "haslo", "heslo", "jelszó", "jelszo", "пароль",
    "密码", "密碼", "口令", "パスワード", "비밀번호", "암호",
)  # fmt: skip
_ABROAD = "|".join(re.escape(w).replace(r"\ ", "[ _-]?") for w in PASSWORD_ABROAD)
# Words whose value is a secret when they name a key ("db_password", "apiKey", "--token", Django's "password1").
SECRET_WORDS = (
    r"(?:api[_ -]?key|apikey|access[_ -]?key|secret(?:[_ -]?key)?|client[_-]?secret|token|passw(?:or)?[dt]\d{0,2}"
    r"|passphrase|pwd|pass|pin(?:[_-]?code)?|auth|authorization|credentials?|cookie"
    r"|session[_ -]?(?:id|key|token)|sessid|private[_ -]?key|sas"
    r"|signing[_-]?key|encryption[_-]?key|hmac[_-]?key|master[_-]?key|fernet[_-]?key|privkey|passcode"
    r"|amz-signature|goog-signature)"
)
# A key that ends in a secret word, optionally with a tail that keeps it a secret ("password_hash").
_TAIL = (
    r"(?:[_.-]?(?:key|value|hash|header|string|str|b64|base64|raw|plain|text|bytes|data"
    r"|confirm(?:ation)?|again|repeat))?"
)
_KEY_BODY = rf"[\w.-]*?{SECRET_WORDS}{_TAIL}(?![a-z0-9])"
# Anchored on the secret word (a lazy key prefix at every position made this the slowest pattern);
# the validator checks that it starts a word or a camelCase part ("dbPassword"), so "author",
# "compass" and "tokenizer" do not qualify.
_KEY = rf"{SECRET_WORDS}{_TAIL}(?![a-z0-9])"
# Prose between a key and its value: "is", "was", "is:" after the key or after "for"/"of" and one or two words
# ("the password for admin is ..."); the validator then asks for a value that looks like a secret (secret_like).
_PROSE = r"(?:\s+(?:for|of)(?:\s+[\w.@-]+){1,2}?)?\s+(?:is|was)(?:\s*:)?\s+"
# A name, then its value in a field of its own: '{"name": "X-Api-Key", "value": "..."}' (HAR headers, Kubernetes
# env lists), "- name: DB_PASSWORD\n  value: ..." (their YAML), '{"key": "db.password", "value": {"stringValue":
# "..."}}' (OpenTelemetry's JSON attributes).
_NAME_THEN_VALUE = r"[\"']?\s*(?:,\s*)?[\"']?value[\"']?\s*:\s*(?:\{\s*[\"']?\w*value[\"']?\s*:\s*)?"
# A value: quoted (spaces and ";" allowed: '"cookie": "a=b; sid=..."') or a bare run up to a delimiter, of 512
# characters at most in a pattern: unbounded, every key word a check refused took its value to the end of the text
# again ("xtoken=" * 20,000: 12.8 s). An accepted one is taken whole (the redactor's ``_whole``), and the parsers
# of a match already made read it so (``_WHOLE_VALUE``).
BARE_VALUE_CHAR = r"[^\s\"',;&)}\]]"
COOKIE_VALUE_CHAR = r"[^\s;\"]"


def _value(run: str) -> str:
    return rf"(?:\"[^\"\n]{{1,256}}\"|'[^'\n]{{1,256}}'|[\"']?(?:(?:bearer|basic|token)\s+)?{BARE_VALUE_CHAR}{run})"


def _cookie(run: str) -> str:
    """A Cookie header: its name=value pairs (a value of ``run`` characters)."""
    return rf"cookie:[ \t]*(?:[^\s=;,\":]+[ \t]*=[ \t]*{COOKIE_VALUE_CHAR}{run}(?:[ \t]*;[ \t]*|[ \t]+)?)+"


_VALUE = _value("{1,512}")
_WHOLE_VALUE = _value("+")

STATUS_WORDS = _words(
    "true false null none nil yes no on off enabled disabled enable disable healthy unhealthy ok okay "
    "failed failure success succeeded successful required optional missing expired valid invalid pending "
    "granted denied basic bearer oauth oauth2 sso ldap saml kerberos iam anonymous unknown default set unset "
    "empty redacted hidden masked present absent active inactive error ready n/a na"
)


def kept_whole(value: str) -> bool:
    """Whether a secret-named field's text stays as it is: empty, or a status word (``auth: healthy``)."""
    return not value or value.strip().lower() in STATUS_WORDS


_ID_WORDS = _words(
    "id ids idx index sample samples step steps seed row rows batch offset shard example record uid key "
    "request trace span order item doc document image frame token tokens epoch iteration iter run"
)
_HEX_RUN = re.compile(r"[0-9A-Fa-f-]{16,}")  # leftmost and greedy: each match is a whole run
_CARD_WORDS = re.compile(r"(?i)card|credit|debit|visa|master|amex|discover|payment|\bcc\b|\bpan\b|billing")
_VERSION_WORDS = _words(
    "v ver version versions release rel build driver firmware fw cudnn cuda nccl tensorrt trt onnx onnxruntime "
    "torch pytorch tensorflow tf jax jaxlib numpy python py cublas cufft libcudnn libcudnn8 libnccl mkl openmpi "
    "protobuf triton nvidia gcc clang glibc kernel linux ubuntu rocm hip apex xla openvino cutlass nvcc "
    "cudatoolkit bios vbios rev revision tag image"
)


def _mixed(least: int, also: str = "", *, exact: bool = False) -> str:
    """A token's body of ``least`` characters or more (exactly ``least``: ``exact``; letters, digits and ``also``)
    with upper case, lower case and a digit among its first ``least``: random, not a word ("task_live_dashboard",
    "disk-usage-2024")."""
    first = f"[A-Za-z0-9{also}]{{0,{least - 1}}}"
    count = f"{{{least}}}" if exact else f"{{{least},}}"
    return rf"(?={first}[A-Z])(?={first}[a-z])(?={first}\d)[A-Za-z0-9{also}]{count}"


# (kind, trigger, regex): a pattern runs only on text where its trigger (see :func:`triggers`) fired.
# Patterns of the "kv" trigger are written in lower case and run on the lower-cased text: Python's
# case-insensitive matching costs about ten times more (9 µs for an alternation of 14 words).
PATTERNS: list[tuple[str, str, str]] = [
    # Private keys, with or without their END line (a truncated log line still hides the body).
    (
        "private_key",
        "begin",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:(?:(?!-----BEGIN)[\s\S])*?-----END[A-Z0-9 ]*PRIVATE KEY"
        r"(?: BLOCK)?-----"
        r"|(?:[A-Za-z0-9+/=\s]|\\[nr]|[A-Za-z-]+: [^\n]*\n)*)",
    ),
    (
        "private_key",
        "begin",
        r"PuTTY-User-Key-File-\d: (?:(?!PuTTY-User-Key-File)[\s\S])*?Private-Lines: \d+(?:\s|\\n)+"
        r"(?:[A-Za-z0-9+/=]+(?:\s|\\n)*)+",
    ),
    # Credentials in a URL's user-info whose password holds "/", "?" or "#" (a generated base64 one:
    # "admin:Xq8v/R2m+K@db"), which ends the authority for a URL parser but not for a reader, and "@" before them
    # ("user:p@ss/w0rd@db.example"): up to the last "@" before a host. Not a port and a path
    # ("host:8080/users/jane@example.com"), nor an identifier's token ("[REDACTED:url_credentials#abcdefgh]@db");
    # a dotted host or a port right after the first "@" is the host ("u:p@api.example.com/users/bob@x.com"). An
    # undotted one is not told from a password (u:p@db/users/bob@x.com loses "p@db/users/bob": more than the secret).
    # First: the next pattern would stop at the first "@" and leave the rest of such a password.
    (
        "url_credentials",
        "url",
        r"(?<=://)(?!\[REDACTED)[^\s/?#@\"'<>:]*:(?!\d{1,5}[/?#])[^\s/?#@\"'<>]*(?:@[^\s/?#@.:\"'<>]*)*[/?#](?:(?!://)[^\s\"'<>])*"
        r"(?=@[A-Za-z0-9.-]+(?![^\s:/?#\"'<>]))",
    ),
    # ... and the others (mysql://u:p@h, redis://:p@h, https://token@h); the host stays.
    ("url_credentials", "url", r"(?<=://)[^\s/?#\"'<>]*(?=@[^\s@/?#\"'<>]+)"),
    ("slack_webhook", "lit", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+"),
    ("discord_webhook", "lit", r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+"),
    ("bearer", "kv", r"\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*"),
    # A provider's literal prefix begins a key after anything but a letter or a digit: "\b" is no boundary after "_",
    # and an identifier that glued a key on with it ("layer3_AKIA...", "creds_ghp_...", "val_acc_eyJ...") sent the
    # key to the index whole (/work/rev-ae D5). Glued to a letter or a digit ("layer3AKIA...", a JSON-escaped tab's
    # "\tAKIA..."), a key is taken where its prefix cannot start a word's tail: a JWT's two "eyJ" parts, a literal
    # such as "github_pat_", or a body that mixes upper case, lower case and digits as a random token does (_MIXED).
    ("jwt", "lit", r"eyJ[A-Za-z0-9_-]{5,2048}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    # (not after "_" unless random: "run_sk-learn-baseline-...", "train_sk-00001-of-01024" are run and shard names)
    (
        "openai_key",
        "lit",
        r"\bsk-(?:proj-|ant-|live-|test-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
        # glued: a project key's prefix, or the legacy 48 characters (a sha256's base64 or "mask-RCNN_resnet50"
        # after a bare "sk-" were redacted, /work/rev-ak)
        r"|(?<=[A-Za-z0-9_])sk-(?:(?:proj|ant|svcacct|admin)-[A-Za-z0-9_-]{20,}"
        rf"|{_mixed(48, exact=True)}(?![A-Za-z0-9]))",
    ),
    (
        "stripe_key",
        "lit",
        r"(?<![A-Za-z0-9])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=]{24,}"
        rf"|(?<=[A-Za-z0-9])(?:sk|rk|pk)_(?:live|test)_{_mixed(16)}",
    ),
    (
        "github_token",
        "lit",
        r"(?<![A-Za-z0-9])(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
        rf"|(?<=[A-Za-z0-9])(?:ghp|gho|ghu|ghs|ghr)_{_mixed(30)}",
    ),
    (
        "gitlab_token",
        "lit",
        r"(?<![A-Za-z0-9])(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent|gloas|glffct)-[A-Za-z0-9_-]{20,64}"
        r"|(?<![A-Za-z0-9])GR1348941[A-Za-z0-9_-]{20,}",
    ),
    # after "_" or glued, a workspace's digits first ("hugs_xoxo-forever-and-always" is a name)
    (
        "slack_token",
        "lit",
        r"\bxox[abposre]-[A-Za-z0-9-]{10,}|(?<=[A-Za-z0-9_])xox[abposre]-\d[A-Za-z0-9-]{9,}|xapp-\d-[A-Za-z0-9-]{10,}",
    ),
    ("google_key", "lit", r"AIza[0-9A-Za-z_-]{35}"),
    # after "_" or glued, a token's mixed case: "cache_hf_bertbaseuncased..." and "ckpt_hf_<sha>" are file names
    # glued to a letter or a digit, a token's 34 letters (a sha256's base64 in a wheel's RECORD holds "hf_" too)
    (
        "huggingface_token",
        "lit",
        r"\bhf_[A-Za-z0-9]{30,}|(?<=_)hf_(?=[a-z0-9]*[A-Z])[A-Za-z0-9]{30,}"
        r"|(?<=[A-Za-z0-9])hf_(?=[a-z]*[A-Z])[A-Za-z]{34}(?![A-Za-z0-9])",
    ),
    ("pypi_token", "lit", r"(?<![A-Za-z0-9])pypi-AgE[A-Za-z0-9_-]{50,}"),
    ("npm_token", "lit", r"(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])|(?i:_authToken)\s*=\s*[^\s\"']+"),
    ("sendgrid_key", "lit", r"(?<![A-Za-z0-9])SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,50}"),
    (
        "square_token",
        "lit",
        r"(?<![A-Za-z0-9])sq0(?:atp|csp|idp)-[0-9A-Za-z_-]{22,43}|(?<![A-Za-z0-9])EAAA[A-Za-z0-9_-]{60}",
    ),
    ("twilio_key", "long", r"\b(?:AC|SK)[0-9a-f]{32}\b"),
    ("mailchimp_key", "long", r"\b[0-9a-f]{32}-us\d{1,2}\b"),
    ("telegram_token", "long", r"(?<![\w:])\d{8,10}:[A-Za-z0-9_-]{35}(?![\w-])"),
    ("discord_token", "long", r"\b[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,38}\b"),
    (
        "azure_storage_key",
        "lit",
        r"(?i:AccountKey|SharedAccessKey)=[A-Za-z0-9+/=]{40,88}|(?<![A-Za-z0-9])sig=[A-Za-z0-9%+/=]{30,}",
    ),
    ("artifactory_token", "long", r"(?<![\w-])(?:AKC[a-zA-Z0-9]{10,}|AP[\dABCDEF][a-zA-Z0-9]{8,})(?![\w-])"),
    ("softlayer_key", "kv", r"(?:softlayer|\bsl)[\w-]{0,20}?(?:key|token)[\"']?\s*[:=]\s*[\"']?[a-z0-9]{64}\b"),
    ("softlayer_key", "lit", r"api\.softlayer\.com/(?:soap|rest)/v3(?:\.1)?/[a-z0-9]{64}"),
    ("ibm_key", "kv", r"ibm[\w-]{0,30}?(?:key|pwd|password|pass|token|secret)[\"']?\s*[:=]\s*[\"']?[\w-]{40,48}"),
    (
        "aws_access_key",
        "long",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])"
        # glued on ("layer3AKIA...", "AKIA...EXAMPLEsuffix"): an access key's own prefixes (AKIA, ASIA: the others
        # name users, roles and groups, 21 characters in sts' UserId, and ACCA is hex; /work/rev-ak) and a digit
        # among the 16 (a protein's upper-case run has none)
        r"|(?:AKIA|ASIA)(?=[A-Z]{0,15}\d)[A-Z0-9]{16}",
    ),
    # key=value, key: value, "key": "value", --key value, --key=value (the key names a secret), in one alternation
    # with the shapes below (one branch of the keyword pass: each branch costs at every position of a text):
    # - a Cookie header: "cookie:" and name=value pairs ("Cookie: theme=dark; JSESSIONID=..."; the values go,
    #   the names stay: :func:`secret_spans`), first: the assignment stops at the first ";". Prose ("the cookie:
    #   banner was shown") has no pair and takes the assignment's branch, whose validator then asks for a value
    #   that looks like a secret;
    # - a header as a (name, value) pair: [("authorization", "Basic ..."), ...] (an ASGI scope's headers), JSON
    #   [["x-api-key", "..."]];
    # - key 'value' (SQL: CREATE USER bob WITH PASSWORD '...'): a space is a separator before a quote;
    # - MySQL and Oracle: CREATE USER ... IDENTIFIED [WITH plugin] BY '...'.
    # The validator tells them apart by their first character.
    (
        "secret_assignment",
        "kv",
        _cookie("{0,4096}")  # (browsers keep no longer cookie; see _value)
        + rf"|[\[(]\s*b?[\"'][\w.-]*?{_KEY}[\"'],\s*b?(?:\"[^\"\n]{{1,256}}\"|'[^'\n]{{1,256}}')(?=\s*[\])])"
        rf"|{_KEY}(?:[\"']?(?:\s*[:=：＝]>?\s*|\s+(?=[\"']))|{_PROSE}|{_NAME_THEN_VALUE}|/(?=[\w-]{{16}})){_VALUE}"
        r"|identified\s+(?:with\s+\w+\s+)?by\s+(?:'[^'\n]{1,256}'|\"[^\"\n]{1,256}\")",
    ),
    ("secret_assignment", "kv", rf"(?<!\S)--?{_KEY_BODY}(?:\s+|=){_VALUE}"),
    # "password" in another language, assigned: a pattern and a trigger of its own (in the keyword alternation it
    # doubled the cost of every text with a key word); its value is judged as after "password".
    ("secret_assignment", "abroad", rf"(?i:{_ABROAD})(?![A-Za-z0-9])[\"']?(?:\s*[:=：＝]>?\s*|\s+(?=[\"'])){_VALUE}"),
    # curl -u user:password, --user user:password (`-u` only beside an HTTP client or a URL: the validator).
    ("user_password", "dashu", r"(?<!\S)(?:-u|--user)(?:\s+|=)?[^\s:\"'-][^\s:\"']*:[^\s\"']{3,}"),
    # `-p secret` (mysql, redis-cli...): only with a password word or a db client nearby (validator).
    ("secret_assignment", "dashp", r"(?<!\S)-p(?:\s+|(?=\S{4}))(?!-)[^\s\"']{3,}"),
    # (not where a JWT starts inside: "loss" and a JWT's first 36 characters are 40, and took its start)
    (
        "aws_secret_key",
        "long",
        r"(?<![A-Za-z0-9+=])(?![A-Za-z0-9/+]{0,37}eyJ[A-Za-z0-9_-]*\.eyJ)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
    ),
    (
        "email",
        "at",
        r"(?<![\w.%+-])[\w.%+-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]{2,})(?![\w-])",
    ),
    ("iban", "digits", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
    ("ssn", "digits", r"(?<![\w-])(?!000|666|9\d\d)\d{3}(?:-(?!00)\d{2}-|\s(?!00)\d{2}\s)(?!0000)\d{4}(?![\w-])"),
    ("ssn", "kv", r"\b(?:ssn|social[ _-]security(?:[ _-]number)?)\b[\"']?\s*(?:[:=#]\s*)?[\"']?\d{9}\b"),
    ("card", "digits", r"(?<![\d.])[2-6]\d(?:[ -]?\d){11,17}(?!\d|\.\w)"),
    (
        "ipv4",
        "ip",
        r"(?<![\w.:])(?<!==)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])",
    ),
    ("ipv6", "colon", r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])"),
    ("phone", "digits", r"(?<![\w+])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\d)"),
    ("phone", "digits", r"(?<![\w(])\(\d{3}\)\s?\d{3}[ .-]\d{4}(?!\d)|(?<![\w.-])\d{3}[.-]\d{3}[.-]\d{4}(?![\w.-])"),
    # No upper bound: an AWS session token (400-1,000 characters) or a SAML response is one run; a bound made
    # the lookarounds reject the whole run, so a long secret went through where a short one did not.
    ("high_entropy", "long", r"(?<![\w+/=.-])[A-Za-z0-9+/_-]{24,}={0,2}(?![\w+/=-]|\.[\w+/=-])"),
]


LITERALS = re.compile(
    r"gh[pousr]_|github_pat_|gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas|ffct)-|GR1348941|xox|xapp-|AIza|hf_"
    r"|pypi-|npm_|_authToken|SG\.|sq0|EAAA|sk-|_live_|_test_|whsec_|eyJ|hooks\.slack|/webhooks/|AccountKey"
    r"|SharedAccessKey|sig=|softlayer\.com"
)
_KV_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "cookie", "credential", "session", "sas", "ssn", "social",
             "bearer", "ibm", "-signature", "identified", "sessid")  # fmt: skip
# One search, not a substring test per word; "pin" only as a word's end ("pin=", "card_pin:"): "mapping",
# "clipping" and "early stopping" would fire the keyword pass on many benign log lines.
KV_ANY = re.compile("|".join(map(re.escape, _KV_WORDS)) + "|pin(?![a-z])")
_ABROAD_ANY = re.compile(_ABROAD)
_ASCII_ABROAD = (*(w for w in PASSWORD_ABROAD if w.isascii() and " " not in w), "passe")  # "mot de passe"


def _abroad(text: str, low: str) -> bool:
    """Whether ``text`` (``low``: in lower case) may assign a password named in another language. In ASCII, only
    with a separator, and by substring tests: a regex of the words cost a log line twice as much (0.9 µs)."""
    if not text.isascii():
        return _ABROAD_ANY.search(low) is not None
    if "=" not in text and ":" not in text and '"' not in text and "'" not in text:
        return False
    for word in _ASCII_ABROAD:  # noqa: SIM110 (a loop: any() over a generator costs 0.3 µs more)
        if word in low:
            return True
    return False


_DIGITS = re.compile(r"\d(?:[ .()/+-]{0,2}\d){6}")  # seven digits close together
_LONG = re.compile(r"[A-Za-z0-9_+/=-]{20}")
# Lower-case hex identifiers (UUIDs, uuid4().hex, trace ids, SHAs: 16+ hex digits, dashes allowed, a letter
# among them), one per line: no pattern here can match them. Cards and phones leave digits inside hex
# identifiers alone (without_hex_ids), and every other pattern needs a character (upper case,
# "_", ":", "@", ".", a letter after f) or a run a lower-case hex identifier does not have. A request-id
# column of them then skips the scrub: 20-50 µs an id, where an inference record costs 2-4 µs in all.
_PLAIN_HEX_ID = r"(?=[0-9-]*[a-f])(?=(?:-*[0-9a-f]){16})[0-9a-f-]+"
_PLAIN_HEX_IDS = re.compile(rf"{_PLAIN_HEX_ID}(?:\n{_PLAIN_HEX_ID})*")
# Two more request-id shapes no pattern can match: a lower-case word and "_" or "-" before a lower-case hex
# identifier ("req_<uuid>"), unless the word is a secret's literal or a key word (ghp_, xoxb-, token_: those
# texts are scanned); and an upper-case UUID in its 8-4-4-4-12 form with a letter among its digits (no run of
# it is long enough for an IBAN, an access key or a token, and the remaining patterns need lower case).
_UPPER_UUID = r"(?=[0-9-]*[A-F])[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
_ID_LINE = rf"(?:[a-z]{{1,16}}[_-])?{_PLAIN_HEX_ID}|{_UPPER_UUID}"
_ID_LINES = re.compile(rf"(?:{_ID_LINE})(?:\n(?:{_ID_LINE}))*")
_NONE: frozenset[str] = frozenset()
_DOTTED = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_HEX_COLONS = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:")
# ASCII bytes by what _DIGITS and _LONG look for: C loops rule most texts out, where a regex tries every position
# (a column of 1,000 request ids joined: ~200 and ~100 µs; bench/bench_sender.py --profile inference)
_DIGIT_BYTES = bytes(48 if 48 <= b <= 57 else 120 for b in range(256))  # "0" for a digit, else "x"
_C_LOOPS_FROM = 48  # characters: shorter texts take the regexes, whose fixed cost is lower
_DIGIT_GAPS = b" .()/+-"  # what _DIGITS allows between its digits
_LONG_BYTES = bytes(97 if re.fullmatch(r"[A-Za-z0-9_+/=-]", chr(b)) else 120 for b in range(256))  # _LONG's class: "a"


def triggers(text: str) -> frozenset[str]:
    """Which pattern groups can match ``text`` at all: a few substring tests and small regexes (a few µs),
    so the full patterns run only where they might find something (one combined regex of all of them
    costs about 120 µs on a 70-character log line)."""
    if _PLAIN_HEX_IDS.fullmatch(text):
        return _NONE
    if _ID_LINES.fullmatch(text) and (text.isupper() or not (KV_ANY.search(text) or LITERALS.search(text))):
        return _NONE  # (upper case: no word before an id; and every id line is in lower case or upper case)
    found = []
    if "@" in text:
        found.append("at")
        if "://" in text:
            found.append("url")
    if "-----BEGIN" in text or "PuTTY-User-Key" in text:
        found.append("begin")
    if "-p" in text:
        found.append("dashp")
    if "-u" in text:
        found.append("dashu")
    low = text.lower()
    if KV_ANY.search(low):
        found.append("kv")
    if _abroad(text, low):
        found.append("abroad")
    if LITERALS.search(text):
        found.append("lit")
    # \d is any Unicode digit: other texts, and short ones (the regexes cost less there), take the regexes
    raw = text.encode() if len(text) >= _C_LOOPS_FROM and text.isascii() else None
    if _DIGITS.search(text) if raw is None else _seven_digits(text, raw):  # short texts: no further call
        found.append("digits")
    if "." in text and _DOTTED.search(text):  # the substring tests first: each regex needs that character
        found.append("ip")
    if ":" in text and ("::" in text or _HEX_COLONS.search(text)):
        found.append("colon")
    if _LONG.search(text) if raw is None else b"a" * 20 in raw.translate(_LONG_BYTES):
        found.append("long")
    return frozenset(found)


def _seven_digits(text: str, raw: bytes) -> bool:
    """Whether ``_DIGITS`` finds seven digits close together in an ASCII ``text`` (``raw``: its bytes).

    A match is seven digits with only gap characters between them, so the ASCII bytes with the gaps
    deleted hold seven digits in a row: where they do not, the regex cannot match.
    """
    if b"0000000" not in raw.translate(_DIGIT_BYTES, _DIGIT_GAPS):
        return False
    return _DIGITS.search(text) is not None


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


def shannon(text: str) -> float:
    """Bits per character of ``text``'s own character distribution."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _class(ch: str) -> int:
    return 0 if ch.isdigit() else 1 if ch.isupper() else 2 if ch.islower() else 3


# A segment that reads as a word, a camel-cased name, a number with a unit or a version ("Llama", "MiniLM",
# "patch16", "8B", "v0"); random text seldom makes one longer than a few characters.
# As one regex, (?:[A-Z][a-z]+|[A-Z]{2,5}|[a-z]{2,})+(?:[A-Z]?\d+[A-Za-z]?)?|..., it tried every way to cut a run of
# capitals into pieces before failing: 47 characters ("A" * 42 + "1aa-x", a 47-byte body) took 8 s. The same
# language, decided run by run (:func:`_wordish`).
_WORD_TAIL = re.compile(r"[A-Z]?\d+[A-Za-z]?")
_SHORT_WORDISH = re.compile(r"\d+[A-Za-z]{0,2}|[A-Za-z]\d{0,3}[A-Za-z]?|v\d+")
_CASE_RUNS = re.compile(r"[A-Z]+|[a-z]+")
_DIGIT = re.compile(r"\d")
_CAMEL_WORD = re.compile(r"[A-Z][a-z]{2,}|[a-z]{3,}")


def _wordy(body: str) -> bool:
    """Mostly words: separated (``meta-llama/Meta-Llama-3-8B-Instruct``) or camel-cased (``ResNet50ImageNet1K``)."""
    if sum(map(len, _CAMEL_WORD.findall(body))) >= 0.65 * len(body):
        return True
    segments = re.split(r"[/_.+-]", body)
    if len(segments) < 2:
        return False
    wordy = sum(len(s) for s in segments if _wordish(s))
    return wordy >= 0.75 * sum(len(s) for s in segments)


def _wordish(segment: str) -> bool:
    """A word, camel-cased words, a run of capitals (``LM``), each with a number after it (``patch16``, ``Llama3B``),
    or a short number with a unit or a version (``8B``, ``v0``)."""
    if _SHORT_WORDISH.fullmatch(segment):
        return True
    digit = _DIGIT.search(segment)
    if digit is None:
        return _in_words(segment)
    at = digit.start()
    cuts = (at, at - 1) if at > 1 and segment[at - 1].isupper() else (at,)
    return any(cut and _WORD_TAIL.fullmatch(segment, cut) and _in_words(segment[:cut]) for cut in cuts)


def _in_words(letters: str) -> bool:
    """Whether ASCII ``letters`` split into capitalised words, runs of 2-5 capitals and lower-case runs of 2 or more:
    run by run, a run of k capitals followed by m lower-case letters splits unless k = 1 and m = 0 (a lone capital),
    or k = 2 and m = 1 ("ABc": neither "AB" + "c" nor "A" + "Bc"); a text that starts in lower case needs 2."""
    if not (letters.isascii() and letters.isalpha()):
        return False
    runs = _CASE_RUNS.findall(letters)
    if runs[0].islower():
        if len(runs[0]) < 2:
            return False
        runs = runs[1:]
    for i in range(0, len(runs), 2):
        capitals, lower = len(runs[i]), len(runs[i + 1]) if i + 1 < len(runs) else 0
        if (capitals == 1 and lower == 0) or (capitals == 2 and lower == 1):
            return False
    return True


def looks_random(text: str) -> bool:
    """Random base64/url-safe text: all three classes, high entropy, class changes like noise (not words)."""
    body = text.rstrip("=")
    if not (any(c.isdigit() for c in body) and any(c.isupper() for c in body) and any(c.islower() for c in body)):
        return False
    if _wordy(body):
        return False  # words joined by separators: a path, a model name, a class name
    changes = sum(_class(a) != _class(b) for a, b in itertools.pairwise(body)) / (len(body) - 1)
    return changes >= 0.4 and shannon(body) >= (3.9 if len(body) < 32 else 4.2)


def _before(text: str, start: int, width: int = 32) -> str:
    return text[max(0, start - width) : start]


def _valid_card(match: str, text: str, start: int) -> bool:
    digits = re.sub(r"[ -]", "", match)
    if not (13 <= len(digits) <= 19 and luhn_ok(digits) and _card_prefix(digits)):
        return False
    if _inside_hex_id(text, start, start + len(match)):
        return False  # a UUID's or a trace id's digits, even beside a card word: 1 random UUID in 1,300 held one
    context = text[max(0, start - 40) : start + len(match) + 20]
    if _CARD_WORDS.search(context):
        return True
    if digits != match:
        return True  # grouped like a card on a receipt
    words = re.findall(r"[a-z]+", _before(text, start, 24).lower())
    return not (words and words[-1] in _ID_WORDS)


def without_hex_ids(text: str) -> str:
    """``text`` with each hex identifier (a UUID, a trace or span id, a SHA: a run of 16 or more hex digits,
    dashes allowed, with a letter among them) blanked by as many spaces: where cards and phone numbers are
    looked for (the phone library costs 40-50 µs on a UUID's digit groups)."""
    if "-" not in text and len(text) < 16:
        return text
    return _HEX_RUN.sub(_blank_hex_id, text)


def _blank_hex_id(match: re.Match[str]) -> str:
    token = match.group(0)
    core = token.replace("-", "")
    return " " * len(token) if len(core) >= 16 and not core.isdigit() else token


_BLANKED = threading.local()  # a thread's last text and its hex identifiers blanked (a sender and callers scrub)


def _inside_hex_id(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] (a match, no spaces in it) lies in a hex identifier :func:`without_hex_ids` blanks.
    Blanked once a text: for each candidate, "4111111111111111 " * 10,000 cost 34 s (a review)."""
    last = getattr(_BLANKED, "last", None)
    if last is None or last[0] is not text:
        last = _BLANKED.last = (text, without_hex_ids(text))
    return bool(last[1][start:end].isspace())


def _card_prefix(d: str) -> bool:
    two, four = int(d[:2]), int(d[:4])
    return (
        d[0] == "4"
        or 51 <= two <= 55
        or 2221 <= four <= 2720
        or two in (34, 37, 36, 38, 62, 65)
        or d[:4] == "6011"
        or 644 <= int(d[:3]) <= 649
        or 300 <= int(d[:3]) <= 305
        or 3528 <= four <= 3589
        or two in (50, 56, 57, 58, 63, 67)
    )


def _valid_ipv4(match: str, text: str, start: int) -> bool:
    after = text[start + len(match) : start + len(match) + 2]
    if len(after) == 2 and after[0] in "-+~" and after[1].isalnum():
        return False  # 8.9.2.26-1: a package revision
    before = _before(text, start, 40)
    if re.search(r"(?:==|~=|>=|<=|!=)\s*$", before):
        return False  # a pinned version
    word = re.search(r"([A-Za-z][A-Za-z0-9]*)[\s=:_/-]*v?$", before)
    if word is None:
        return True
    name = word.group(1).lower()
    return name not in _VERSION_WORDS and name.rstrip("0123456789") not in _VERSION_WORDS


def _valid_ipv6(match: str, text: str, start: int) -> bool:
    import ipaddress

    if match.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", match):
        return False
    try:
        ipaddress.IPv6Address(match.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _valid_aws_secret(match: str, text: str, start: int) -> bool:
    # 40 random base64 characters mix cases and digits; git SHAs (lower hex) and words do not.
    return bool(re.search(r"[a-z]", match) and re.search(r"[A-Z]", match) and re.search(r"\d", match))


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26,
    "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(text: str) -> bool:
    """A country's IBAN length and the ISO 13616 mod-97 check."""
    iban = text.replace(" ", "")
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


def _valid_iban(match: str, text: str, start: int) -> bool:
    return iban_ok(match)


def _valid_ssn(match: str, text: str, start: int) -> bool:
    digits = re.sub(r"\D", "", match)[-9:]
    if digits[:3] in ("000", "666") or digits[0] == "9" or digits[3:5] == "00" or digits[5:] == "0000":
        return False
    return digits not in ("078051120", "219099999")  # famous advertising numbers, never issued to a person


_KEY_AT = re.compile(rf"{_KEY}|{_ABROAD}")
_SEPARATOR = re.compile(r"[:=：＝]>?|\s")  # (full-width: Chinese and Japanese text)


def _value_of(match: str) -> str:
    """The value part of a keyword assignment (after the first separator past its key word), unquoted."""
    key = _KEY_AT.match(match.lower())  # after "mot de passe", not inside it
    sep = _SEPARATOR.search(match, key.end() if key is not None and len(match) == len(match.lower()) else 0)
    value = match[sep.end() :] if sep else match
    return value.strip().strip("\"'")


# Secret words that name a secret even glued to a word before them (PGPASSWORD, dbpassword, APPSECRET,
# apitoken, JSESSIONID, PHPSESSID), where "pass" (compass, bypass) and "auth" (author) alone do not.
_GLUED = re.compile(r"passw(?:or)?[dt]|passphrase|secret|session_?id|sessid")
_TOKEN_PREFIXES = ("api", "auth", "access", "refresh", "bot", "hf", "csrf", "xsrf", "bearer")


def glued_secret(word: str) -> bool:
    """A one-word key (lower case) ending in a secret word glued to a prefix: ``pgpassword``, ``apitoken``."""
    word = word.rstrip("0123456789")
    if word.endswith("token"):
        return word[:-5] in _TOKEN_PREFIXES
    found = _GLUED.search(word)
    return found is not None and found.end() == len(word)


def _starts_word(match: str, text: str, start: int) -> bool:
    """The key starts a word or a camelCase part (``db_password``, ``dbPassword``; not ``compass``), or is a
    secret word glued to its prefix (``PGPASSWORD``, ``apitoken``)."""
    if start == 0 or match[0] == "-" or match[0] >= "\u2e80":  # Chinese, Japanese, Korean: no spaces between words
        return True
    before = text[start - 1]
    if not before.isalpha() or (before.islower() and match[0].isupper()):
        return True
    low = match.lower()
    if low.startswith("token"):
        return text[max(0, start - 7) : start].lower().endswith(_TOKEN_PREFIXES)
    return _GLUED.match(low) is not None


_PASSWORD_KEY = re.compile(rf"passw|pwd|passphrase|{_ABROAD}")
# Key words that name a secret and nothing else: their value goes however short ("password=ab", "api_key: k").
_SHORT_KEY = re.compile(
    r"passw|pwd|passphrase|passcode|secret|api|access|private|credential|session|sessid|key"
    rf"|{_ABROAD}"
)
# Words before "pin" that make it a core, a node or a memory pinning, not a PIN ("cpu_pin", "numa pin=0-7").
_HARDWARE = _words(
    "cpu cpus core cores numa gpu gpus thread threads irq gpio mem memory node nodes socket affinity worker workers "
    "loader dataloader page pages host dma io rank process proc task device version dep deps package pkg"
)


def hardware_pin(before: str) -> bool:
    """Whether the word before "pin" (lower case) makes it a pinning to hardware, not a PIN."""
    return before in _HARDWARE


def _word_before(text: str, start: int) -> str:
    """The word right before ``start`` in ``text`` (lower case), across "_", "-", "." or spaces."""
    found = re.search(r"([A-Za-z]+)[\s_.-]*$", text[max(0, start - 24) : start])
    return found.group(1).lower() if found else ""


_PIN_KEY = re.compile(r"(?<![a-z])pin(?:[_-]?code)?[\"']?\s*[:=]")
_PIN = re.compile(r"\d{4,12}")


def _valid_assignment(match: str, text: str, start: int) -> bool:
    """A keyword assignment's value is a secret; a Cookie header or a header pair told apart by their start."""
    if match[:7].lower() == "cookie:":
        if start and text[start - 1].isalnum():
            return False  # fortune_cookie: ...
        spans = secret_spans("secret_assignment", match)
        if spans is not None:
            return bool(spans)  # a header whose values are all redacted already is not found again
        return _valid_value(match, text, start) and secret_like(_value_of(match), "cookie")
    if match[0] in "[(":
        return _valid_pair(match, text, start)
    routed = _routed(match)
    if routed is not None:  # /reset-password/<token>: a token, not a word ("/token/refresh-all-sessions")
        value = routed.group("value")
        return _starts_word(match, text, start) and bool(re.search(r"\d", value) and re.search(r"[A-Za-z]", value))
    named = _named(match)
    if named is not None:  # {"name": "X-Api-Key", "value": "..."}: the value as after "key: "
        return _starts_word(match, text, start) and _valid_value(f"key: {named.group('value').strip(_QUOTES)}", "", 0)
    return _valid_value(match, text, start)


COOKIE_WHOLE = re.compile(_cookie("*"))  # a header whose value passed the pattern's 4,096, taken whole once accepted
_NAME_VALUE = re.compile(rf"{_KEY}{_NAME_THEN_VALUE}(?P<value>{_WHOLE_VALUE})", re.IGNORECASE)
_QUOTES = "\"'"
# A secret word as a route's segment before a token of 16+ characters ("/reset-password/8f3a9c2e1b4d7a6f5e4d"):
# a link's token is a credential while it lives.
_ROUTE_VALUE = re.compile(rf"{_KEY}/(?P<value>[\w-]{{16,}})", re.IGNORECASE)


def _routed(match: str) -> re.Match[str] | None:
    """The match read as a route's secret segment, or None (a substring test first: most matches have no "/")."""
    return _ROUTE_VALUE.match(match) if "/" in match else None


def _named(match: str) -> re.Match[str] | None:
    """The match read as a name and its value in a field of its own, or None (a substring test first)."""
    return _NAME_VALUE.match(match) if "value" in match.lower() else None


_COOKIE_PAIR = re.compile(r"([^\s=;,\"]+)[ \t]*=[ \t]*([^\s;\"]*)")
# What a Set-Cookie header sets beside its cookie: attributes, whose values (a path, a date) hold no secret. Kept
# after the first pair of any cookie header: the match starts at "cookie:" (an optional "set-" before it in the
# pattern cost 20% of the keyword pass on every text), and a cookie of one of these names is rare.
_COOKIE_ATTRIBUTES = _words("path domain expires max-age samesite priority")


def secret_spans(kind: str, match: str) -> list[tuple[int, int]] | None:
    """What of a match goes: None for all of it; for a Cookie header ("Cookie: theme=dark; sid=..."), the spans
    of its values not redacted yet (its cookie names stay: they tell which cookies came, and hold no secret); in
    prose, the value ("the password for admin is [REDACTED:...]")."""
    if kind != "secret_assignment":
        return None
    spans = _cookie_values(match) if match[:7].lower() == "cookie:" and "=" in match else None
    if spans is not None:
        return spans
    prose = _prose(match)
    if prose is not None:
        return [(prose.start("value"), prose.start("value") + len(prose.group("value").rstrip(_TRAILING)))]
    routed = _routed(match)
    if routed is not None:
        return [routed.span("value")]
    named = _named(match)
    if named is not None:  # the name stays: it tells which header or variable it was
        value = named.group("value")
        inner = len(value) - len(value.lstrip(_QUOTES))
        return [(named.start("value") + inner, named.end("value") - (len(value) - len(value.rstrip(_QUOTES))))]
    return None


def _cookie_values(match: str) -> list[tuple[int, int]] | None:
    """The spans of a Cookie header's values not redacted yet (see :func:`secret_spans`)."""
    pairs = list(_COOKIE_PAIR.finditer(match, 7))
    if not pairs or match[7 : pairs[0].start()].strip(" \t"):
        return None  # "cookie: banner ... a=b": no pair right after the colon, no header
    pairs = pairs[:1] + [p for p in pairs[1:] if p.group(1).lower() not in _COOKIE_ATTRIBUTES]
    return [pair.span(2) for pair in pairs if pair.group(2) and not pair.group(2).startswith("[REDACTED")]


# Prose ("cookie: consent dialog closed", "the password for admin is hunter2") tells its secret from the sentence's
# next word by its look: see :func:`secret_like`.
_PROSE_WORDS = _words(
    "correct incorrect always already currently strong stronger weak weaker unique similar shorter longer better "
    "either neither another within without before after because whatever something nothing anything everything "
    "there their these those second minimum maximum random plaintext cleartext blank stale wrong reset same"
)
_ENGLISH_END = re.compile(
    r"(?:ed|ing|ly|tion|sion|ment|ness|able|ible|ful|less|ive|ous|ent|ant|ance|ence|ary|ory|ure|ate|ise|ize|ic|al|est"
    r"|ity|ency|ancy|ism|ship|hood|logy)$"
)
_SHAPED = re.compile(r"\d|[!-,./:-@\[-^_`{-~]|[a-z][A-Z]")  # a digit, ASCII punctuation but "-", camelCase
_NUMBER = re.compile(r"[\d.,]+")
_TRAILING = ".,!?:;"  # the end of a sentence, not of the value
_PROSE_MATCH = re.compile(rf"(?P<key>{_KEY}){_PROSE}(?P<value>{_WHOLE_VALUE})")
# Words that follow "password is" or "password:" in a sentence ("password is too short", "password: must be at
# least 8 characters"), not in a password: 3+ letters (shorter words are no password in prose) and not already a
# status word, a word of _PROSE_WORDS or a word with an English ending.
_SENTENCE_WORDS = _words(
    "read left part ask use put done told known seen written found lost stolen chosen forgotten whatever "
    "the and but not now too also still very been are was were has had have does did can cannot could may might "
    "must should will would shall need needs here then than that this what which when where who why how its your "
    "our his her any all each every some more less most least only just even ever never over under below above "
    "into onto from with case easy hard short long same simple common empty fine safe secure insecure unsafe good "
    "bad old new one two three four five due set see sent used got gone kept held made shown given taken hidden "
    "stored saved visible mandatory complete incomplete obsolete unchanged different identical protected"
)
# ... and after "password:", short words too, German, French and Spanish ones ("Passwort: zu kurz").
_AFTER_COLON = _SENTENCE_WORDS | _words(
    "is be to in at on of by or if as an a no zu ist nicht muss falsch leer trop est pas doit vide debe"
)
# Words after a value that show a sentence going on ("the password is part of the payload", "... is read from the
# environment", "password is: ask the admin"): the value was a word of it.
_GOES_ON = re.compile(
    r"\s+(?:of|from|to|for|by|in|on|at|with|into|onto|the|a|an|as|than|when|if|after|before|until|via|through|every"
    r"|each|blank|empty|unset|instead|yet|again|already)\b",
    re.IGNORECASE,
)
# How sure a prose key word is that a password follows: "password", "passphrase" and "passcode" name nothing
# else; "pwd", "secret" and "pin" less so; "pass" is also a forward or a second pass.
_PASSWORD_ONLY = re.compile(r"passw|passphrase|passcode")
_PASSWORD_WORD = re.compile(r"pwd|secret|pin")
_UNIT = re.compile(r"\d[\d.,]*(?:x|ms|s|m|h|d|%|gb|mb|kb)")  # "2.5x faster", "10ms"


def _prose(match: str) -> re.Match[str] | None:
    """The match read as prose ("password for admin is ..."), or None where it is an assignment."""
    low = match.lower()
    if ("is" not in low and "was" not in low) or len(low) != len(match):
        return None  # (a character whose lower case is longer: the offsets would not be the match's)
    return _PROSE_MATCH.fullmatch(low)


def secret_like(value: str, key: str, after: str = "") -> bool:
    """Whether a value in prose is a secret, not a word of the sentence; ``key``: the key word (lower case).

    After "password", "passphrase" or "passcode", any value but a word of the sentence: a status word, a word on
    a list of English words ("too", "must", "incorrect", ...) or with an English ending (-ed, -ing, -ly, -tion,
    -able, -ent, -ic, -al, ...), or a word of under 3 letters, or a word the sentence goes on from (``after``, the
    text after the value, starts with "of", "from", "the", ...: "the password is part of the payload"). "the
    password is correcthorsebatterystaple" and "password is admin" go, "password is too short", "password was
    changed" stay. After "pwd", "secret" and
    "pin", a value with a digit, ASCII punctuation other than "-", or an inner capital (hunter2, p@ss, HunterTwo),
    or such a word of 6+ letters ("the secret is consistency" goes, "the secret was revealed" stays). After
    "pass", a value with a digit, punctuation or an inner capital that is no number with a unit ("the second pass
    was faster", "pass was 2.5x slower" stay). After the other words (token, api key, auth, cookie, credentials,
    session id) a value counts only with 8+ characters mixing letters and digits, or random: "the next token is
    London", "pad token is [PAD]" stay. A number counts only after a password word, from 4 digits ("pin was
    1234"; "token count is 512" stays).
    """
    word = value.rstrip(_TRAILING)
    low = word.lower()
    if low in STATUS_WORDS or low in _PROSE_WORDS or (word[:1], word[-1:]) in (("[", "]"), ("<", ">")):
        return False
    password, only = _PASSWORD_WORD.search(key) is not None, _PASSWORD_ONLY.search(key) is not None
    if _NUMBER.fullmatch(word):
        return (password or only) and sum(c.isdigit() for c in word) >= 4
    if _SHAPED.search(word):
        if key.startswith("pass") and not only:
            return len(word) >= 3 and not _UNIT.fullmatch(low)
        if password or only:
            return len(word) >= 3
    if only:
        sentence = low in _SENTENCE_WORDS or _ENGLISH_END.search(low) or _GOES_ON.match(after)
        return len(word) >= 3 and not sentence
    if password:
        return len(word) >= 6 and not _ENGLISH_END.search(low)
    letters, digits = any(c.isalpha() for c in word), any(c.isdigit() for c in word)
    return (len(word) >= 8 and letters and digits) or (len(word) >= 16 and looks_random(word))


# What stands for a secret without being one: an environment variable ($DB_PASS, ${DB_PASS}: one case), a template
# ({{ .Values.password }}, %(password)s, <your-password>), a mask (********, ****1234), a PEM header (the private key
# pattern's), a redaction token. Only whole values: "$ecretPa55", "***Hunter2", "-----x" are passwords (a prefix
# test let them through).
_PLACEHOLDER = re.compile(
    r"\$(?:[A-Z_][A-Z0-9_]*|[a-z_][a-z0-9_]*|\{[^{}\s]*\}?)|<[^<>]{1,64}>?|\{\{[^{}]*(?:\}\})?|%\([\w.-]+(?:\)[sdr]?)?"
    r"|\*+[\w-]{0,4}|-----BEGIN[\s\S]*|\[(?i:redacted)[\s\S]*"
)


_PLACEHOLDER_STARTS = frozenset("$<{%*-[")


def placeholder(value: str) -> bool:
    """Whether a key's value (quotes off) is a placeholder, a mask or a redaction token, not a secret."""
    return value[:1] in _PLACEHOLDER_STARTS and _PLACEHOLDER.fullmatch(value) is not None


def _valid_value(match: str, text: str, start: int) -> bool:
    if not _starts_word(match, text, start):
        return False
    prose = _prose(match)
    if prose is not None:
        after = text[start + prose.end("value") : start + prose.end("value") + 16]
        return _valid_prose(prose.group("key"), prose.group("value").strip("\"'"), text, start, after)
    value = _value_of(match)
    low = value.lower()
    if not value or low in STATUS_WORDS or placeholder(value):
        return False  # not a secret, a placeholder, or one already redacted
    if match.startswith("-p") and not match.startswith("-p-"):
        return _valid_dash_p(match, text, start)
    key = match[: len(match) - len(value)].lower()
    if _PIN_KEY.search(key):  # pin=1234; "pin: true", "cpu pin=0-7", "cpu_pin=1234" (cores) stay
        return _PIN.fullmatch(value) is not None and not hardware_pin(_word_before(text, start))
    if re.fullmatch(r"[\d.]{1,6}|\d+(?:\.\d+)?(?:ms|s|m|h|d|%)", value) and not _PASSWORD_KEY.search(key):
        return False  # auth: 30s, token: 512; a password of digits is still one (password=123456)
    if re.search(r"\bpwd\b", key) and value.startswith(("/", "~", ".")):
        return False  # $PWD is a directory
    if len(value) < 3 and not _SHORT_KEY.search(key) and not (re.search(r"\d", value) and re.search(r"[a-z]", low)):
        return False  # token=a (a tokenizer's token), pass: A; api_key: k1, password=ab, token=x1 go
    # "password: too short", "Error: password: must be at least 8 characters"
    return not (match[len(key) - 1] == " " and ":" in key and low in _AFTER_COLON)


def _valid_prose(key: str, value: str, text: str, start: int, after: str) -> bool:
    """A value in prose after ``key`` (lower case): a secret by its look, a PIN by its digits, not a directory;
    ``start``: where the match starts in ``text``, ``after``: the text after the value."""
    if placeholder(value.rstrip(_TRAILING)):
        return False
    if key.startswith("pin"):
        return _PIN.fullmatch(value.rstrip(_TRAILING)) is not None and not hardware_pin(_word_before(text, start))
    if key == "pwd" and value.startswith(("/", "~", ".")):
        return False  # "pwd is /home/bob": $PWD is a directory
    return secret_like(value, key, after)


_PAIR_VALUE = re.compile(r",\s*b?[\"'](.*)[\"']$")
_PAIR_KEY = re.compile(r"[\[(]\s*b?[\"']([\w.-]*)")
_KEY_RE = re.compile(_KEY)


def _valid_pair(match: str, text: str, start: int) -> bool:
    """``("authorization", "...")``: a value that is not a field name (``("password", "email")``), a status word
    or a placeholder."""
    head = _PAIR_KEY.match(match)
    word = _KEY_RE.search(head.group(1).lower()) if head else None
    if head is None or word is None:
        return False
    at = head.start(1) + word.start()
    if not _starts_word(match[at:], text, start + at):
        return False  # ("compass", "N 12"): the secret word must start the key's word, as in key=value
    found = _PAIR_VALUE.search(match)
    value = found.group(1) if found else ""
    return not re.fullmatch(r"[a-z_]*", value) and _valid_value(f"key: {value}", "", 0)


def _valid_dash_u(match: str, text: str, start: int) -> bool:
    """``user:password`` after ``--user``, or ``-u`` beside curl, wget or a URL; not ``docker run -u 1000:1000``."""
    password = match.split(":", 1)[1]
    if password.isdigit() or password.lower() in STATUS_WORDS:
        return False
    context = text[max(0, start - 60) : start + len(match) + 60].lower()
    return match.startswith("--") or bool(re.search(r"\bcurl\b|\bwget\b|\bhttpie?\b|https?://", context))


def _valid_dash_p(match: str, text: str, start: int) -> bool:
    if re.fullmatch(r"-p\s*\d{1,5}", match):
        return False  # a port (redis-cli -p 6379, ssh -p 2222)
    context = text[max(0, start - 60) : start + len(match) + 20].lower()
    return bool(re.search(r"pass|pwd|secret|token|mysql|mariadb|psql|redis-cli|mongo|sshpass|rabbitmq", context))


def _valid_email(match: str, text: str, start: int) -> bool:
    local = match.split("@", 1)[0]
    return local != "git"  # git@github.com:org/repo is an ssh remote, not a person


def _valid_url_credentials(match: str, text: str, start: int) -> bool:
    return match not in ("", "git")


def _valid_high_entropy(match: str, text: str, start: int) -> bool:
    return looks_random(match)


Validator = Callable[[str, str, int], bool]

VALIDATORS: dict[str, Validator] = {
    "card": _valid_card,
    "ipv4": _valid_ipv4,
    "ipv6": _valid_ipv6,
    "aws_secret_key": _valid_aws_secret,
    "iban": _valid_iban,
    "ssn": _valid_ssn,
    "secret_assignment": _valid_assignment,
    "user_password": _valid_dash_u,
    "email": _valid_email,
    "url_credentials": _valid_url_credentials,
    "high_entropy": _valid_high_entropy,
}
