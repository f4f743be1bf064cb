"""Trace context: which trace and span an event belongs to, carried in a ContextVar.

The idea follows OpenTelemetry: the current span lives in a :class:`contextvars.ContextVar`, so
threads and asyncio tasks each see their own; ``with client.span(...)`` pushes a child and pops
it on exit. Across processes the context travels as a W3C ``traceparent`` header
(``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``).

When OpenTelemetry is importable and one of its spans is current (and no aitrace span is), events
take that span's trace and span id, so aitrace events line up with an existing OTel trace.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from contextvars import ContextVar
from typing import Any, NamedTuple

TRACEPARENT = "traceparent"
_TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_ROOT_BITS = 1 << 64 | 1

# SystemRandom would cost a syscall per id; ids need uniqueness, not secrecy. Re-seeded after fork
# (see reseed) so a child never repeats its parent's ids.
_rng = random.Random()


class SpanContext(NamedTuple):
    """Identity of the current unit of work: trace, span, parent span, and whether it is remote.

    A named tuple rather than a frozen dataclass: one is built per span, and a frozen
    dataclass's ``__init__`` costs twice as much on the caller's thread.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    remote: bool = False


_CURRENT: ContextVar[SpanContext | None] = ContextVar("aitrace_span", default=None)


def new_trace_id() -> str:
    """A random, non-zero W3C trace id (32 lowercase hex)."""
    return f"{_rng.getrandbits(128) | 1:032x}"


_POOL = 256  # span ids drawn at once: one format call, then a slice each
SPAN_IDS: list[str] = []
"""Pooled span ids. ``SPAN_IDS.pop()`` is the caller's fast path (:meth:`Client.span` inlines it):
list.pop holds the GIL, so threads may take from it at once; one that finds it empty calls
:func:`new_span_id`. Refilled and cleared in place: the client binds ``pop`` once."""


def new_span_id() -> str:
    """A random, non-zero W3C span id (16 lowercase hex), taken from a pool drawn a few hundred at a time.

    One draw and one format for the pool cost less than a third of a draw and a format per id, on
    the caller's thread of every span. Two threads refilling at once each add their own draw.
    """
    try:
        return SPAN_IDS.pop()
    except IndexError:
        _refill()
        return SPAN_IDS.pop()


def _refill() -> None:
    # the draw's bytes as hex with a space every 8 bytes, then one split: a third of a slice per id
    ids = _rng.getrandbits(64 * _POOL).to_bytes(8 * _POOL, "big").hex(" ", 8).split(" ")
    if _ZERO_SPAN in ids:  # W3C forbids the all-zero id
        ids = [i if i != _ZERO_SPAN else "0000000000000001" for i in ids]
    SPAN_IDS.extend(ids)


def new_root() -> SpanContext:
    """A span context that starts a new trace: both ids from one draw of random bits."""
    # 192 bits: the high 128 are the trace id, the low 64 the span id; one bit in each keeps both non-zero.
    ids = f"{_rng.getrandbits(192) | _ROOT_BITS:048x}"
    return SpanContext(ids[:32], ids[32:])


def trace_id_for(name: str) -> str:
    """A stable trace id derived from a name (a run id): every process of one run shares it."""
    return hashlib.sha256(f"aitrace-run:{name}".encode()).hexdigest()[:32]


def reseed() -> None:
    """Fresh randomness for id generation (called in a forked child); the parent's pooled span ids are dropped."""
    _rng.seed()
    SPAN_IDS.clear()


def current() -> SpanContext | None:
    """The innermost aitrace span context of this thread / task, or the current OTel span's."""
    ctx = _CURRENT.get()
    if ctx is not None:
        return ctx
    return otel_current()


def otel_current() -> SpanContext | None:
    """The current OpenTelemetry span as a :class:`SpanContext`, if OTel is loaded and a valid span is current.

    OpenTelemetry is only consulted when some code already imported it: looking it up costs
    nothing for users who do not use it, and aitrace never imports it itself.
    """
    trace_mod = sys.modules.get("opentelemetry.trace")
    if trace_mod is None:
        return None
    try:
        span_ctx = trace_mod.get_current_span().get_span_context()
    except Exception:
        return None
    if not getattr(span_ctx, "is_valid", False):
        return None
    return SpanContext(f"{span_ctx.trace_id:032x}", f"{span_ctx.span_id:016x}", None, bool(span_ctx.is_remote))


def push(ctx: SpanContext) -> Any:
    """Make ``ctx`` current; returns the token for :func:`pop`."""
    return _CURRENT.set(ctx)


def pop(token: Any) -> None:
    """Restore the context that was current before :func:`push`."""
    _CURRENT.reset(token)


def format_traceparent(ctx: SpanContext, sampled: bool = True) -> str:
    """The W3C ``traceparent`` value for ``ctx``."""
    return f"00-{ctx.trace_id}-{ctx.span_id}-{'01' if sampled else '00'}"


def parse_traceparent(value: str | bytes | None) -> SpanContext | None:
    """Parse a ``traceparent`` header; None when it is absent or invalid (all-zero ids, version ff)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    match = _TRACEPARENT_RE.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, _flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return SpanContext(trace_id, span_id, None, remote=True)


def header_value(headers: Any, name: str = TRACEPARENT) -> Any:
    """Find a header in a dict (any case) or in a Kafka-style list of ``(key, value)`` pairs."""
    if headers is None:
        return None
    if isinstance(headers, str | bytes):
        raise TypeError("headers given as text, not as a mapping or a list of (key, value) pairs")
    items = headers.items() if hasattr(headers, "items") else headers
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            if isinstance(item, tuple | list) and item and str(item[0]).lower() == name:
                return item  # the header, malformed: no trace context reads from it (counted by the caller)
            continue  # a pair of no known shape: the headers after it may still hold the one looked for
        key, value = item
        key_text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key_text.lower() == name:
            return value
    return None
