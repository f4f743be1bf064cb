"""Resource sampling: psutil readings, the /proc fallback, NVML, and the sampler inside ``client.run(...)``."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import aitrace
import fastavro
import pytest
from aitrace.producers import resources
from aitrace.producers.config import Settings
from aitrace.schemas import codec, compat
from aitrace.schemas.codec import AvroSerializer
from test_producer_support import all_ids, consume

HOST_FIELDS = (
    "host_cpu_percent",
    "host_memory_used_bytes",
    "host_memory_total_bytes",
    "host_memory_percent",
    "host_disk_read_bytes_per_s",
    "host_disk_write_bytes_per_s",
    "host_net_sent_bytes_per_s",
    "host_net_recv_bytes_per_s",
)
RATES = ("cpu_percent", "host_cpu_percent", "host_net_sent_bytes_per_s", "host_net_recv_bytes_per_s")


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Each test starts with no previous counters, nothing said yet and NVML not tried."""
    for state in (resources._previous, resources._said, resources._nvml_state):
        state.clear()
    yield
    for state in (resources._previous, resources._said, resources._nvml_state):
        state.clear()


def _burn(seconds: float) -> float:
    """Spin for ``seconds`` of wall time; the share of it this process got on a CPU, in percent.

    On a loaded machine the share is far below 100: the readings are checked against it.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    end = wall + seconds
    while time.perf_counter() < end:
        pass
    return 100.0 * (time.process_time() - cpu) / (time.perf_counter() - wall)


# -- readings


def test_psutil_samples_process_and_host_and_rates_from_the_second_sample_on() -> None:
    first = resources.sample()
    assert first["memory_rss_bytes"] > 0 and 0 < first["memory_percent"] < 100
    assert first["host_memory_total_bytes"] > first["host_memory_used_bytes"] > 0
    assert 0 < first["host_memory_percent"] < 100
    assert all(first[name] is None for name in RATES)  # no interval yet
    got = _burn(0.2)
    second = resources.sample()
    assert second["cpu_percent"] >= 0.5 * got  # this thread spun for the whole interval
    assert 0 < second["host_cpu_percent"] <= 100
    assert second["host_net_sent_bytes_per_s"] >= 0 and second["host_net_recv_bytes_per_s"] >= 0
    assert second["gpus"] == []
    AvroSerializer("aitrace.ResourceSample")(second)  # every field fits the schema


def test_without_psutil_the_proc_reader_gives_process_cpu_and_memory(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil raises ImportError
    with caplog.at_level(logging.INFO, logger="aitrace.resources"):
        first = resources.sample()
        got = _burn(0.15)
        second = resources.sample()
    assert set(first) == {"cpu_percent", "memory_rss_bytes", "memory_percent", "gpus"}
    assert first["cpu_percent"] is None and second["cpu_percent"] >= 0.5 * got
    assert second["memory_rss_bytes"] > 0 and second["memory_percent"] > 0
    assert caplog.text.count("psutil is missing") == 1  # said once, not per sample
    AvroSerializer("aitrace.ResourceSample")(second)  # the host fields take their defaults


def test_a_reading_the_platform_refuses_is_none_and_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import psutil

    def denied(self: Any) -> None:
        raise psutil.AccessDenied(pid=1)

    monkeypatch.setattr(psutil.Process, "io_counters", denied)
    monkeypatch.setattr(psutil, "disk_io_counters", lambda: None)  # a container without disks
    with caplog.at_level(logging.DEBUG, logger="aitrace.resources"):
        samples = [resources.sample() for _ in range(3)]
    assert all(s["disk_read_bytes_per_s"] is None and s["host_disk_read_bytes_per_s"] is None for s in samples)
    assert samples[-1]["host_memory_total_bytes"] > 0
    assert caplog.text.count("no process I/O in resource samples (AccessDenied") == 1


def test_sample_never_raises_even_when_everything_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    fake = types.SimpleNamespace(
        Process=broken, virtual_memory=broken, cpu_times=broken, disk_io_counters=broken, net_io_counters=broken
    )
    monkeypatch.setitem(sys.modules, "psutil", fake)
    monkeypatch.setattr(resources, "_processes", {})
    assert resources.sample() == {"gpus": []}


def test_a_sample_from_a_released_producer_reads_with_the_new_fields_empty() -> None:
    """ResourceSample gained optional fields: data written with the 0.1 schema still decodes."""
    from test_schemas import event

    old_sample = {"cpu_percent": 50.0, "memory_rss_bytes": 1 << 20, "memory_percent": 0.5, "gpus": []}
    old_batch = {"batch_id": "old", "events": [event("aitrace.ResourceSample", old_sample)], "metric_blocks": []}
    old_schema = next(c for c in compat.released_compiled().values() if c.name == "aitrace.Batch")
    buf = io.BytesIO(codec.SINGLE_OBJECT_MAGIC + old_schema.fingerprint)
    buf.seek(0, io.SEEK_END)
    fastavro.schemaless_writer(buf, old_schema.parsed, old_batch)
    _, decoded = codec.AvroDeserializer().decode(buf.getvalue())
    (payload_name, payload) = decoded["events"][0]["payload"]
    assert payload_name == "aitrace.ResourceSample"
    assert payload == {
        **old_sample,
        **dict.fromkeys(HOST_FIELDS),
        "disk_read_bytes_per_s": None,
        "disk_write_bytes_per_s": None,
    }


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_forked_while_the_lock_is_held_can_still_sample() -> None:
    with resources._lock:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if sampling works, killed by the alarm if it hangs
            signal.alarm(20)
            os._exit(0 if resources.sample()["memory_rss_bytes"] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_rates_skip_a_counter_that_went_down() -> None:
    assert resources._rate("c", 100.0, 1.0) is None
    assert resources._rate("c", 300.0, 3.0) == 100.0
    assert resources._rate("c", 50.0, 4.0) is None  # reset (a forked child, a new interface)
    assert resources._rate("c", 150.0, 5.0) == 100.0
    assert resources._rate("c", 151.0, 5.05) is None  # too soon to tell: the next rate spans both
    assert resources._rate("c", 170.0, 5.2) == pytest.approx(100.0)


def test_network_io_leaves_loopback_out() -> None:
    counters = types.SimpleNamespace
    nics = {
        "lo": counters(bytes_sent=10**9, bytes_recv=10**9),
        "eth0": counters(bytes_sent=300, bytes_recv=4000),
        "wlan0": counters(bytes_sent=2, bytes_recv=5),
    }
    fake = types.SimpleNamespace(net_io_counters=lambda pernic: nics)
    assert resources._network_bytes(fake) == (302, 4005)


# -- GPUs


def _fake_nvml(count: int, **overrides: Callable[..., Any]) -> types.SimpleNamespace:
    calls = {
        "nvmlInit": lambda: None,
        "nvmlDeviceGetCount": lambda: count,
        "nvmlDeviceGetHandleByIndex": lambda i: i,
        "nvmlDeviceGetName": lambda h: "NVIDIA H200",
        "nvmlDeviceGetMemoryInfo": lambda h: types.SimpleNamespace(used=1 << 30, total=141 << 30),
        "nvmlDeviceGetUtilizationRates": lambda h: types.SimpleNamespace(gpu=40),
        "nvmlDeviceGetTemperature": lambda h, sensor: 55,
        "nvmlDeviceGetPowerUsage": lambda h: 250_000,
    }
    calls.update(overrides)
    return types.SimpleNamespace(NVML_TEMPERATURE_GPU=0, **calls)


def test_a_machine_without_a_gpu_records_none_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(0))
    with caplog.at_level(logging.INFO, logger="aitrace.resources"):
        assert [resources.sample()["gpus"] for _ in range(3)] == [[], [], []]
    assert caplog.text.count("no GPU sampling (LookupError: NVML sees no GPU)") == 1


def test_the_real_nvml_binding_gives_each_gpu_or_none_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """nvidia-ml-py itself, no fake: on a machine without an NVIDIA driver (CI, this test's usual
    home) its nvmlInit raises NVMLError_LibraryNotFound; with one, every GPU is read."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        count, why = 0, f"{type(exc).__name__}: {exc}"
    else:
        why = "LookupError: NVML sees no GPU"
    with caplog.at_level(logging.INFO, logger="aitrace.resources"):
        samples = [resources.sample()["gpus"] for _ in range(2)]
    if count == 0:
        assert samples == [[], []]
        assert caplog.text.count(f"no GPU sampling ({why})") == 1
    else:
        assert [[g["index"] for g in s] for s in samples] == [list(range(count))] * 2
        assert all(g["memory_total_bytes"] > 0 for g in samples[0]) and "no GPU sampling" not in caplog.text


def test_a_reading_a_gpu_does_not_support_is_none_not_the_end_of_gpu_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_supported(*args: Any) -> None:
        raise RuntimeError("NVMLError_NotSupported")  # utilization under MIG, power on some boards

    fake = _fake_nvml(2, nvmlDeviceGetUtilizationRates=not_supported, nvmlDeviceGetPowerUsage=not_supported)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = resources.sample()["gpus"]
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0] == {
        "index": 0,
        "name": "NVIDIA H200",
        "utilization_percent": None,
        "memory_used_bytes": 1 << 30,
        "memory_total_bytes": 141 << 30,
        "temperature_c": 55.0,
        "power_w": None,
    }
    assert len(resources.sample()["gpus"]) == 2  # still sampled


# -- inside client.run(...)


def _events(client: aitrace.Client, n: int) -> list[tuple[str, dict[str, Any]]]:
    """``(payload name, payload)`` of the events read back (closing the client first), in event-time order."""
    assert client.close(timeout=30)
    records = consume(
        client.settings.kafka.kafka_bootstrap, client.settings.kafka.topic_prefix, lambda r: len(all_ids(r)) >= n, 30.0
    )
    events = sorted((e for _, batch in records for e in batch["events"]), key=lambda e: e["time"])
    assert len(events) == n
    return [(e["payload"][0].rsplit(".", 1)[-1], e["payload"][1]) for e in events]


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aitrace-resources"]


def test_the_default_interval_is_ten_seconds_and_a_setting() -> None:
    assert Settings().producer.resource_interval_s == 10.0
    assert Settings.from_env({"AITRACE_RESOURCE_INTERVAL_S": "2.5"}).producer.resource_interval_s == 2.5
    with pytest.raises(ValueError, match="resource_interval_s"):
        aitrace.init(service="x", resource_interval_s=-1)


def test_a_run_is_sampled_from_start_to_end_and_the_sampler_stops_with_it(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(run_id="run-res", resource_interval_s=0.15)
    with client.run("sampled"):
        assert len(_sampler_threads()) == 1
        got = _burn(0.5)
    assert _sampler_threads() == []
    enqueued = client.stats()["enqueued"]
    time.sleep(0.3)
    assert client.stats()["enqueued"] == enqueued  # nothing after the run
    events = _events(client, enqueued)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "RunLifecycle" and kinds[-1] == "RunLifecycle" and events[-1][1]["status"] == "FINISHED"
    samples = [p for kind, p in events if kind == "ResourceSample"]
    assert len(samples) == len(kinds) - 2 >= 3  # at the start, about every 0.15 s, and at the end
    assert samples[1]["cpu_percent"] >= 0.5 * got and samples[-1]["host_memory_total_bytes"] > 0


def test_interval_zero_turns_run_sampling_off(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(resource_interval_s=0)
    with client.run("quiet"):
        assert _sampler_threads() == []
    assert [kind for kind, _ in _events(client, 2)] == ["RunLifecycle", "RunLifecycle"]


def test_a_failing_sampler_never_reaches_the_run(
    make_client: Callable[..., aitrace.Client], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("sensor on fire")

    monkeypatch.setattr(resources, "sample", broken)
    client = make_client(resource_interval_s=0.02)
    with caplog.at_level(logging.WARNING, logger="aitrace.resources"), client.run("unlucky"):
        time.sleep(0.1)
    assert _sampler_threads() == []
    assert caplog.text.count("a resource sample failed") == 1 and "sensor on fire" in caplog.text
    assert [p["status"] for _, p in _events(client, 2)] == ["STARTED", "FINISHED"]


def test_a_client_wide_sampler_takes_over_and_its_last_sample_is_delivered_at_close(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client(resource_interval_s=0.05)
    client.start_resource_sampler(interval_s=60)  # one sample now; the next only at close
    with client.run("covered"):
        assert len(_sampler_threads()) == 1  # the run adds none
    client.close(timeout=30)
    stats = client.stats()
    assert stats["dropped"] == 0 and stats["sent"] == stats["enqueued"] == 4
    kinds = [kind for kind, _ in _events(client, 4)]
    assert kinds.count("ResourceSample") == 2 and kinds[-1] == "ResourceSample"
