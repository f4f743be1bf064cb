"""The worker's topics: the input topics it reads, and creating what is missing with one partition count."""

from __future__ import annotations

import logging
from dataclasses import replace

from aitrace.processors.options import WorkerOptions
from aitrace.producers.config import KafkaConfig

log = logging.getLogger("aitrace.processors")

INPUT_TOPICS = ("events.training", "events.data", "events.inference", "events.system")


class TopicLayoutError(RuntimeError):
    """The input topics exist with partition counts that cannot be co-partitioned."""


def prepare_topics(kafka: KafkaConfig, options: WorkerOptions, timeout: float = 30.0) -> WorkerOptions:
    """Create missing input (and DLQ / alert) topics with ``options.partitions``; adopt the count of existing inputs.

    Faust's tables need every source topic and changelog to have one partition count. Topics
    that a producer created first (a broker's auto-create default) win over the flag, with
    a warning, so the worker still starts; input topics that disagree among themselves are
    an error that names them.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**kafka.kafka_config(), "socket.timeout.ms": 10_000})
    names = [kafka.topic(t) for t in INPUT_TOPICS]
    meta = admin.list_topics(timeout=timeout)
    existing = {n: len(meta.topics[n].partitions) for n in names if n in meta.topics and not meta.topics[n].error}
    counts = set(existing.values())
    if len(counts) > 1:
        raise TopicLayoutError(
            "input topics differ in partition count ("
            + ", ".join(f"{n}: {c}" for n, c in sorted(existing.items()))
            + "); recreate them with one count"
        )
    partitions = counts.pop() if counts else options.partitions
    if partitions != options.partitions:
        log.warning(
            "input topics already have %d partitions; using %d, not %d", partitions, partitions, options.partitions
        )
        options = replace(options, partitions=partitions)
    missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
    # Output topics too: a first send to a topic the broker must auto-create was seen to stall
    # aiokafka's flush on Tansu, and an operator's broker may not auto-create at all.
    # and the internal ticks / series topics: they must match the tables' partition count, and a
    # broker that auto-creates them first (Tansu: 4 partitions) would break co-partitioning
    outputs = [kafka.topic("dlq"), kafka.topic("alerts"), f"{options.app_id}-ticks", f"{options.app_id}-series"]
    missing += [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in outputs if n not in meta.topics]
    internal = {f"{options.app_id}-ticks", f"{options.app_id}-series"}
    wrong = {n: len(meta.topics[n].partitions) for n in internal if n in meta.topics}
    wrong = {n: c for n, c in wrong.items() if c != partitions}
    if wrong:
        raise TopicLayoutError(
            f"internal topics {sorted(wrong)} have {sorted(set(wrong.values()))} partitions, the inputs {partitions}: "
            "delete them (they hold no data worth keeping) or use another --app-id"
        )
    if missing:
        for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except Exception as exc:  # created meanwhile by a producer or another worker is fine
                if "exist" not in str(exc).lower():
                    raise TopicLayoutError(f"cannot create topic {name}: {exc}") from exc
    return options
