"""Stream alert consumers: the embeddable API and the ``aitrace alerts`` terminal tail.

Unit tests cover filtering, the version ledger (including disk failures) and formatting;
integration tests produce real ``aitrace.Alert`` records into Tansu and read them back
through :class:`AlertStream` and through the CLI in a subprocess.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aitrace.producers.config import KafkaConfig
from aitrace.schemas.codec import AvroSerializer
from aitrace.sinks.alert_format import format_alert
from aitrace.sinks.alert_ledger import LedgerError, VersionLedger
from aitrace.sinks.alert_stream import AlertFilter, AlertStream, StopStream, severity_rank
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

T0 = 1_795_700_000_000_000  # 2026-11-26 13:33:20 UTC, epoch µs
CLI_TIMEOUT = 90  # generous: the machine is shared; a hang still fails the test


def make_alert(alert_id: str, version: int = 1, **fields: Any) -> dict[str, Any]:
    """An ``aitrace.Alert`` with plausible defaults; ``fields`` override."""
    alert: dict[str, Any] = {
        "alert_id": alert_id,
        "version": version,
        "kind": "anomaly",
        "detector": "robust_z",
        "severity": "warning",
        "state": "open",
        "title": f"loss spike {alert_id}",
        "series": "run-7/loss",
        "service": "trainer",
        "run_id": "run-7",
        "model": None,
        "feature": None,
        "trace_id": None,
        "step": 120,
        "first_seen": T0,
        "last_seen": T0 + version * 1_000_000,
        "score": 0.97,
        "statistic": 6.5,
        "threshold": 4.0,
        "pvalue": None,
        "evidence": [0.3, 0.31, 2.9],
        "details": {},
    }
    alert.update(fields)
    return alert


def produce(bootstrap: str, topic: str, records: Iterable[dict[str, Any] | bytes]) -> None:
    """Send alerts (encoded) or raw bytes, keyed by alert id, one request each; check every delivery report."""
    serialize = AvroSerializer("aitrace.Alert")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    errors: list[Any] = []
    delivered = 0

    def report(err: Any, msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            errors.append(err)
        else:
            delivered += 1

    count = 0
    for record in records:
        if isinstance(record, bytes):
            producer.produce(topic, key=b"corrupt", value=record, on_delivery=report)
        else:
            producer.produce(topic, key=record["alert_id"].encode(), value=serialize(record), on_delivery=report)
        producer.flush(30)  # one record per request: Tansu's watermarks are wrong for multi-record requests
        count += 1
    assert not errors, errors
    assert delivered == count


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> str:
    """Create ``topic`` explicitly (auto-created topics get several partitions, so no total order)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        future.result(30)
    return topic


def settings_for(bootstrap: str) -> KafkaConfig:
    return KafkaConfig.from_env(kafka_bootstrap=bootstrap)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aitrace.infra.cli", "alerts", *args]


def run_cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout)


# -- unit: filters, ledger, formatting


def test_filter_by_minimum_severity_and_fields() -> None:
    warning = AlertFilter(min_severity="warning")
    assert not warning.matches(make_alert("a", severity="info"))
    assert warning.matches(make_alert("a", severity="warning"))
    assert warning.matches(make_alert("a", severity="CRITICAL"))
    # unknown words rank as info: shown without a filter, never promoted past one
    assert AlertFilter().matches(make_alert("a", severity="weird"))
    assert not warning.matches(make_alert("a", severity="weird"))
    assert severity_rank("critical") > severity_rank("warning") > severity_rank("info")

    where = AlertFilter(service="ranker", run_id="r1", model="m1")
    assert where.matches(make_alert("a", service="ranker", run_id="r1", model="m1"))
    assert not where.matches(make_alert("a", service="ranker", run_id="r2", model="m1"))
    assert not where.matches(make_alert("a", service="trainer", run_id="r1", model="m1"))
    assert not where.matches(make_alert("a", service="ranker", run_id="r1", model=None))


def test_filter_refuses_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="unknown severity 'loud'"):
        AlertFilter(min_severity="loud")


def test_ledger_keeps_the_newest_version_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.jsonl"
    ledger = VersionLedger(path)
    assert ledger.is_new("a", 1)
    ledger.record("a", 2)
    ledger.record("a", 1)  # older: ignored
    ledger.record("b", 1)
    assert not ledger.is_new("a", 2)
    assert not ledger.is_new("a", 1)
    assert ledger.is_new("a", 3)
    ledger.close()

    reopened = VersionLedger(path)
    assert (reopened.last("a"), reopened.last("b"), reopened.last("c")) == (2, 1, None)
    reopened.close()


def test_ledger_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b'{"id":"a","v":3}\n{"id":"b","v":1}\n{"id":"c","v"')  # crash mid-write
    ledger = VersionLedger(path)
    assert (ledger.last("a"), ledger.last("b"), ledger.last("c"), ledger.bad_lines) == (3, 1, None, 1)
    ledger.record("c", 1)  # appending after a torn line still reads back
    ledger.close()
    assert VersionLedger(path).last("c") == 1


def test_ledger_compacts_superseded_lines_and_bounds_its_size(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = VersionLedger(path)
    for version in range(1, 1_500):
        ledger.record("a", version)
    ledger.close()
    assert len(path.read_bytes().splitlines()) == 1_499

    compacted = VersionLedger(path, max_entries=2)
    assert len(path.read_bytes().splitlines()) == 1
    assert compacted.last("a") == 1_499
    for alert_id in ("b", "c"):
        compacted.record(alert_id, 1)
    assert len(compacted) == 2 and compacted.last("a") is None  # least recently updated forgotten
    compacted.close()


def test_ledger_reports_a_path_it_cannot_use(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    with pytest.raises(LedgerError, match=r"cannot read alert ledger .*dir"):
        VersionLedger(directory)


def test_ledger_reports_a_full_disk(tmp_path: Path) -> None:
    ledger = VersionLedger(tmp_path / "ledger.jsonl")
    ledger._file.close()
    ledger._file = open("/dev/full", "ab", buffering=0)  # noqa: SIM115 - every write fails with ENOSPC
    with pytest.raises(LedgerError, match="cannot write alert ledger"):
        ledger.record("a", 1)
    assert ledger.is_new("a", 1)  # not persisted, so not counted as handled
    ledger.close()


def test_format_alert_says_when_what_where_and_the_evidence() -> None:
    alert = make_alert("inc-1", 3, severity="critical", model="ranker-v2", trace_id="ab" * 16, pvalue=0.001)
    line = format_alert(alert)
    assert line.startswith("2026-11-26 13:33:23Z  CRITICAL")
    for text in ("CRITICAL", "open", "loss spike inc-1", "service=trainer", "run=run-7", "model=ranker-v2"):
        assert text in line
    for text in ("step=120", f"trace={'ab' * 16}", "statistic=6.5", "threshold=4", "p=0.001", "(inc-1 v3)"):
        assert text in line
    assert "\033[" not in line
    coloured = format_alert(alert, colour=True)
    assert "\033[1;31mCRITICAL" in coloured
    assert "\033[32mresolved" in format_alert(make_alert("x", state="resolved"), colour=True)


# -- integration: AlertStream on Tansu


def _collect(stream: AlertStream, count: int, deadline_s: float = 60.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < count and time.monotonic() < deadline:
        alert = stream.poll(0.2)
        if alert is not None:
            got.append(alert)
            stream.mark_handled()
    return got


def test_stream_delivers_each_version_once_and_skips_corrupt_records(
    kafka: Any, unique_topic: Callable[[str], str]
) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"), partitions=3)
    produce(
        kafka.bootstrap,
        topic,
        [
            make_alert("a1", 1),
            b"not avro at all",
            make_alert("a1", 2, severity="critical"),
            make_alert("a1", 2, severity="critical"),  # republished after a processor restart
            make_alert("a2", 1),
            make_alert("a1", 1),  # stale: older than what was handled
            b"\xc3\x01" + b"\x00" * 8 + b"body",  # single-object header with an unknown fingerprint
            AvroSerializer("aitrace.GroundTruth")({"request_id": "r1", "model_name": "m", "label": "1"}),
            make_alert("a3", 1, state="resolved"),
        ],
    )
    with AlertStream(settings_for(kafka.bootstrap), topic=topic, from_beginning=True) as stream:
        got = _collect(stream, 4)
        # records of one alert share a partition (keyed by alert_id), so its versions keep their order
        versions = [(a["alert_id"], a["version"]) for a in got]
        assert sorted(versions) == [("a1", 1), ("a1", 2), ("a2", 1), ("a3", 1)]
        assert versions.index(("a1", 1)) < versions.index(("a1", 2))
        by_key = {(a["alert_id"], a["version"]): a for a in got}
        assert by_key["a1", 2]["severity"] == "critical" and by_key["a3", 1]["state"] == "resolved"
        # read the rest of the three partitions: nothing more is delivered
        deadline = time.monotonic() + 30
        while stream.stats.records < 9 and time.monotonic() < deadline:
            assert stream.poll(0.2) is None
        assert stream.stats.duplicates == 2
        assert dict(stream.stats.skipped) == {"bad-magic": 1, "unknown-schema": 1, "not-an-alert": 1}
        assert stream.stats.records == 9 and stream.stats.delivered == 4


def test_stream_filters_and_iterates(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(
        kafka.bootstrap,
        topic,
        [
            make_alert("i1", severity="info", service="ranker"),
            make_alert("w1", severity="warning", service="ranker", run_id="r1"),
            make_alert("c1", severity="critical", service="trainer"),
            make_alert("c2", severity="critical", service="ranker", run_id="r2", model="m"),
        ],
    )
    filters = AlertFilter(min_severity="warning", service="ranker")
    seen: list[str] = []
    with AlertStream(settings_for(kafka.bootstrap), topic=topic, from_beginning=True, filters=filters) as stream:
        for alert in stream:
            seen.append(alert["alert_id"])
            if len(seen) == 2:
                stream.stop()
        assert seen == ["w1", "c2"]
        assert stream.stats.filtered == 2


def test_group_commits_after_handling_and_resumes(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert(f"g{i}") for i in range(4)])
    settings = settings_for(kafka.bootstrap)
    group = f"grp-{topic}"
    handled: list[str] = []

    def handler(alert: dict[str, Any]) -> None:
        if alert["alert_id"] == "g2":
            raise StopStream  # not handled: must come again
        handled.append(alert["alert_id"])

    with AlertStream(settings, group_id=group, topic=topic, from_beginning=True) as stream:
        stream.run(handler)
    assert handled == ["g0", "g1"]

    def boom(alert: dict[str, Any]) -> None:
        raise RuntimeError("handler failed")

    with AlertStream(settings, group_id=group, topic=topic) as stream, pytest.raises(RuntimeError):
        stream.run(boom)  # g2 fails again: still not committed

    with AlertStream(settings, group_id=group, topic=topic) as stream:
        stats = stream.run(lambda a: handled.append(a["alert_id"]), limit=2)
    assert handled == ["g0", "g1", "g2", "g3"]
    assert stats.delivered == 2


def test_a_new_group_remembers_where_it_started(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    """A group that saw nothing still commits its start: alerts sent while it is down are not skipped."""
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("history")])
    settings = settings_for(kafka.bootstrap)
    group = f"g-{topic}"
    with AlertStream(settings, group_id=group, topic=topic) as stream:  # starts at the end
        deadline = time.monotonic() + 60
        while not stream._pending and time.monotonic() < deadline:
            assert stream.poll(0.2) is None
        assert stream._pending, "the start position was never pinned"
    produce(kafka.bootstrap, topic, [make_alert("while-down")])
    with AlertStream(settings, group_id=group, topic=topic) as stream:
        assert [a["alert_id"] for a in _collect(stream, 1)] == ["while-down"]


def test_tail_without_a_group_starts_at_the_end(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("old")])
    with AlertStream(settings_for(kafka.bootstrap), topic=topic) as stream:
        # the first poll assigns the partitions; the end offset is resolved on the first fetches
        for _ in range(10):
            assert stream.poll(0.2) is None
        produce(kafka.bootstrap, topic, [make_alert("new")])
        assert [a["alert_id"] for a in _collect(stream, 1)] == ["new"]


def test_tail_waits_for_a_topic_that_does_not_exist_yet(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = unique_topic("alerts")  # created by the produce below, after the tail started
    got: list[str] = []
    with AlertStream(settings_for(kafka.bootstrap), topic=topic, from_beginning=True) as stream:
        worker = threading.Thread(target=lambda: stream.run(lambda a: got.append(a["alert_id"]), limit=1))
        worker.start()
        time.sleep(1.0)  # let it find no topic first (not a timing assertion)
        produce(kafka.bootstrap, topic, [make_alert("late")])
        worker.join(60)
        stream.stop()
        worker.join(5)
    assert got == ["late"]


def test_stream_survives_a_broker_outage(fresh_kafka: Any, unique_topic: Callable[[str], str]) -> None:
    """The broker goes away mid-stream: polls return nothing (no exception), then alerts flow again.

    Tansu here stores in memory, so it comes back empty and its offsets start again at 0: the
    stream resumes at the offset it had reached (1), which is where the second new alert lands.
    """
    topic = create_topic(fresh_kafka.bootstrap, unique_topic("alerts"))
    produce(fresh_kafka.bootstrap, topic, [make_alert("before")])
    with AlertStream(settings_for(fresh_kafka.bootstrap), topic=topic, from_beginning=True) as stream:
        assert [a["alert_id"] for a in _collect(stream, 1)] == ["before"]
        fresh_kafka.stop()
        for _ in range(10):
            assert stream.poll(0.2) is None
        fresh_kafka.start()
        fresh_kafka.wait_ready(60)
        create_topic(fresh_kafka.bootstrap, topic)
        produce(fresh_kafka.bootstrap, topic, [make_alert("after-0"), make_alert("after-1")])
        assert [a["alert_id"] for a in _collect(stream, 1)] == ["after-1"]


# -- integration: the CLI


def test_cli_prints_one_line_per_version_with_filters(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(
        kafka.bootstrap,
        topic,
        [
            make_alert("x1", 1, severity="info"),
            make_alert("x2", 1, severity="critical", run_id="r9", title="p99 latency over budget"),
            b"garbage",
            make_alert("x2", 2, severity="critical", run_id="r9", title="p99 latency over budget", state="resolved"),
            make_alert("x3", 1, severity="warning", run_id="other"),
            make_alert("x4", 1, severity="critical", run_id="r9", service="ranker"),
        ],
    )
    args = ("--topic", topic, "--bootstrap", kafka.bootstrap, "--from-beginning")
    result = run_cli(*args, "--severity", "warning", "--run", "r9", "--service", "trainer", "--limit", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "CRITICAL" in lines[0] and "p99 latency over budget" in lines[0] and "(x2 v1)" in lines[0]
    assert "resolved" in lines[1] and "(x2 v2)" in lines[1] and "statistic=6.5 threshold=4" in lines[1]
    assert "\033[" not in result.stdout  # not a terminal: no colour
    assert "skipped record" in result.stderr and "bad-magic" in result.stderr
    assert "2 alert version(s) handled" in result.stderr

    coloured = run_cli(*args, "--limit", "1", "--color", "always")
    assert coloured.returncode == 0, coloured.stderr
    assert "\033[36mINFO" in coloured.stdout

    as_json = run_cli(*args, "--limit", "1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert '"alert_id":"x1"' in as_json.stdout


def _run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` with stdout on a pseudo-terminal; (exit status, what it printed there)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(CLI_TIMEOUT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, b"".join(chunks).decode()


def test_cli_colours_only_on_a_terminal(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("tty", severity="critical")])
    argv = cli("--topic", topic, "--bootstrap", kafka.bootstrap, "--from-beginning", "--limit", "1")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    code, shown = _run_on_a_terminal(argv, env)
    assert code == 0 and "\033[1;31mCRITICAL" in shown and "(tty v1)" in shown
    code, shown = _run_on_a_terminal(argv, {**env, "NO_COLOR": "1"})
    assert code == 0 and "\033[" not in shown and "(tty v1)" in shown


def test_cli_group_resumes_after_committed_alerts(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert(f"r{i}") for i in range(3)])
    args = ("--topic", topic, "--bootstrap", kafka.bootstrap, "--group", f"g-{topic}", "--from-beginning")
    first = run_cli(*args, "--limit", "2")
    second = run_cli(*args, "--limit", "1")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert [line.split("(")[-1] for line in first.stdout.splitlines()] == ["r0 v1)", "r1 v1)"]
    assert second.stdout.splitlines()[0].endswith("(r2 v1)")


def test_cli_tails_new_alerts_and_stops_gracefully_on_sigterm(kafka: Any, unique_topic: Callable[[str], str]) -> None:
    topic = create_topic(kafka.bootstrap, unique_topic("alerts"))
    produce(kafka.bootstrap, topic, [make_alert("before")])
    proc = subprocess.Popen(
        cli("--topic", topic, "--bootstrap", kafka.bootstrap, "-v"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        line = proc.stderr.readline()  # blocks until the tail is assigned (or the process dies)
        assert "tailing" in line and "from the end" in line, line
        time.sleep(1.0)  # the end offset is resolved on the first fetch
        produce(kafka.bootstrap, topic, [make_alert("after", severity="critical")])
        shown = proc.stdout.readline()
        assert "(after v1)" in shown and "CRITICAL" in shown
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=CLI_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "before" not in out
    assert "1 alert version(s) handled" in err


def test_cli_refuses_a_bad_limit() -> None:
    bad = run_cli("--limit", "0")
    assert bad.returncode == 2 and "--limit must be at least 1" in bad.stderr


class _MetadataFails:
    """A consumer whose metadata request fails as librdkafka's does when nothing listens."""

    def __init__(self, code: int) -> None:
        self.code = code

    def list_topics(self, topic: str, timeout: float) -> None:
        raise KafkaException(KafkaError(self.code))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN])
@pytest.mark.parametrize("report", ["metadata request", "error callback"])
def test_no_broker_hint_whichever_failure_librdkafka_reports_first(
    code: int, report: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A metadata request's transport failure can come before the all-brokers-down event: the
    # first line the operator reads says what to do either way (the CLI test flaked on it).
    from aitrace.infra.service_probes import free_port

    stream = AlertStream(settings_for(f"127.0.0.1:{free_port()}"))
    stream._consumer.close()
    stream._consumer = _MetadataFails(code)  # type: ignore[assignment]
    stream._reported_errors.clear()  # the real consumer's close may have served an error already
    caplog.clear()
    with caplog.at_level("WARNING", logger="aitrace.alerts"):
        if report == "metadata request":
            stream._ensure_assigned()
        else:
            stream._on_error(KafkaError(code))
    told = [r.getMessage() for r in caplog.records if r.name == "aitrace.alerts"]
    assert len(told) == 1 and "`aitrace up` starts the embedded one" in told[0], told


def test_cli_waits_quietly_then_stops_when_the_broker_is_down(unique_topic: Callable[[str], str]) -> None:
    # A closed port: librdkafka keeps reconnecting; the tail says so once and stops on SIGINT.
    from aitrace.infra.service_probes import free_port

    proc = subprocess.Popen(
        cli("--topic", unique_topic("alerts"), "--bootstrap", f"127.0.0.1:{free_port()}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "kafka:" in line or "cannot read metadata" in line, line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=CLI_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "0 alert version(s) handled" in err
    assert "`aitrace up` starts the embedded one" in line + err  # it retried for ever and never said why (/work/rev-ab)
