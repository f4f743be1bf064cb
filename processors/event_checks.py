"""The checks of :mod:`aitrace.processors.decode` on a batch of single events, in one Numba pass over the
token walk's slots (:mod:`aitrace.processors.event_columns`).

Checked per event: W3C trace, span and parent span ids, the time range, a non-empty event id and
service; of an inference record a non-empty request id and model name, a known status, a latency
that is not negative or NaN; of a span a non-empty name, a duration not negative, a start and an
end in the time range. The same checks as event by event, on the ASCII bytes the strings are made of (the
caller takes ASCII records only). A log's level is checked by the caller (a few distinct levels,
lower-cased as Python does). False for any other payload kind: the caller goes event by event.
"""

from __future__ import annotations

import numpy as np
from aitrace.detect import _cache  # noqa: F401  (Numba cache dir, set before any @njit)
from numba import njit

_ZERO, _NINE, _A, _F = ord("0"), ord("9"), ord("a"), ord("f")


@njit(cache=True)
def _hex_id(buf: np.ndarray, start: int, end: int, digits: int) -> bool:  # pragma: no cover - jitted
    """``digits`` lowercase hex digits, not all zero."""
    if end - start != digits:
        return False
    zero = True
    for k in range(start, end):
        b = buf[k]
        if not ((_ZERO <= b <= _NINE) or (_A <= b <= _F)):
            return False
        zero = zero and b == _ZERO
    return not zero


@njit(cache=True)
def _one_of(buf: np.ndarray, start: int, end: int, words: np.ndarray, bounds: np.ndarray) -> bool:  # pragma: no cover
    """Whether buf[start:end] is one of the words (``words[bounds[w]:bounds[w + 1]]``)."""
    for w in range(bounds.shape[0] - 1):
        a, b = bounds[w], bounds[w + 1]
        if b - a == end - start:
            same = True
            for k in range(b - a):
                if buf[start + k] != words[a + k]:
                    same = False
                    break
            if same:
                return True
    return False


@njit(cache=True)
def _valid(
    buf: np.ndarray,
    tok: np.ndarray,
    doubles: np.ndarray,
    env: np.ndarray,
    kinds: np.ndarray,
    inference: np.ndarray,
    span: np.ndarray,
    words: np.ndarray,
    bounds: np.ndarray,
    times: np.ndarray,
) -> bool:  # pragma: no cover - jitted
    """Every event (a row of ``tok``) passes. ``env``: slots of event id, time, trace id, span id, parent,
    service, payload branch; ``kinds``: branches of inference, log, span; ``inference``: slots of request
    id, model name, status, latency; ``span``: of name, start, duration; ``times``: the time range."""
    for i in range(tok.shape[0]):
        r = tok[i]
        if r[env[1]] < times[0] or r[env[1]] > times[1]:
            return False
        if r[env[0] + 1] <= r[env[0]] or r[env[5] + 1] <= r[env[5]]:
            return False
        if not _hex_id(buf, r[env[2]], r[env[2] + 1], 32) or not _hex_id(buf, r[env[3]], r[env[3] + 1], 16):
            return False
        if r[env[4]] >= 0 and not _hex_id(buf, r[env[4]], r[env[4] + 1], 16):
            return False
        kind = r[env[6]]
        if kind == kinds[0]:
            if r[inference[0] + 1] <= r[inference[0]] or r[inference[1] + 1] <= r[inference[1]]:
                return False
            if not _one_of(buf, r[inference[2]], r[inference[2] + 1], words, bounds):
                return False
            if not doubles[r[inference[3]]] >= 0:  # NaN fails too
                return False
        elif kind == kinds[2]:
            if r[span[0] + 1] <= r[span[0]] or r[span[2]] < 0:
                return False
            if r[span[1]] < times[0] or r[span[1]] > times[1] or r[span[2]] > times[1] - r[span[1]]:
                return False  # start and end in the time range (the end without int64 overflow)
        elif kind != kinds[1]:
            return False
    return True


def valid(
    buf: np.ndarray,
    tok: np.ndarray,
    doubles: np.ndarray,
    slots: dict[str, int],
    kinds: tuple[int, int, int],
    statuses: frozenset[str],
    times: tuple[int, int],
) -> bool:
    """Whether every event passes the checks above (``slots``: the layout's token slot by field name)."""
    env = [slots[k] for k in ("event_id", "time", "trace_id", "span_id", "parent_span_id", "service", "payload")]
    inference = [slots[f"aitrace.InferenceRecord.{k}"] for k in ("request_id", "model_name", "status", "latency_ms")]
    span = [slots[f"aitrace.Span.{k}"] for k in ("name", "start_time", "duration_us")]
    encoded = [s.encode() for s in sorted(statuses)]
    words = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    bounds = np.cumsum([0, *map(len, encoded)])
    if not len(doubles):  # an index into it is read for inference records only: none here then
        doubles = np.zeros(1)
    return bool(
        _valid(
            buf,
            tok,
            doubles,
            np.array(env, dtype=np.int64),
            np.array(kinds, dtype=np.int64),
            np.array(inference, dtype=np.int64),
            np.array(span, dtype=np.int64),
            words,
            bounds.astype(np.int64),
            np.array(times, dtype=np.int64),
        )
    )


@njit(cache=True)
def distinct(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct strings among buf[starts[i]:ends[i]]: each one's group (groups numbered in order of
    first appearance), each group's first row, and how many; -1 groups when there are more than ``most``."""
    n = starts.shape[0]
    group = np.empty(n, dtype=np.int64)
    first = np.empty(most, dtype=np.int64)
    k = 0
    for i in range(n):
        length = ends[i] - starts[i]
        found = -1
        for g in range(k):
            j = first[g]
            if ends[j] - starts[j] == length:
                same = True
                for m in range(length):
                    if buf[starts[i] + m] != buf[starts[j] + m]:
                        same = False
                        break
                if same:
                    found = g
                    break
        if found < 0:
            if k == most:
                return group, first, -1
            first[k] = i
            found = k
            k += 1
        group[i] = found
    return group, first, k


@njit(cache=True)
def equal_to(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, word: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Whether each buf[starts[i]:ends[i]] is ``word``."""
    out = np.zeros(starts.shape[0], dtype=np.bool_)
    for i in range(starts.shape[0]):
        if ends[i] - starts[i] == word.shape[0]:
            out[i] = True
            for m in range(word.shape[0]):
                if buf[starts[i] + m] != word[m]:
                    out[i] = False
                    break
    return out


@njit(cache=True)
def same_keys(buf: np.ndarray, x: np.ndarray, starts: np.ndarray, k: int) -> bool:  # pragma: no cover - jitted
    """Whether every row's map has the keys of the first row's, in its order (entries of ``k`` keys at
    ``x[starts[r] + 4 * j]``: key start, key end, value)."""
    for r in range(1, starts.shape[0]):
        for j in range(k):
            a, b = x[starts[0] + 4 * j], x[starts[0] + 4 * j + 1]
            c, d = x[starts[r] + 4 * j], x[starts[r] + 4 * j + 1]
            if d - c != b - a:
                return False
            for m in range(b - a):
                if buf[c + m] != buf[a + m]:
                    return False
    return True
