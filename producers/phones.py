"""Phone numbers of any country in free text, through Google's numbering plans (``phonenumbers``).

:func:`find` returns the spans of valid numbers (leniency ``VALID``: the number exists in its
country's plan). It is only worth its cost (70-250 µs a call) on text where :func:`hint` sees
digits grouped the way phone numbers are written, so ordinary log lines never pay for it. A
bare run of digits counts only after a phone word: otherwise it is an id, a step, a count or a
timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Seven digits with a "+"/"(" in front or separators between (no "." here: floats never qualify).
_RUN = re.compile(r"\+?\(?\d(?:[ ()-]{0,2}\d){6,}")
_DATETIME = re.compile(r"\d{4}-\d\d-\d\d|\d{1,2}:\d\d(?::\d\d)?(?:[.,]\d+)?")
_WORDS = re.compile(r"(?i)phone|tel\b|mobile|cell|call|sms|whatsapp|fax|contact|dial|number|ring")


def hint(text: str) -> bool:
    """Worth asking phonenumbers: a ``+``/``00`` prefix or separators, or any seven digits after a phone word."""
    plain = _DATETIME.sub(" ", text)
    for match in _RUN.finditer(plain):
        run = match.group(0)
        if run[0] in "+(" or run.startswith("00") or re.search(r"\d[ ()-]", run):
            return True
        if _WORDS.search(plain[max(0, match.start() - 30) : match.start()]):
            return True
    return False


def find(text: str, regions: Iterable[str]) -> list[tuple[int, int]]:
    """Non-overlapping ``(start, end)`` spans of phone numbers, national formats read for ``regions``."""
    import phonenumbers  # imported on first use: most processes never see a phone number

    spans: dict[int, int] = {}
    for region in regions:
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            if _shaped(m.raw_string, text, m.start):
                spans[m.start] = max(spans.get(m.start, 0), m.end)
    out: list[tuple[int, int]] = []
    for start in sorted(spans):
        if not out or start >= out[-1][1]:
            out.append((start, spans[start]))
    return out


def _shaped(raw: str, text: str, start: int) -> bool:
    """A formatted number (``+``, ``00``, separators) or one a phone word announces."""
    if raw.startswith(("+", "00")) or re.search(r"[ ().-]", raw):
        return True
    return bool(_WORDS.search(text[max(0, start - 30) : start]))
