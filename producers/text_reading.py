"""Text as a reader (or a URL decoder) sees it, for the redactor to scan: :func:`plain_variant` undoes what
hides a key word from a pattern but not from a person (full-width and look-alike letters, invisible and tag
characters, percent-encoding, the escapes of a bytes repr or of JSON held in a JSON string), and
:func:`latin_reading` reads a field name's Cyrillic and Greek look-alikes as Latin.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from typing import Any

from aitrace.producers.secret_patterns import KV_ANY, LITERALS

# Characters a reader does not see (zero-width, bidi controls, soft hyphen, variation selectors, fillers): they can
# split a key word or a token so no pattern matches ("pass\u200bword=...") while the text reads the same.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f"
    "\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd]"  # prepended marks: nothing shown in Latin
)
# Combining marks left on a Latin letter after NFKC (which composes the accents of French or Vietnamese text), such as
# overlays ("pass\u0336word") or a mark no letter precomposes with: a reader still reads the word under them. Taken
# off where that shows a key word (:func:`_unmarked`).
_MARKS_ON_LATIN = re.compile("([A-Za-z])[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
# Controls (C0 but tab and line breaks, DEL, C1), interlinear annotation marks and musical formatting characters show
# nothing either, and are no letters: one inside a key word hides it from every pattern ("pass\x00word=..."). Removed,
# they glue the words of a key ("secret\x1fkey", "set\x00cookie") and the fields of a protocol that separates with
# them (FIX's SOH) into runs no pattern was written for; read as a space, the key word stays split. So the redactor
# reads such a text both ways (:func:`control_readings`) and keeps what either shows where a control hid it.
_CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufff9-\ufffb\U0001d173-\U0001d17a"
CONTROLS = re.compile(f"[{_CONTROL_CHARS}]+")
_CONTROL_POINTS = (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0), *range(0xFFF9, 0xFFFC),
                   *range(0x1D173, 0x1D17B))  # fmt: skip
_AS_SPACE = dict.fromkeys(_CONTROL_POINTS, " ")
_AS_NOTHING = dict.fromkeys(_CONTROL_POINTS)
# Where a control can hide something: between two letters or digits (not two digits: FIX's "1080\x0149" joins two
# numbers, not a word), or between one and a key's "=", ":" or quote ("password\x00=...").
_HIDING = re.compile(
    f"(?:[^\\W\\d]|\\d(?=[{_CONTROL_CHARS}]+[^\\W\\d]))[{_CONTROL_CHARS}]+[\\w=:\"']"
    f"|[=:\"'][{_CONTROL_CHARS}]+\\w|\\d[{_CONTROL_CHARS}]+[=:\"']"
)
# A text cut at a size limit ends inside its last token unless it ends at one of these: what cannot be part of a key,
# a password, an e-mail or an id (letters, digits, "_-.+/=:@%" and the rest can). See :func:`without_cut_token`.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.+/=:%~]*")  # what a key, token or URL is made of (non-ASCII text is not)
# Unicode tag characters mirror ASCII invisibly (the "ASCII smuggling" of prompt injections): read as their ASCII.
_TAGS = {c: c - 0xE0000 for c in range(0xE0020, 0xE007F)}
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# Cyrillic and Greek letters a reader takes for Latin ones ("p\u0430ssw\u043erd" with a Cyrillic a and o): read as
# those where that shows a key word or a provider's prefix more (:func:`_folded`), so a key word spelt with them
# is still one. A text where the folded reading shows a secret is indexed in that reading, as a full-width one is
# in NFKC. Russian or Greek text shows none and pays one search (1.3 µs on a line of 40 characters, where
# str.translate costs 3 µs and a second scan 5-9 µs): a look-alike beside a Latin letter, "_", "=", or before a
# ":" (a key word spelt with them has one: "t\u043eken", "ΤΟΚΕΝ: ..."). A field name is read as Latin whole
# (:func:`latin_reading`): it is looked at once.
_CONFUSABLES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u0501\u051b\u051d\u04bb\u04cf\u043a"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0423\u0425\u0406\u0408\u0405\u051a\u051c"
    "\u03b1\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
    "aeopcyxijsdqwhlk" "ABEKMHOPCTYXIJSQW" "aeikvoptux" "ABEZHIKMNOPTYX",
)  # fmt: skip
_LOOK_ALIKES = "".join(map(chr, _CONFUSABLES))
# ... or a word of 3+ look-alikes only before a quote, "=" or ":", spaces allowed ('{"АРІКЕУ": ...}', "РАЅЅ = ..."
# in Cyrillic): the regex finds 3 before one (group "word"), :func:`_folded` asks that they start a word (a
# lookbehind for it cost Greek and Russian lines 1 µs more).
_BESIDE_LATIN = re.compile(
    f"[A-Za-z_=][{_LOOK_ALIKES}]|[{_LOOK_ALIKES}](?:[A-Za-z_=:]|(?P<word>[{_LOOK_ALIKES}]{{2}})\\s*[=:\"'])"
)


def plain_variant(text: str, keywords: bool | None = None) -> str | None:
    """``text`` as a reader or a URL decoder sees it, or None when that is ``text`` itself.

    Non-ASCII text: tag characters read as ASCII, NFKC (full-width and other compatibility letters become
    ASCII: "ｐａｓｓｗｏｒｄ＝..."), invisible characters removed, Cyrillic and Greek look-alikes read as the
    Latin letters they look like. Percent-encoded text decoded (twice at most:
    "next=%2Flogin%3Fpassword%3D..."). Escapes read as what they stand for: a bytes repr's UTF-8
    ("b'p\\xd0\\xb0ssword=...'"), JSON's "\\u0430", and the quotes of JSON held in a JSON string
    ('{\\"password\\": \\"...\\"}', up to three levels deep) where a key word is in it: ``keywords`` when the
    caller knows (the keyword trigger fired on ``text``), else looked for. ASCII text without an escape costs four
    C calls.
    """
    out = text
    if "\\x" in out or "\\u" in out:
        out = _ESCAPES.sub(_unescaped, out)
    if not out.isascii():
        out = _unmarked(_folded(_INVISIBLE.sub("", unicodedata.normalize("NFKC", out.translate(_TAGS)))))
    # Quotes matter to the keyword patterns only: other escaped JSON is not scanned twice (2.5x the cost).
    quotes = '\\"' in out and (keywords if keywords is not None and out == text else KV_ANY.search(out.lower()))
    for _ in range(3 if quotes else 0):
        if '\\"' not in out:
            break
        out = out.replace('\\"', '"')
    if "%" in out and _PERCENT.search(out):
        for _ in range(2):
            decoded = urllib.parse.unquote(out)
            if decoded == out:
                break
            out = decoded
    return None if out == text else out


_ESCAPES = re.compile(r"(?:\\x[0-9A-Fa-f]{2})+|\\u[0-9A-Fa-f]{4}")


def _unescaped(found: re.Match[str]) -> str:
    """A run of ``\\xNN`` escapes as the UTF-8 text it encodes (kept where it is none), or a ``\\uNNNN`` escape's
    character."""
    escapes = found.group(0)
    if escapes[1] == "u":
        code = int(escapes[2:], 16)
        return escapes if 0xD800 <= code <= 0xDFFF else chr(code)  # half a surrogate pair: no text to encode
    try:
        return bytes.fromhex(escapes.replace("\\x", "")).decode()
    except UnicodeDecodeError:
        return escapes


def latin_reading(text: str) -> str:
    """``text`` with every Cyrillic and Greek look-alike read as the Latin letter it looks like."""
    return text if text.isascii() else text.translate(_CONFUSABLES)


def _beside_latin(found: re.Match[str], text: str) -> bool:
    """A look-alike beside a Latin letter, "_", "=" or ":", or a word of look-alikes only (see _BESIDE_LATIN)."""
    if found.lastgroup != "word":
        return True
    start = found.start()
    while start and text[start - 1] in _LOOK_ALIKES:
        start -= 1
    return start == 0 or not text[start - 1].isalnum()


def _folded(text: str) -> str:
    """``text`` with its Cyrillic and Greek look-alikes read as Latin, where that shows more key words or provider
    prefixes ("t\u043eken", "\u0455k-proj-..."); else ``text``."""
    found = _BESIDE_LATIN.search(text)
    while found is not None and not _beside_latin(found, text):
        found = _BESIDE_LATIN.search(text, found.start() + 1)
    if found is None:
        return text
    folded = text.translate(_CONFUSABLES)
    before = len(KV_ANY.findall(text.lower())) + len(LITERALS.findall(text))
    return folded if len(KV_ANY.findall(folded.lower())) + len(LITERALS.findall(folded)) > before else text


def _unmarked(text: str) -> str:
    """``text`` (NFKC) with the combining marks left on its Latin letters taken off, where that shows a key word
    ("pass\u0336word"); else ``text``: one regex search."""
    if _MARKS_ON_LATIN.search(text) is None:  # (a lookbehind at every character cost Russian lines 1 us)
        return text
    bare = _MARKS_ON_LATIN.sub(r"\1", text)
    return bare if KV_ANY.search(bare.lower()) else text


def without_cut_token(text: str) -> str:
    """A text cut at a size limit, less the token the cut went through (its trailing run of characters that can be
    part of a token, ASCII letters, digits and ``_-.+/=:%~``): ``... ghp_ABCDEFGH`` was the head of a key, too short
    for its pattern, and went out as it was. Nothing when it is one token; text in other scripts keeps its head."""
    tail = _TOKEN_CHARS.match(text[::-1])  # matched on the reversed text: one pass, no backtracking
    return text[: len(text) - tail.end()] if tail is not None else text


# The bytes of C0 controls (but tab and line breaks) and DEL, and every other byte (to delete them); the UTF-8 of the
# other controls (C1 U+0080-U+009F, U+FFF9-U+FFFB, U+1D173-U+1D17A), and what each starts with.
_C0_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_NOT_C0_BYTES = bytes(b for b in range(256) if b not in _C0_BYTES)
_OTHER_CONTROL_BYTES = re.compile(rb"\xc2[\x80-\x9f]|\xef\xbf[\xb9-\xbb]|\xf0\x9d\x85[\xb3-\xba]")
_OTHER_CONTROL_LEADS = (b"\xc2", b"\xef\xbf", b"\xf0\x9d\x85")


def has_controls(text: str) -> bool:
    """Whether ``text`` holds a control character of :data:`CONTROLS`. One C call for text without a tab, a line break
    or anything else not printable (``isprintable``); else its UTF-8 looked at in C loops (a regex over the text, ~20
    ns a character, cost a block's column of 1,000 request ids 0.8 ms)."""
    if text.isprintable():
        return False
    raw = text.encode("utf-8", "surrogatepass")
    if raw.translate(None, _NOT_C0_BYTES):
        return True
    if text.isascii():
        return False
    return any(lead in raw for lead in _OTHER_CONTROL_LEADS) and _OTHER_CONTROL_BYTES.search(raw) is not None


def hides_in_controls(text: str) -> bool:
    """Whether a control character (see :data:`CONTROLS`) sits where it could hide a key word or an assignment: a
    regex search only where :func:`has_controls`."""
    return has_controls(text) and _HIDING.search(text) is not None


def hiding_control(text: str) -> bool:
    """Whether ``text`` (a match in a reading without controls, mapped back) holds a control where it hides."""
    return _HIDING.search(text) is not None


def control_readings(text: str) -> tuple[str, str, Any]:
    """``text`` with each control read as a space (the same offsets), with the controls removed, and for each
    character of the latter its offset in ``text`` (an array). In C loops: a regex substitution per control and a
    list of every offset cost 1.2 s on 1 MB of NUL-separated words (the scan itself: 22 ms). numpy only here, for
    the few texts a control could hide something in: the client imports without it."""
    import numpy as np

    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    kept = np.flatnonzero(~np.isin(points, np.asarray(_CONTROL_POINTS, dtype=np.uint32)))
    return text.translate(_AS_SPACE), text.translate(_AS_NOTHING), kept


# A terminal's escape sequences (ECMA-48), which it does not show: CSI (ESC "[", parameters, a final byte: colours,
# bold, cursor moves), OSC (ESC "]" ... BEL or ESC "\\": titles, rich's hyperlinks), charset designations (tput
# sgr0's ESC "(B") and cursor saves. structlog's ConsoleRenderer(colors=True) wraps each key in them
# ("\x1b[36mpassword\x1b[0m="), rich's highlighter each number ("password: \x1b[1;36m48291377"): the terminal shows
# "password=...", no pattern saw it, and a value pattern stopped at the ";" of a code. Only 7-bit forms: the C1 bytes
# of the 8-bit ones (0x9b, 0x9d) are what UTF-8 text decoded as Latin-1 holds, and read as codes they ate its
# letters. Only the common forms, whose bytes no key or value needs: parameters of 3 or 4 digits (no card number is
# a code), ";" and "?" ("\x1b=", a keypad mode, is left: the "=" of an assignment). A match starts only at an escape
# and stops at the first character no sequence holds (an OSC at a line's end): one pass.
_SGR = re.compile("\x1b\\[\\d{0,3}(?:[;:]\\d{0,3}){0,31}m")
_TERMINAL_CODES = re.compile(
    "\x1b\\[\\??\\d{0,4}(?:;\\d{0,4}){0,3}[A-HJKSTfhlsu]|\x1b\\](?P<osc>[^\x07\x1b\n]*)(?:\x07|\x1b\\\\)|\x1b[()][AB0-2]|\x1b[78]"
)


def terminal_reading(text: str) -> str:
    """``text`` as a terminal shows it, for the redactor: its codes taken out (colour codes in one C loop), and the
    payloads of its OSC sequences (a title, a hyperlink's URL), which the terminal hides but the index would hold,
    each on a line of its own after it. A code read as a boundary instead made rich's highlighted versions
    (``cudnn_\\x1b[1;92m8.9.2.26``) IP addresses and, beside a link's text, a card number part of another."""
    shown = _SGR.sub("", text)
    if "\x1b" not in shown:
        return shown
    payloads: list[str] = []

    def hidden(found: re.Match[str]) -> str:
        payload = found.group("osc")
        if payload and payload != "8;;":  # (a hyperlink's end holds nothing)
            payloads.append(payload)
        return ""

    shown = _TERMINAL_CODES.sub(hidden, shown)
    return "\n".join([shown, *payloads])


def has_escapes(text: str) -> bool:
    """Whether ``text`` may hold a terminal's escape sequence."""
    return "\x1b" in text
