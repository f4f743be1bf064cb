"""The worker's settings from the environment: :class:`WorkerOptions` (``AITRACE_WORKER_*``) and
:class:`TimeSkew` (``AITRACE_MAX_TIME_SKEW_S``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from aitrace.producers.config import EnvConfig

# The largest record the worker writes or reads back: a table's value (an entity's detector
# state, rewritten per chunk; recovered from the changelog on a restart) or a group of chunks.
# The broker must accept it too (Kafka's message.max.bytes; docker-compose.yml sets it). The
# entity caps of DetectionConfig keep the largest state under it: a model of max_model_series
# features at full drift windows (4.6 KB each as JSON, measured; 8.2 KB before the windows were
# packed as base64) and two full waiting rooms is about 9 MB. Beyond the producer's limit a
# changelog write would fail on every chunk of that entity (tests/test_hostile_records.py
# measures the sizes against this).
MAX_RECORD_BYTES = 16_000_000


@dataclass(frozen=True)
class WorkerOptions(EnvConfig):
    """Processor knobs; each reads ``AITRACE_WORKER_<NAME>`` and has a matching ``aitrace worker`` flag.

    Loaded like every config class (:meth:`from_env`: the one loader, the one set of cast rules).
    """

    env_prefix: ClassVar[str] = "AITRACE_WORKER_"

    app_id: str = "aitrace-processors"
    partitions: int = 4
    index: bool = True  # False: decode, correlate and detect only (benchmarks, dry runs)
    raw_metrics: bool = False  # True: index every metric point, never rollups
    max_raw_rate: float = 2.0  # points/s of one series above which it is rolled up
    rollup_window_s: float = 10.0
    idle_timeout_s: float = 30.0
    grace_s: float = 600.0
    tick_interval_s: float = 1.0
    stats_interval_s: float = 10.0
    anomaly_threshold: float = 0.9
    drift_window: int = 200
    session_timeout_s: float = 10.0
    commit_interval_s: float = 1.0
    batch_records: int = 200  # records per processing batch (one bulk request each)
    batch_wait_s: float = 0.05  # how long a batch waits to fill
    data_dir: str = ".aitrace/faust"
    web_port: int = 0  # 0: no web server
    warm_up: bool = True  # load the compiled kernels before the first record (processors/warmup.py)
    # Idle expiry of the series table's entities (processors/expiry.py), in the worker's wall-clock
    # seconds since the entity's last change; 0: never. A run that logs nothing for a week has died
    # without its end (a killed job sends none); an ended run's late points (a last evaluation,
    # a straggling rank) come within hours. Models and data stages: a weekly job keeps its
    # baselines and drift reference, with a week to spare.
    run_idle_s: float = 7 * 86400.0
    ended_run_idle_s: float = 86400.0  # a run whose FINISHED, FAILED or KILLED was seen
    model_idle_s: float = 14 * 86400.0
    data_idle_s: float = 14 * 86400.0
    expiry_interval_s: float = 60.0  # how often each series partition is swept for idle entities (0: never)


@dataclass(frozen=True)
class TimeSkew:
    """How far event times may lie from ingest time and still pick their own daily index.

    ``AITRACE_MAX_TIME_SKEW_S`` = ``"PAST"`` (both sides) or ``"PAST,FUTURE"`` seconds; default
    7 days back (late or replayed data), 1 day ahead (clock skew). Further out, the document
    keeps its ``@timestamp`` but goes to the ingest day's index, flagged (bit-flipped times
    made daily indices for other years). Not a :class:`WorkerOptions` field yet: every field
    there needs an ``aitrace worker`` flag and help text in ``processors/worker.py``.
    """

    past_s: float = 7 * 86400.0
    future_s: float = 86400.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> TimeSkew:
        raw = (os.environ if env is None else env).get("AITRACE_MAX_TIME_SKEW_S", "").strip()
        if not raw:
            return cls()
        try:
            parts = [float(x) for x in raw.split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2) or min(parts) < 0:
            raise ValueError(f"AITRACE_MAX_TIME_SKEW_S={raw!r} is not PAST or PAST,FUTURE seconds (>= 0)")
        return cls(parts[0], parts[-1])
