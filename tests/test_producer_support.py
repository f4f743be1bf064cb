"""Helpers for the producer tests: read back what a client delivered, decoded, by event id.

(No tests here; the module name lets the producer tests share it.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from aitrace.schemas.codec import AvroDeserializer, as_batch
from confluent_kafka import Consumer, TopicPartition

_decoder = AvroDeserializer()


def decode(value: bytes) -> dict[str, Any]:
    """One Kafka record value as an ``aitrace.Batch``."""
    name, obj = _decoder.decode(value)
    return as_batch(name, obj)


def event_ids(batch: dict[str, Any]) -> list[str]:
    """Every event id a batch carries: envelopes' ids and ``<block_id>:<i>`` for metric points."""
    ids = [e["event_id"] for e in batch["events"]]
    for block in batch["metric_blocks"]:
        ids.extend(f"{block['block_id']}:{i}" for i in range(len(block["steps"])))
    return ids


def metric_steps(batch: dict[str, Any]) -> list[int]:
    """The steps of all metric points in a batch."""
    return [s for block in batch["metric_blocks"] for s in block["steps"]]


def consume(
    bootstrap: str,
    topic_prefix: str,
    done: Callable[[list[tuple[str, dict[str, Any]]]], bool],
    timeout: float = 30.0,
) -> list[tuple[str, dict[str, Any]]]:
    """Read every partition of the topics under ``topic_prefix`` from the start until ``done(records)``.

    Partitions are assigned explicitly (no group join: slow on Tansu); topics that appear later
    are picked up on the next metadata refresh.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic_prefix}",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 1,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    records: list[tuple[str, dict[str, Any]]] = []
    assigned: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout
    next_refresh = 0.0
    try:
        while time.monotonic() < deadline:
            if time.monotonic() >= next_refresh:
                _assign_new(consumer, topic_prefix, assigned)
                next_refresh = time.monotonic() + 1.0
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                records.append((msg.topic(), decode(msg.value())))
            elif msg is None and done(records):
                return records
    finally:
        consumer.close()
    return records


def _assign_new(consumer: Consumer, prefix: str, assigned: set[tuple[str, int]]) -> None:
    metadata = consumer.list_topics(timeout=5)
    new = [
        TopicPartition(name, p, 0)
        for name, topic in metadata.topics.items()
        if name.startswith(prefix + ".")
        for p in topic.partitions
        if (name, p) not in assigned
    ]
    if new:
        assigned.update((tp.topic, tp.partition) for tp in new)
        consumer.incremental_assign(new)


def all_ids(records: Iterable[tuple[str, dict[str, Any]]]) -> set[str]:
    return {i for _, batch in records for i in event_ids(batch)}


def all_steps(records: Iterable[tuple[str, dict[str, Any]]]) -> set[int]:
    return {s for _, batch in records for s in metric_steps(batch)}


def test_one_set_of_cast_rules_for_every_settings_class() -> None:
    from aitrace.processors.options import WorkerOptions
    from aitrace.producers.config import KafkaConfig, ProducerConfig, SearchConfig, Settings

    env = {"AITRACE_ES_VERIFY_CERTS": "No", "AITRACE_WORKER_INDEX": "No", "AITRACE_WORKER_PARTITIONS": "8"}
    env |= {"AITRACE_QUEUE_SIZE": "", "AITRACE_WORKER_GRACE_S": "2.5"}  # empty: unset
    settings, options = Settings.from_env(env), WorkerOptions.from_env(env)
    assert settings.search.es_verify_certs is False and options.index is False
    assert (options.partitions, options.grace_s, settings.producer.queue_size) == (8, 2.5, ProducerConfig.queue_size)
    assert SearchConfig.from_env(env).es_verify_certs is False  # the same rule, the concern loaded alone
    bad = (
        (Settings, "AITRACE_QUEUE_SIZE", "int"),
        (ProducerConfig, "AITRACE_SAMPLE_RATE", "float"),
        (KafkaConfig, "AITRACE_KAFKA_BOOTSTRAP", None),  # a str takes any text
        (WorkerOptions, "AITRACE_WORKER_PARTITIONS", "int"),
    )
    for cls, var, kind in bad:
        if kind is None:
            assert cls.from_env({var: "many"}).kafka_bootstrap == "many"
            continue
        with pytest.raises(ValueError, match=f"{var}='many' is not a valid {kind}"):
            cls.from_env({var: "many"})


def test_each_concern_loads_alone_and_settings_composes_them() -> None:
    from dataclasses import fields

    from aitrace.producers.config import KafkaConfig, ProducerConfig, SearchConfig, Settings, setting_fields

    env = {"AITRACE_KAFKA_BOOTSTRAP": "k:1", "AITRACE_TOPIC_PREFIX": "t", "AITRACE_INDEX_PREFIX": "i"}
    env |= {"AITRACE_SERVICE": "svc", "AITRACE_BATCH_MAX_EVENTS": "7", "AITRACE_ES_URL": "http://es:1"}
    kafka, search, producer = KafkaConfig.from_env(env), SearchConfig.from_env(env), ProducerConfig.from_env(env)
    assert (kafka.kafka_bootstrap, kafka.topic("alerts")) == ("k:1", "t.alerts")
    assert (search.es_url, search.index_prefix) == ("http://es:1", "i")
    assert (producer.service, producer.batch_max_events) == ("svc", 7)
    settings = Settings.from_env(env, batch_max_events=9, index_prefix=None)  # None: unset, the env stays
    assert (settings.kafka, settings.search) == (kafka, search)
    assert settings.producer == ProducerConfig.from_env(env, batch_max_events=9)
    assert Settings(service="svc", kafka_bootstrap="k:1").producer.service == "svc"  # flat names routed
    with pytest.raises(TypeError, match="no field 'bootstrap'"):
        Settings.from_env(env, bootstrap="k:2")
    # Every field belongs to one concern and is read there: Settings keeps no flat copy of it.
    names = [f.name for f in setting_fields()]
    assert len(names) == len(set(names)) == sum(len(fields(c)) for c in (KafkaConfig, SearchConfig, ProducerConfig))
    for name in names:
        assert not hasattr(settings, name), name
    assert [f.name for f in fields(Settings)] == ["kafka", "search", "producer"]
