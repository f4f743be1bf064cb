"""The embedded stack: process management, the shared fixtures, `aitrace up/status/down`."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aitrace.infra import services
from aitrace.infra.stack import (
    BinaryNotFound,
    OsmemProcess,
    PortInUse,
    ServiceFailed,
    StackError,
    TansuProcess,
    down,
    find_binary,
    free_port,
    http_info,
    kafka_metadata,
    probe_http,
    probe_kafka,
    start_service,
)
from aitrace.producers.config import KafkaConfig, SearchConfig, Settings
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def _produce_and_read(bootstrap: str, topic: str, value: bytes) -> bytes:
    producer = Producer({"bootstrap.servers": bootstrap})
    delivered: list[object] = []
    # Tansu auto-creates topics with 4 partitions: pin the partition we read back.
    producer.produce(topic, value, partition=0, on_delivery=lambda err, msg: delivered.append(err or msg))
    assert producer.flush(30) == 0
    assert not isinstance(delivered[0], Exception) and delivered[0].error() is None
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "fetch.queue.backoff.ms": 1, "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        msg = consumer.poll(30)
        assert msg is not None and msg.error() is None
        return msg.value()
    finally:
        consumer.close()


def test_kafka_fixture_serves_a_real_client(kafka: TansuProcess, unique_topic) -> None:
    assert _produce_and_read(kafka.bootstrap, unique_topic("rt"), b"hello") == b"hello"


def test_search_fixture_answers_as_opensearch(search: OsmemProcess) -> None:
    assert http_info(search.url)["version"]["distribution"] == "opensearch"


def test_restart_keeps_the_port(fresh_kafka: TansuProcess, unique_topic) -> None:
    port, pid = fresh_kafka.port, fresh_kafka.pid
    fresh_kafka.restart(hard=True)
    assert fresh_kafka.port == port and fresh_kafka.pid != pid
    assert _produce_and_read(fresh_kafka.bootstrap, unique_topic("after"), b"x") == b"x"


def test_a_killed_shared_broker_is_healed_for_the_next_test(kafka: TansuProcess) -> None:
    kafka.kill()
    assert not kafka.running() and not kafka.answers(timeout=0.5)


def test_after_heal_the_shared_broker_answers(kafka: TansuProcess, unique_topic) -> None:
    assert kafka.answers()
    assert _produce_and_read(kafka.bootstrap, unique_topic("healed"), b"y") == b"y"


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for cls in (TansuProcess, OsmemProcess):
            with pytest.raises(PortInUse, match=f"port {port} .* already in use"):
                cls(port, tmp_path).start()


def test_missing_binary_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AITRACE_TANSU_BIN", str(tmp_path / "nope"))
    with pytest.raises(BinaryNotFound, match="AITRACE_TANSU_BIN"):
        find_binary("tansu")
    with pytest.raises(BinaryNotFound):
        TansuProcess(free_port(), tmp_path).start()


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "_bundled_binary", lambda package, file_name: None)
    monkeypatch.setenv("PATH", "")
    for name in ("tansu", "osmem-server"):
        with pytest.raises(BinaryNotFound, match=r"aitrace\[embedded\]"):
            find_binary(name)


def test_a_service_that_never_answers_is_stopped_and_reported(tmp_path: Path) -> None:
    # `sleep` runs but never listens: wait_ready must give up, kill it and point at the log.
    service = TansuProcess(free_port(), tmp_path, binary="/bin/sleep")
    service.command = lambda binary: [binary, "30"]  # type: ignore[method-assign]
    service.start()
    with pytest.raises(ServiceFailed, match="did not answer"):
        service.wait_ready(timeout=0.5)
    assert not service.running()


def test_a_service_that_exits_at_start_is_reported_with_its_output(tmp_path: Path) -> None:
    service = OsmemProcess(free_port(), tmp_path)
    service.command = lambda binary: [binary, "-no-such-flag"]  # type: ignore[method-assign]
    with pytest.raises(ServiceFailed, match="exited with code"):
        service.start().wait_ready(timeout=30)


def test_a_service_that_crashes_while_starting_is_started_again(kafka: TansuProcess, tmp_path: Path) -> None:
    # Tansu aborts now and then while starting (glibc's getifaddrs: "Unexpected error 9 on netlink
    # descriptor", SIGABRT); a crash says nothing about the settings, so it is started again. Here a
    # shell that kills itself on its first two starts, then runs the real broker on the port.
    marker = tmp_path / "starts"
    script = tmp_path / "crashy"
    binary = kafka.binary or ""
    script.write_text(
        f'#!/bin/sh\necho x >> {marker}\n[ "$(wc -l < {marker})" -le 2 ] && kill -ABRT $$\nexec {binary} "$@"\n'
    )
    script.chmod(0o755)
    service = TansuProcess(free_port(), tmp_path, binary=str(script))
    try:
        service.start().wait_ready(timeout=60)
        assert service.answers() and marker.read_text().count("x") == 3
        assert service.log_tail(60).count("crashed with signal 6 during start") == 2
    finally:
        service.stop()
    marker.write_text("")  # three crashes in a row: reported, not started a fourth time
    script.write_text(f"#!/bin/sh\necho x >> {marker}\nkill -ABRT $$\n")
    with pytest.raises(ServiceFailed, match="exited with code -6"):
        TansuProcess(free_port(), tmp_path, binary=str(script)).start().wait_ready(timeout=30)
    assert marker.read_text().count("x") == 1 + services.START_CRASHES


# --------------------------------------------------------------------------- aitrace up/status/down


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("aitrace")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aitrace.infra.cli"]


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    """A private state dir; whatever a test leaves recorded there is stopped afterwards."""
    directory = tmp_path / "state"
    yield directory
    with contextlib.suppress(StackError):
        down(directory, grace=1.0)


def aitrace(
    *args: str, state: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "AITRACE_STATE_DIR": str(state), **(env or {})}
    return subprocess.run([*_cli(), *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False)


def _pids_serving(port: int) -> list[int]:
    """Every process whose command line names ``port``: what `down` or a rollback must leave at none."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"127.0.0.1:{port}" in argv and ("tansu" in argv or "osmem" in argv) and pid_runs_any(int(proc.name)):
            found.append(int(proc.name))
    return found


def pid_runs_any(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_up_status_down_round_trip(stack_dir: Path) -> None:
    kafka_port = free_port()
    result = aitrace("up", "--kafka-port", str(kafka_port), state=stack_dir)
    assert result.returncode == 0, result.stderr
    assert "run `aitrace worker`" in result.stdout  # without one, nothing a client sends is indexed
    state = json.loads((stack_dir / "stack.json").read_text())
    assert state["endpoints"]["kafka"] == f"127.0.0.1:{kafka_port}"
    assert state["endpoints"]["elasticsearch"].startswith("http://127.0.0.1:")
    for record in state["services"].values():
        assert Path(record["log"]).exists() and Path(record["binary"]).exists() and record["started_at"]
    pids = [record["pid"] for record in state["services"].values()]

    # Settings pick the recorded endpoints up, and real clients reach them.
    settings = Settings.from_env(env={"AITRACE_STATE_DIR": str(stack_dir)}, dev_stack=True)
    assert settings.kafka.kafka_bootstrap == state["endpoints"]["kafka"]
    metadata = AdminClient({"bootstrap.servers": settings.kafka.kafka_bootstrap}).list_topics(timeout=30)
    assert [b.port for b in metadata.brokers.values()] == [kafka_port]
    assert http_info(settings.search.es_url)["version"]["distribution"] == "opensearch"

    # The services outlive the `aitrace up` process that started them; a second `up` keeps them.
    again = aitrace("up", state=stack_dir)
    assert again.returncode == 0 and again.stdout.count("already up") == 2, again.stdout
    assert [r["pid"] for r in json.loads((stack_dir / "stack.json").read_text())["services"].values()] == pids

    shown = aitrace("status", "--json", state=stack_dir)
    assert shown.returncode == 0, shown.stdout
    assert {row["role"]: row["healthy"] for row in json.loads(shown.stdout)} == {
        "kafka": True,
        "elasticsearch": True,
    }

    stopped = aitrace("down", state=stack_dir)
    assert stopped.returncode == 0 and stopped.stdout.count("stopped pid") == 2, stopped.stdout
    assert not (stack_dir / "stack.json").exists()
    assert not any(pid_runs_any(pid) for pid in pids)
    assert _pids_serving(kafka_port) == []
    assert aitrace("status", state=stack_dir).returncode == 3


def test_up_keeps_the_newest_logs_of_each_service(stack_dir: Path) -> None:
    """Each `aitrace up` (and each demo) on new ports left two more logs in <state>/logs, for ever."""
    logs = stack_dir / "logs"
    logs.mkdir(parents=True)
    old = {kind: [logs / f"{kind}-{n}.log" for n in range(1, 8)] for kind in ("tansu", "osmem-server")}
    for paths in old.values():
        for age, path in enumerate(paths):  # -1.log oldest
            path.write_text("an earlier run\n")
            os.utime(path, (1e9 + age, 1e9 + age))
    (logs / "notes.txt").write_text("the user's own")
    assert aitrace("up", state=stack_dir).returncode == 0
    records = json.loads((stack_dir / "stack.json").read_text())["services"]
    for kind, record in (("tansu", records["kafka"]), ("osmem-server", records["elasticsearch"])):
        kept = {p.name for p in logs.glob(f"{kind}-*.log")}
        assert kept == {Path(record["log"]).name} | {p.name for p in old[kind][-(services.KEEP_LOGS - 1) :]}
    assert (logs / "notes.txt").exists()


def test_pruning_a_folder_it_cannot_read_fails_no_start(tmp_path: Path) -> None:
    services.prune_logs(tmp_path / "gone" / "tansu-9092.log")  # the folder went away meanwhile: nothing to do


def test_status_reports_a_killed_service_dead(stack_dir: Path) -> None:
    assert aitrace("up", state=stack_dir).returncode == 0
    record = json.loads((stack_dir / "stack.json").read_text())["services"]["elasticsearch"]
    os.kill(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_runs_any(record["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    shown = aitrace("status", state=stack_dir)
    assert shown.returncode == 1
    line = next(x for x in shown.stdout.splitlines() if x.startswith("elasticsearch"))
    assert "dead" in line
    assert "answers" in next(x for x in shown.stdout.splitlines() if x.startswith("kafka"))
    # `up` brings back only the dead one, on its old port.
    again = aitrace("up", state=stack_dir)
    assert again.returncode == 0 and "started" in again.stdout and "already up" in again.stdout
    assert json.loads((stack_dir / "stack.json").read_text())["services"]["elasticsearch"]["port"] == record["port"]
    assert aitrace("status", state=stack_dir).returncode == 0


def test_up_on_a_taken_port_fails_cleanly_and_rolls_back(stack_dir: Path) -> None:
    kafka_port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = aitrace("up", "--kafka-port", str(kafka_port), "--es-port", str(taken), state=stack_dir)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"port {taken}" in result.stderr and "already in use" in result.stderr
    # Tansu started first and must have been stopped again: no half stack, no record.
    assert not (stack_dir / "stack.json").exists()
    assert _pids_serving(kafka_port) == []


def test_up_with_a_missing_binary_is_one_clear_line(stack_dir: Path, tmp_path: Path) -> None:
    result = aitrace("up", state=stack_dir, env={"AITRACE_OSMEM_BIN": str(tmp_path / "missing")})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "osmem-server binary not found" in result.stderr and "aitrace[embedded]" in result.stderr
    assert not (stack_dir / "stack.json").exists()


def test_external_endpoints_are_not_started_and_are_reported(stack_dir: Path, fresh_search: OsmemProcess) -> None:
    env = {"AITRACE_ES_URL": fresh_search.url}
    result = aitrace("up", state=stack_dir, env=env)
    assert result.returncode == 0, result.stderr
    state = json.loads((stack_dir / "stack.json").read_text())
    assert set(state["services"]) == {"kafka"}
    assert state["external"] == {"elasticsearch": fresh_search.url}
    shown = aitrace("status", "--json", state=stack_dir, env=env)
    rows = {row["role"]: row for row in json.loads(shown.stdout)}
    assert rows["elasticsearch"]["kind"] == "external" and rows["elasticsearch"]["healthy"]
    assert shown.returncode == 0
    fresh_search.kill()
    assert aitrace("status", state=stack_dir, env=env).returncode == 1


def test_down_leaves_a_reused_pid_alone(stack_dir: Path) -> None:
    # The record says "tansu, pid N", but pid N is now some other program: it must survive.
    other = subprocess.Popen(["sleep", "60"])
    try:
        stack_dir.mkdir(parents=True)
        record = {"binary": find_binary("tansu"), "pid": other.pid, "port": free_port(), "address": "x"}
        (stack_dir / "stack.json").write_text(json.dumps({"services": {"kafka": record}}))
        shown = aitrace("status", state=stack_dir)
        assert shown.returncode == 1 and "dead" in shown.stdout
        result = aitrace("down", state=stack_dir)
        assert result.returncode == 0 and "no longer running" in result.stdout
        assert other.poll() is None
        assert not (stack_dir / "stack.json").exists()
    finally:
        other.kill()
        other.wait()


def test_a_corrupt_record_is_a_clear_error_and_kept(stack_dir: Path) -> None:
    stack_dir.mkdir(parents=True)
    (stack_dir / "stack.json").write_text("{not json")
    for command in ("up", "status", "down"):
        result = aitrace(command, state=stack_dir)
        assert result.returncode == 1 and "stack.json is not valid JSON" in result.stderr
    assert (stack_dir / "stack.json").read_text() == "{not json"


def test_up_refuses_a_new_port_while_running(stack_dir: Path) -> None:
    assert aitrace("up", state=stack_dir).returncode == 0
    result = aitrace("up", "--kafka-port", str(free_port()), state=stack_dir)
    assert result.returncode == 1 and "aitrace down" in result.stderr


CHILD_SCRIPT = """
import sys, threading
from aitrace.infra.stack import OsmemProcess, TansuProcess, start_service
started = []
# Started from a thread that ends at once: the services must outlive the thread, not the process.
worker = threading.Thread(target=lambda: started.extend(
    start_service(cls, sys.argv[1], timeout=60) for cls in (TansuProcess, OsmemProcess)))
worker.start()
worker.join()
print(" ".join(str(s.pid) for s in started), flush=True)
sys.stdin.read()
"""


def test_attached_services_die_with_their_parent_process(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(0.5)  # the starting thread is gone by now; a thread-bound death signal would have fired
        assert all(pid_runs_any(pid) for pid in pids)
        parent.kill()  # SIGKILL: no atexit, no cleanup code runs in the parent
        parent.wait()
        deadline = time.monotonic() + 15
        while any(pid_runs_any(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(pid_runs_any(pid) for pid in pids)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_the_kafka_probe_rejects_a_server_that_is_not_kafka() -> None:
    # An HTTP server's "HTTP/1.1 ..." would read as a 1.2 GB Kafka frame: refused, not allocated.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer_http() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer_http, daemon=True)
        thread.start()
        with pytest.raises(ConnectionError, match="not a Kafka response"):
            kafka_metadata("127.0.0.1", port, timeout=5)
        assert "not a Kafka response" in probe_kafka(f"127.0.0.1:{port}", timeout=5)
        thread.join(10)


def test_the_kafka_probe_tries_every_bootstrap_address(kafka: TansuProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    assert probe_kafka(f"{dead},{kafka.bootstrap}") == ""
    assert probe_kafka(dead).startswith(dead)


def test_the_http_probe_counts_an_auth_error_as_answering(tmp_path: Path) -> None:
    class Secured(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Secured) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            assert probe_http(f"http://127.0.0.1:{server.server_address[1]}") == ""
        finally:
            server.shutdown()
    assert probe_http(f"http://127.0.0.1:{free_port()}") != ""


def test_an_unusable_state_dir_is_one_clear_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = aitrace("up", "--state-dir", str(not_a_dir), state=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and str(not_a_dir) in result.stderr, result.stderr


def test_a_running_service_made_external_later_is_still_stopped_by_down(stack_dir: Path, kafka: TansuProcess) -> None:
    assert aitrace("up", state=stack_dir).returncode == 0
    embedded = json.loads((stack_dir / "stack.json").read_text())["services"]["kafka"]
    env = {"AITRACE_KAFKA_BOOTSTRAP": kafka.bootstrap}
    assert aitrace("up", state=stack_dir, env=env).returncode == 0
    state = json.loads((stack_dir / "stack.json").read_text())
    assert state["services"]["kafka"]["pid"] == embedded["pid"]  # not forgotten, not restarted
    assert state["external"] == {"kafka": kafka.bootstrap}
    assert aitrace("down", state=stack_dir, env=env).returncode == 0
    assert not pid_runs_any(embedded["pid"])
    assert kafka.answers()  # the external broker is not ours to stop


def test_a_picked_port_taken_before_the_bind_is_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        picks = iter([taken, free_port()])
        monkeypatch.setattr(services, "free_port", lambda host="127.0.0.1": next(picks))
        server = start_service(OsmemProcess, tmp_path, timeout=60)
        try:
            assert server.port != taken and server.answers()
        finally:
            server.kill()
        with pytest.raises(PortInUse):
            start_service(OsmemProcess, tmp_path, port=taken)  # a configured port is never swapped


def test_only_commands_follow_a_recorded_dev_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a training job started in a directory where someone once ran `aitrace up` must not
    # send its events to that dev stack: the library reads the environment only
    (tmp_path / "stack.json").write_text(
        json.dumps({"endpoints": {"kafka": "127.0.0.1:19092", "elasticsearch": "http://127.0.0.1:19200"}})
    )
    monkeypatch.delenv("AITRACE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("AITRACE_ES_URL", raising=False)
    monkeypatch.setenv("AITRACE_STATE_DIR", str(tmp_path))
    library = Settings.from_env()
    assert (library.kafka.kafka_bootstrap, library.search.es_url) == (KafkaConfig.kafka_bootstrap, SearchConfig.es_url)
    command = Settings.from_env(dev_stack=True)
    assert (command.kafka.kafka_bootstrap, command.search.es_url) == ("127.0.0.1:19092", "http://127.0.0.1:19200")
    monkeypatch.setenv("AITRACE_KAFKA_BOOTSTRAP", "kafka.prod:9092")  # the environment wins for both
    assert Settings.from_env(dev_stack=True).kafka.kafka_bootstrap == "kafka.prod:9092"
