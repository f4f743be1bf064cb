"""The embedded stack: process management, the shared fixtures, `aitrace up/status/down`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aitrace.infra.stack import (
    BinaryNotFound,
    OsmemProcess,
    PortInUse,
    TansuProcess,
    find_binary,
    free_port,
    http_info,
)
from confluent_kafka import Consumer, Producer, TopicPartition


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
