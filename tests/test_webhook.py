"""Webhook forwarding: retries, back-off, idempotency keys, no resend after a restart.

The receiver is a real HTTP server on 127.0.0.1 (``http.server`` in a thread) that follows a
script: fail the next requests with 500/429, drop the connection, refuse some keys with 400,
then accept. Alerts travel through a real Tansu broker.
"""

from __future__ import annotations

import base64
import calendar
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aitrace.sinks.alert_ledger import VersionLedger
from aitrace.sinks.alert_stream import AlertStream
from aitrace.sinks.webhook import (
    DeliveryInterrupted,
    WebhookForwarder,
    WebhookUnavailable,
    alert_payload,
    parse_headers,
    parse_retry_after,
)
from test_alerts import CLI_TIMEOUT, cli, create_topic, make_alert, produce, run_cli, settings_for


class Receiver:
    """A scripted webhook receiver. ``plan`` holds the answers to the next requests, in order
    (``"500"``, ``"503"``, ``"drop"``, ``"429:<retry-after>"``); after it, requests are accepted
    (200) except keys in ``refuse`` (400). Records every attempt and every accepted body."""

    def __init__(self) -> None:
        self.plan: list[str] = []
        self.refuse: set[str] = set()
        self.delay = 0.0  # seconds before answering an accepted request
        self.attempts: list[str] = []
        self.authorization: list[str | None] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                with receiver.lock:
                    receiver.attempts.append(key)
                    receiver.authorization.append(self.headers.get("Authorization"))
                    action = receiver.plan.pop(0) if receiver.plan else "ok"
                if action.startswith("slow:"):  # answer after the client gave up: it still counts
                    time.sleep(float(action.split(":", 1)[1]))
                    action = "ok"
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action.startswith("429"):
                    self.send_response(429)
                    self.send_header("Retry-After", action.split(":", 1)[1])
                elif action != "ok":
                    self.send_response(int(action))
                elif key in receiver.refuse:
                    self.send_response(400)
                else:
                    time.sleep(receiver.delay)
                    with receiver.lock:
                        receiver.accepted.append((key, json.loads(body)))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def keys(self) -> list[str]:
        with self.lock:
            return [key for key, _ in self.accepted]

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(set(self.keys())) < count and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


def _no_wait(delays: list[float]) -> Callable[[float], bool]:
    """A back-off sleep that records the delay and returns at once (False: not interrupted)."""

    def sleep(delay: float) -> bool:
        delays.append(delay)
        return False

    return sleep


# -- unit


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = calendar.timegm((2027, 1, 15, 8, 0, 0))
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:10 GMT", now=now) == pytest.approx(10.0)
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:10 GMT", now=now + 60) == 0.0  # in the past


def test_payload_and_headers() -> None:
    body = alert_payload(make_alert("inc", 4, statistic=float("nan")))
    assert body["alert_id"] == "inc" and body["version"] == 4 and body["idempotency_key"] == "inc:4"
    assert body["last_seen_iso"].endswith("Z") and "(inc v4)" in body["summary"]
    assert parse_headers(["Authorization: Bearer x:y", "X-Team:ml"]) == {"Authorization": "Bearer x:y", "X-Team": "ml"}
    with pytest.raises(ValueError, match="not of the form"):
        parse_headers(["no colon here"])
    with pytest.raises(ValueError, match="must start with http"):
        WebhookForwarder("ftp://example")


def test_retries_on_5xx_dropped_connections_and_429_then_delivers(receiver: Receiver) -> None:
    receiver.plan = ["500", "drop", "429:3", "503"]
    delays: list[float] = []
    forwarder = WebhookForwarder(receiver.url, backoff=0.5, backoff_max=60, sleep=_no_wait(delays))
    assert forwarder(make_alert("a", 2, statistic=float("inf"))) is True
    assert receiver.attempts == ["a:2"] * 5
    assert receiver.keys() == ["a:2"]
    assert receiver.accepted[0][1]["statistic"] is None  # non-finite numbers become JSON null
    stats = forwarder.stats
    assert (stats.delivered, stats.attempts, stats.retries) == (1, 5, 4)
    assert stats.failures == Counter({"HTTP 500": 1, "RemoteDisconnected": 1, "HTTP 429": 1, "HTTP 503": 1})
    # exponential back-off with jitter in [½, 1] of the step; Retry-After honoured exactly
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0
    assert delays[2] == 3.0
    assert 2.0 <= delays[3] <= 4.0


def test_credentials_in_the_url_become_basic_auth(receiver: Receiver) -> None:
    url = receiver.url.replace("http://", "http://hook%40ops:pa%3Ass@")
    forwarder = WebhookForwarder(url, sleep=_no_wait([]))
    assert forwarder.url == receiver.url
    assert forwarder(make_alert("a")) is True
    assert receiver.authorization == ["Basic " + base64.b64encode(b"hook@ops:pa:ss").decode()]


def test_client_errors_are_not_retried_and_a_misconfigured_receiver_stops_the_forwarder(receiver: Receiver) -> None:
    """A 400 is about this alert: rejected, the stream moves on. A redirect, or 401/403 (an expired token), is about
    the receiver: every alert after it would meet it, and each was counted rejected and committed, lost silently
    (/work/rev-w D22). It stops the forwarder, nothing committed, as an unreachable receiver does."""
    receiver.refuse = {"bad:1"}
    receiver.plan = ["ok", "301"]
    forwarder = WebhookForwarder(receiver.url, sleep=_no_wait([]))
    assert forwarder(make_alert("bad")) is False
    with pytest.raises(WebhookUnavailable, match="HTTP 301 for moved:1: the receiver's URL, redirect or credentials"):
        forwarder(make_alert("moved"))
    assert receiver.attempts == ["bad:1", "moved:1"]
    assert forwarder.stats.rejected == Counter({400: 1}) and forwarder.stats.retries == 0
    receiver.plan = ["401"]
    with pytest.raises(WebhookUnavailable, match="HTTP 401"):
        forwarder(make_alert("expired-token"))


def test_a_timeout_is_retried_with_the_same_key_so_the_receiver_can_dedupe(receiver: Receiver) -> None:
    receiver.plan = ["slow:1.5"]
    forwarder = WebhookForwarder(receiver.url, timeout=0.3, sleep=_no_wait([]))
    assert forwarder(make_alert("t")) is True
    receiver.wait_for(1)
    deadline = time.monotonic() + 10
    while len(receiver.keys()) < 2 and time.monotonic() < deadline:  # the slow answer lands late
        time.sleep(0.05)
    assert receiver.keys() == ["t:1", "t:1"] and set(receiver.keys()) == {"t:1"}
    assert forwarder.stats.failures == Counter({"TimeoutError": 1}) and forwarder.stats.delivered == 1


def test_gives_up_after_max_attempts_and_stops_when_asked(receiver: Receiver) -> None:
    receiver.plan = ["500"] * 10
    forwarder = WebhookForwarder(receiver.url, max_attempts=3, sleep=_no_wait([]))
    with pytest.raises(WebhookUnavailable, match=r"did not accept a:1 after 3 attempt\(s\): HTTP 500"):
        forwarder(make_alert("a"))
    assert len(receiver.attempts) == 3

    stop = threading.Event()
    stop.set()
    stopping = WebhookForwarder(receiver.url, backoff=30, stop=stop)  # the real wait returns at once
    with pytest.raises(DeliveryInterrupted):
        stopping(make_alert("b"))


def test_unreachable_receiver_counts_network_failures() -> None:
    from aitrace.infra.service_probes import free_port

    forwarder = WebhookForwarder(f"http://127.0.0.1:{free_port()}/", max_attempts=2, sleep=_no_wait([]))
    with pytest.raises(WebhookUnavailable, match="ConnectionRefusedError"):
        forwarder(make_alert("a"))
    assert forwarder.stats.failures == Counter({"ConnectionRefusedError": 2})


# -- integration with Tansu


def test_every_version_reaches_the_receiver_once(
    kafka: Any, unique_topic: Callable[[str], str], receiver: Receiver, tmp_path: Path
) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(
        kafka.bootstrap,
        topic,
        [
            make_alert("a1", 1),
            make_alert("a1", 2),
            b"\x00\x00\x00\x00\x07 confluent framing without a registry",
            make_alert("a1", 2),  # republished
            make_alert("bad", 1),
            make_alert("a2", 1),
            make_alert("a1", 1),  # stale
            make_alert("a1", 3, state="resolved"),
        ],
    )
    receiver.plan = ["500", "drop", "429:0", "502"]
    receiver.refuse = {"bad:1"}
    settings = settings_for(kafka.bootstrap)
    ledger = VersionLedger(tmp_path / "ledger.jsonl")
    with AlertStream(settings, group_id=f"g-{topic}", topic=topic, from_beginning=True, ledger=ledger) as stream:
        forwarder = WebhookForwarder(receiver.url, backoff=0.01, backoff_max=0.05, stop=stream.stopping)
        stream.run(forwarder, limit=5)
        assert dict(stream.stats.skipped) == {"no-registry": 1}
        assert stream.stats.duplicates == 2  # the republished a1 v2 and the stale a1 v1
    assert receiver.keys() == ["a1:1", "a1:2", "a2:1", "a1:3"]
    assert receiver.attempts.count("bad:1") == 1
    assert forwarder.stats.retries == 4 and forwarder.stats.rejected == Counter({400: 1})
    assert [body["version"] for _, body in receiver.accepted] == [1, 2, 1, 3]

    # A restart under a new group re-reads everything: the ledger keeps it from resending.
    with AlertStream(
        settings, group_id=f"g2-{topic}", topic=topic, from_beginning=True, ledger=VersionLedger(ledger.path)
    ) as again:
        forwarder2 = WebhookForwarder(receiver.url, stop=again.stopping)
        deadline = time.monotonic() + 60
        while again.stats.records < 8 and time.monotonic() < deadline:
            alert = again.poll(0.2)
            assert alert is None, alert
    assert forwarder2.stats.attempts == 0
    assert receiver.keys() == ["a1:1", "a1:2", "a2:1", "a1:3"]


def test_unacknowledged_alert_is_not_committed(
    kafka: Any, unique_topic: Callable[[str], str], receiver: Receiver, tmp_path: Path
) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("u1"), make_alert("u2")])
    settings = settings_for(kafka.bootstrap)
    group = f"g-{topic}"
    receiver.plan = ["ok", "500", "500"]
    with AlertStream(settings, group_id=group, topic=topic, from_beginning=True) as stream:
        forwarder = WebhookForwarder(receiver.url, max_attempts=2, sleep=_no_wait([]))
        with pytest.raises(WebhookUnavailable):
            stream.run(forwarder)
    assert receiver.keys() == ["u1:1"]
    with AlertStream(settings, group_id=group, topic=topic) as stream:  # same group, fresh memory
        stream.run(WebhookForwarder(receiver.url), limit=1)
    assert receiver.keys() == ["u1:1", "u2:1"]


# -- the CLI


def _forward_cli(bootstrap: str, topic: str, url: str, state: Path, *extra: str) -> list[str]:
    return cli(
        "--topic", topic, "--bootstrap", bootstrap, "--from-beginning", "--webhook", url,
        "--state-file", str(state), "--backoff", "0.01", "--backoff-max", "0.05", *extra,
    )  # fmt: skip


def test_cli_forwards_and_a_restart_does_not_resend(
    kafka: Any, unique_topic: Callable[[str], str], receiver: Receiver, tmp_path: Path
) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("c1"), b"junk", make_alert("c1", 2), make_alert("c2")])
    receiver.plan = ["503", "drop"]
    state = tmp_path / "state.jsonl"
    args = _forward_cli(kafka.bootstrap, topic, receiver.url, state, "--header", "Authorization: Bearer s3cret")
    first = subprocess.run([*args, "--limit", "3"], capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert first.returncode == 0, first.stderr
    assert receiver.keys() == ["c1:1", "c1:2", "c2:1"]
    assert first.stdout.count("sent ") == 3
    assert "3 delivered" in first.stderr and "2 retried" in first.stderr
    assert "bad-magic: 1" in first.stderr
    assert "s3cret" not in first.stderr + first.stdout

    # New group (so Kafka offsets do not help): only the new version is sent.
    produce(kafka.bootstrap, topic, [make_alert("c2", 2)])
    second = subprocess.run(
        [*args, "--group", f"other-{topic}", "--limit", "1"], capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    assert second.returncode == 0, second.stderr
    assert receiver.keys() == ["c1:1", "c1:2", "c2:1", "c2:2"]
    assert "3 already-seen version(s) skipped" in second.stderr


def test_cli_killed_mid_stream_delivers_every_version_after_dedupe(
    kafka: Any, unique_topic: Callable[[str], str], receiver: Receiver, tmp_path: Path
) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    alerts = [make_alert(f"k{i % 3}", i // 3 + 1) for i in range(12)]
    produce(kafka.bootstrap, topic, alerts)
    expected = {f"{a['alert_id']}:{a['version']}" for a in alerts}
    args = _forward_cli(kafka.bootstrap, topic, receiver.url, tmp_path / "state.jsonl")
    receiver.delay = 0.2  # slow enough that the kill lands mid-stream

    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        receiver.wait_for(4)
        first.send_signal(signal.SIGKILL)  # no goodbye: whatever was in flight is re-read
        first.wait(CLI_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
    assert len(set(receiver.keys())) < len(expected), "killed too late to test a restart"

    second = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        receiver.wait_for(len(expected))
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=CLI_TIMEOUT)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert second.returncode == 0, err
    keys = receiver.keys()
    assert set(keys) == expected  # every version arrived
    assert len(keys) - len(set(keys)) <= 1  # at most the one in flight at the kill comes twice


def test_cli_stops_gracefully_while_backing_off_and_resends_later(
    kafka: Any, unique_topic: Callable[[str], str], receiver: Receiver, tmp_path: Path
) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("s1")])
    receiver.plan = ["500"] * 1_000
    args = cli(
        "--topic", topic, "--bootstrap", kafka.bootstrap, "--from-beginning", "--webhook", receiver.url,
        "--state-file", str(tmp_path / "state.jsonl"), "--backoff", "30", "-v",
    )  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not receiver.attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.attempts, "the forwarder never called the receiver"
        proc.send_signal(signal.SIGTERM)  # it is now waiting ~15-30 s to retry
        _, err = proc.communicate(timeout=CLI_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "0 delivered" in err and receiver.keys() == []

    receiver.plan = []
    again = run_cli(
        "--topic", topic, "--bootstrap", kafka.bootstrap, "--webhook", receiver.url,
        "--state-file", str(tmp_path / "state.jsonl"), "--limit", "1",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert receiver.keys() == ["s1:1"]  # not committed by the stopped run, so sent now


def test_cli_exits_with_a_clear_error_when_the_receiver_stays_down(
    kafka: Any, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    from aitrace.infra.service_probes import free_port

    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("d1")])
    url = f"http://user:pw@127.0.0.1:{free_port()}/hook?token=t0k"
    result = subprocess.run(
        _forward_cli(kafka.bootstrap, topic, url, tmp_path / "s.jsonl", "--max-attempts", "2"),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    assert result.returncode == 1
    assert "did not accept d1:1 after 2 attempt(s): ConnectionRefusedError ([Errno 111]" in result.stderr
    assert ":pw" not in result.stderr and "t0k" not in result.stderr


def test_cli_refuses_bad_options(tmp_path: Path) -> None:
    header = run_cli("--webhook", "http://127.0.0.1:1/", "--header", "nocolon", "--state-file", str(tmp_path / "s"))
    assert header.returncode == 2 and "not of the form 'Name: value'" in header.stderr
    scheme = run_cli("--webhook", "mailto:x@y", "--state-file", str(tmp_path / "s"))
    assert scheme.returncode == 2 and "must start with http" in scheme.stderr
    (tmp_path / "dir").mkdir()
    state = run_cli("--webhook", "http://127.0.0.1:1/", "--state-file", str(tmp_path / "dir"))
    assert state.returncode == 1 and "cannot read alert ledger" in state.stderr


def test_odd_answers_and_records_never_end_the_forwarder() -> None:
    """From a report-only fuzz of the commands (/work/rev-w D7-D9, D12): a Retry-After of "²" (a digit to
    str.isdigit) raised; the 1,025th retry of one alert (about 13 h of outage at the defaults) overflowed a
    float; an alert whose last_seen is past any date (a record any client can write) ended the forwarder
    and the tail, and every restart on the same uncommitted record; a header with CR/LF or a framing header
    (Content-Length: 5 cut the body, the alert counted delivered) was sent."""
    from aitrace.sinks.alert_format import format_alert

    assert parse_retry_after("²") is None and parse_retry_after(" 12 ") == 12.0
    forwarder = WebhookForwarder("http://127.0.0.1:9/x", backoff=0.5, backoff_max=60.0)
    assert 30.0 <= forwarder._delay(5_000, None) <= 60.0
    far = make_alert("far", 1, last_seen=2**62, first_seen=-(2**62))
    assert alert_payload(far)["last_seen_iso"] is None and "<time 4611686018427387904 us>" in format_alert(far)
    for bad in ["X-A: b\r\nX-Injected: c", "Content-Length: 5", "Bad Name: x", "X-Team: ✓"]:
        with pytest.raises(ValueError):
            parse_headers([bad])
    assert parse_headers(["Host: alerts.internal", "X-Site: Zürich"]) == {"Host": "alerts.internal", "X-Site": "Zürich"}


def test_a_receiver_that_trickles_its_answer_holds_a_delivery_no_longer_than_the_timeout() -> None:
    """urllib's timeout is per read: a receiver sending its status line and then a byte every 0.2 s held the
    forwarder as long as it liked (seen > 10 minutes, /work/rev-w D10)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                if stop.wait(0.2):
                    return
                conn.sendall(b" ")

    threading.Thread(target=trickle, daemon=True).start()
    delivered: list[bool] = []
    worker = threading.Thread(
        target=lambda: delivered.append(WebhookForwarder(f"http://127.0.0.1:{port}/h", timeout=1.0)(make_alert("t"))),
        daemon=True,
    )
    worker.start()
    worker.join(60)  # (the answer trickles for 200 s: a join that ends is the deadline kept)
    stop.set()
    server.close()
    assert delivered == [True]


def test_a_second_signal_ends_a_wait_the_first_could_not() -> None:
    """The first SIGINT/SIGTERM asks the loop to stop after the alert in hand; a read from a receiver that stalls
    never sees that flag, and only SIGKILL ended the command (/work/rev-w D10). The second ends it now."""
    import os

    from aitrace.sinks.alerts_cli import stop_on_signals

    class Stream:
        stopping = threading.Event()

        def stop(self) -> None:
            self.stopping.set()

    stream = Stream()
    with pytest.raises(KeyboardInterrupt), stop_on_signals(stream):  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stream.stopping.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
