"""Forward alerts to a webhook: ``aitrace alerts --webhook URL``.

Each new or changed alert version is POSTed once as JSON. "Exactly once per alert version
as seen from the receiver" is built from three parts, because no network protocol gives it
on its own:

1. **At-least-once delivery.** A version is retried (exponential back-off with jitter,
   honouring ``Retry-After``) on network errors, timeouts, 408/425/429 and 5xx, and the
   Kafka offset is committed only after the receiver acknowledged it with a 2xx. A crash at
   any point therefore re-sends rather than loses.
2. **An idempotency key.** Every request carries ``Idempotency-Key: <alert_id>:<version>``
   (also in the body as ``idempotency_key``). A retry after a timeout, or a re-send after a
   crash between the acknowledgement and the bookkeeping, carries the same key, so the
   receiver can drop what it already has.
3. **Skipping what was delivered.** The last acknowledged version per ``alert_id`` is kept in
   a small append-only state file (:class:`aitrace.sinks.alert_ledger.VersionLedger`), written
   before the offset commit. A restart, a new consumer group, or the processors publishing
   a version twice never re-send a version the receiver acknowledged; versions older than
   the last delivered one are not sent either.

Requests go out one at a time, in the order of the topic, so the versions of one alert
(one partition, keyed by ``alert_id``) reach the receiver in order. The window left to
part 2 is small: a crash after the receiver answered but before the
state file line was written. An answer that says the receiver is set up wrong, not that this
alert is (3xx: a webhook that redirects a POST; 401, 403, 407: credentials; 404, 405: the URL),
stops the forwarder with an error *without* committing, as every later alert would meet it: it
counted each one rejected and committed it, and a receiver whose token expired lost them all
silently. Other 4xx answers are about this alert: not retried, counted as rejected, logged, and
the stream moves on. When ``max_attempts`` is set and exhausted, the forwarder stops with an
error *without* committing, so the next start tries that version again.
"""

from __future__ import annotations

import base64
import http.client
import logging
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from aitrace.sinks.alert_format import format_alert
from aitrace.sinks.alert_stream import Alert, StopStream

log = logging.getLogger("aitrace.alerts")

RETRYABLE_STATUS = frozenset({408, 425, 429})
MISCONFIGURED_STATUS = frozenset({401, 403, 404, 405, 407})  # and every 3xx (see the module's docstring)
USER_AGENT = "aitrace-alerts/0.1"
_MAX_RESPONSE_BYTES = 64 * 1024


class WebhookUnavailable(RuntimeError):
    """The receiver did not acknowledge an alert within ``max_attempts`` tries."""


class DeliveryInterrupted(StopStream):
    """A stop was requested while waiting to retry; the alert stays uncommitted."""


@dataclass
class WebhookStats:
    """Counters of a forwarder: deliveries, attempts, retries, and why attempts failed."""

    delivered: int = 0
    attempts: int = 0
    retries: int = 0
    rejected: Counter[int] = field(default_factory=Counter)  # HTTP status -> versions given up on
    failures: Counter[str] = field(default_factory=Counter)  # reason -> failed attempts

    def summary(self) -> str:
        parts = [f"{self.delivered} delivered", f"{self.attempts} request(s)", f"{self.retries} retried"]
        if self.rejected:
            codes = ", ".join(f"HTTP {code}: {n}" for code, n in sorted(self.rejected.items()))
            parts.append(f"{sum(self.rejected.values())} rejected ({codes})")
        if self.failures:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.failures.items()))
            parts.append(f"failed attempts: {reasons}")
        return ", ".join(parts)


@dataclass(frozen=True)
class _Outcome:
    """One attempt's result: ``status`` None for a network error; ``retry_after`` in seconds."""

    status: int | None
    reason: str  # short and stable: a counter key
    retry_after: float | None = None
    detail: str = ""  # what a person needs to fix it (never holds a secret)


def idempotency_key(alert: Alert) -> str:
    """``<alert_id>:<version>``: the same for every re-send of one alert version."""
    return f"{alert['alert_id']}:{alert['version']}"


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body: every ``aitrace.Alert`` field as is (times in epoch µs), plus readable extras."""
    body = dict(alert)
    body["idempotency_key"] = idempotency_key(alert)
    body["first_seen_iso"] = _iso(alert.get("first_seen"))
    body["last_seen_iso"] = _iso(alert.get("last_seen"))
    body["summary"] = format_alert(alert)
    return body


def _iso(micros: int | None) -> str | None:
    """ISO 8601 of epoch microseconds; None where there is none, or where it is past any date (a record any
    client can write: it ended the forwarder, and every restart on the same uncommitted record)."""
    if micros is None:
        return None
    try:
        return datetime.fromtimestamp(micros / 1e6, UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # ("²".isdigit(): float() refused it with a traceback)
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """``http://u:p@host/x`` -> (``http://host/x``, ``"u:p"``), percent-decoded."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), urllib.parse.unquote(userinfo)


def safe_url(url: str) -> str:
    """The URL without ``user:password@`` and without a query string (tokens live there)."""
    return re.sub(r"//[^/@]*@", "//***@", url).split("?", 1)[0]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect surfaces as an HTTPError with its 3xx status


class WebhookForwarder:
    """A handler for :meth:`AlertStream.run` that POSTs each alert version to ``url``.

    Returns once the receiver acknowledged (2xx) or permanently refused (other 4xx) the
    version; raises :class:`WebhookUnavailable` after ``max_attempts`` failed tries (None:
    keep trying), or :class:`DeliveryInterrupted` when ``stop`` is set while it waits.
    ``sleep`` (a wait that returns True when interrupted) is replaceable for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        max_attempts: int | None = None,
        backoff: float = 0.5,
        backoff_max: float = 60.0,
        retry_after_max: float = 600.0,
        stop: threading.Event | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {safe_url(url)!r}")
        self.url, userinfo = _split_userinfo(url)
        self.headers = dict(headers or {})
        if userinfo is not None:  # urllib does not read user:password@ from a URL itself
            self.headers.setdefault("Authorization", "Basic " + base64.b64encode(userinfo.encode()).decode())
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.stop = stop or threading.Event()
        self._sleep = sleep or self.stop.wait
        self.stats = WebhookStats()
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __call__(self, alert: Alert) -> bool:
        """Deliver one alert version; True when acknowledged, False when refused for good."""
        body = orjson.dumps(alert_payload(alert))
        key = idempotency_key(alert)
        attempt = 0
        while True:
            attempt += 1
            outcome = self._post(body, key, alert)
            if outcome.status is not None and 200 <= outcome.status < 300:
                self.stats.delivered += 1
                return True
            if outcome.status is not None and (outcome.status in MISCONFIGURED_STATUS or 300 <= outcome.status < 400):
                self.stats.failures[outcome.reason] += 1
                raise WebhookUnavailable(
                    f"webhook {safe_url(self.url)} answered {outcome.reason} for {key}: the receiver's URL, "
                    "redirect or credentials (--header) need fixing; nothing after it was committed"
                )
            if not self._retryable(outcome):
                self.stats.rejected[outcome.status or 0] += 1
                log.warning("webhook refused %s (%s); not retried", key, outcome.reason)
                return False
            self.stats.failures[outcome.reason] += 1
            if self.max_attempts is not None and attempt >= self.max_attempts:
                detail = f" ({outcome.detail})" if outcome.detail else ""
                raise WebhookUnavailable(
                    f"webhook {safe_url(self.url)} did not accept {key} after {attempt} attempt(s): "
                    f"{outcome.reason}{detail}"
                )
            delay = self._delay(attempt, outcome.retry_after)
            log.warning(
                "webhook attempt %d for %s failed (%s); retrying in %.2f s", attempt, key, outcome.reason, delay
            )
            self.stats.retries += 1
            if self._sleep(delay) or self.stop.is_set():
                raise DeliveryInterrupted(f"stopped while retrying {key}")

    def _post(self, body: bytes, key: str, alert: Alert) -> _Outcome:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": key,
            "X-Aitrace-Alert-Id": str(alert["alert_id"]),
            "X-Aitrace-Alert-Version": str(alert["version"]),
            **self.headers,
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        self.stats.attempts += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                self._drain(resp)
                return _Outcome(resp.status, f"HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            with exc:
                retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                return _Outcome(exc.code, f"HTTP {exc.code}", retry_after)
        except urllib.error.URLError as exc:
            return _network_outcome(exc.reason)
        except (OSError, http.client.HTTPException) as exc:
            # Dropped connections surface as RemoteDisconnected / ConnectionResetError / timeouts.
            return _network_outcome(exc)

    def _drain(self, resp: http.client.HTTPResponse) -> None:
        """Read the answer's body so the connection closes cleanly, for ``timeout`` seconds in all: the socket's
        timeout is per read, and a receiver trickling a byte a second held the forwarder for good."""
        deadline, left = time.monotonic() + self.timeout, _MAX_RESPONSE_BYTES
        while left > 0 and time.monotonic() < deadline:
            chunk = resp.read1(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)

    @staticmethod
    def _retryable(outcome: _Outcome) -> bool:
        return outcome.status is None or outcome.status in RETRYABLE_STATUS or outcome.status >= 500

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff * 2 ** min(attempt - 1, 64))  # (2**1024: a float overflow)
        return ceiling * (0.5 + random.random() / 2)  # jitter: many forwarders do not retry in step


def _network_outcome(exc: object) -> _Outcome:
    if isinstance(exc, BaseException):
        return _Outcome(None, type(exc).__name__, detail=str(exc))
    return _Outcome(None, str(exc))


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token: a field name
_FRAMING = frozenset({"content-length", "transfer-encoding"})  # (Host reaches a receiver behind an ingress)


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def parse_headers(specs: list[str]) -> dict[str, str]:
    """``["Authorization: Bearer x"]`` -> ``{"Authorization": "Bearer x"}``; ValueError on a bad one."""
    headers: dict[str, str] = {}
    for spec in specs:
        name, sep, value = spec.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _TOKEN.fullmatch(name):
            raise ValueError(f"header {name or spec!r} is not of the form 'Name: value' (a name of letters, digits, -)")
        if not value.isprintable() or not _latin1(value):  # CR/LF would add headers
            raise ValueError(f"header {name}: its value must be printable Latin-1 (what HTTP/1.1 sends)")
        if name.lower() in _FRAMING:
            raise ValueError(f"header {name} is the request's own (it framed the body: a delivery of half an alert)")
        headers[name] = value
    return headers


__all__ = [
    "DeliveryInterrupted",
    "WebhookForwarder",
    "WebhookStats",
    "WebhookUnavailable",
    "alert_payload",
    "idempotency_key",
    "parse_headers",
    "parse_retry_after",
    "safe_url",
]
