"""Resource samples (CPU, memory, disk and network I/O, GPUs) for ``aitrace.ResourceSample``.

With ``psutil`` (a dependency of the package; it runs on Linux, macOS and Windows): the
process's CPU share, resident memory and I/O, and the host's CPU, memory, disk and network
I/O (loopback left out). An install without psutil falls back to the standard library and
``/proc`` (Linux): process CPU and memory only, the other fields None. A figure the platform
or its permissions refuse (process I/O on macOS) is None, and a debug line says so once.

Rates (``cpu_percent``, ``*_bytes_per_s``) are over the time since the previous sample, so
the first sample has none. Process CPU: 100 = one core busy; host CPU: 100 = all cores busy.

GPUs are read through NVML when ``pynvml`` (the ``nvidia-ml-py`` package, extra ``gpu``) is
importable and a driver answers; otherwise samples have no GPUs and one info line says why.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("aitrace.resources")

_T = TypeVar("_T")
# CPU times advance in clock ticks (10 ms on Linux): over a shorter interval a rate is mostly rounding.
MIN_RATE_INTERVAL_S = 0.1
_LOOPBACK = frozenset({"lo", "lo0", "Loopback Pseudo-Interface 1"})  # Linux, macOS, Windows
_lock = threading.Lock()  # the sampler thread and a caller's client.resources() share the counters
_previous: dict[str, tuple[float, float]] = {}  # counter -> (monotonic time, value) at the last sample
_said: set[str] = set()
_processes: dict[int, Any] = {}  # psutil.Process by pid: a forked child must not read its parent
_nvml_state: dict[str, Any] = {}


def _fresh_lock_after_fork() -> None:
    # A fork while the parent's sampler held the lock would leave the child's copy locked for good.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_after_fork)


def _say_once(key: str, level: int, message: str, *args: Any, exc_info: bool = False) -> None:
    if key not in _said:
        _said.add(key)
        log.log(level, message, *args, exc_info=exc_info)


def _rate(key: str, value: float | None, now: float) -> float | None:
    """Change per second of a cumulative counter since the previous sample; None the first time.

    A counter that went down (a restarted counter, a forked child, an interface gone) gives None.
    Within ``MIN_RATE_INTERVAL_S`` of the previous sample: None, and the next rate spans both.
    """
    if value is None:
        return None
    prev = _previous.get(key)
    if prev is not None and 0 <= now - prev[0] < MIN_RATE_INTERVAL_S and value >= prev[1]:
        return None
    _previous[key] = (now, value)
    if prev is None or value < prev[1]:
        return None
    return (value - prev[1]) / (now - prev[0])


def _read(what: str, fn: Callable[[], _T]) -> _T | None:
    """``fn()``, or None where the platform or its permissions refuse it (said once, never raised)."""
    try:
        return fn()
    except Exception as exc:  # psutil.AccessDenied, NotImplementedError, a missing /proc file, ...
        _say_once(what, logging.DEBUG, "aitrace: no %s in resource samples (%s: %s)", what, type(exc).__name__, exc)
        return None


# -- without psutil: the standard library and /proc


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # Unix only
    except ImportError:
        return None
    # ru_maxrss is the peak, not the current size: better than nothing off Linux (bytes on macOS, KiB elsewhere).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _mem_total_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf on Windows
        return None


def _stdlib_sample(now: float) -> dict[str, Any]:
    times = os.times()
    rss = _rss_bytes()
    total = _mem_total_bytes()
    return {
        "cpu_percent": _percent(_rate("cpu", times.user + times.system, now)),
        "memory_rss_bytes": rss,
        "memory_percent": 100.0 * rss / total if rss is not None and total else None,
    }


# -- with psutil


def _percent(seconds_per_second: float | None) -> float | None:
    return None if seconds_per_second is None else 100.0 * seconds_per_second


def _process(psutil: Any) -> Any:
    pid = os.getpid()
    proc = _processes.get(pid)
    if proc is None:
        _processes.clear()
        proc = _processes[pid] = psutil.Process(pid)
    return proc


def _process_fields(psutil: Any, now: float, host_total: int | None) -> dict[str, Any]:
    proc = _process(psutil)
    cpu = _read("process CPU", proc.cpu_times)
    rss = _read("process memory", lambda: proc.memory_info().rss)
    io = _read("process I/O", proc.io_counters)  # absent on macOS
    return {
        "cpu_percent": _percent(_rate("cpu", cpu.user + cpu.system if cpu else None, now)),
        "memory_rss_bytes": rss,
        "memory_percent": 100.0 * rss / host_total if rss is not None and host_total else None,
        "disk_read_bytes_per_s": _rate("io_read", io.read_bytes if io else None, now),
        "disk_write_bytes_per_s": _rate("io_write", io.write_bytes if io else None, now),
    }


def _host_cpu_percent(times: Any, now: float) -> float | None:
    if times is None:
        return None
    # guest time is counted in user/nice already (Linux); idle and iowait are not busy
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    busy = _rate("host_busy", total - times.idle - getattr(times, "iowait", 0.0), now)
    elapsed = _rate("host_total", total, now)
    return 100.0 * busy / elapsed if busy is not None and elapsed else None


def _network_bytes(psutil: Any) -> tuple[int, int]:
    """Bytes sent and received by every interface but loopback (local traffic is not network I/O)."""
    nics = [c for name, c in psutil.net_io_counters(pernic=True).items() if name not in _LOOPBACK]
    return sum(c.bytes_sent for c in nics), sum(c.bytes_recv for c in nics)


def _host_fields(psutil: Any, now: float, memory: Any) -> dict[str, Any]:
    disk = _read("host disk I/O", psutil.disk_io_counters)  # None on a host without disks (some containers)
    net = _read("host network I/O", lambda: _network_bytes(psutil))
    return {
        "host_cpu_percent": _host_cpu_percent(_read("host CPU", psutil.cpu_times), now),
        "host_memory_used_bytes": memory.total - memory.available if memory else None,
        "host_memory_total_bytes": memory.total if memory else None,
        "host_memory_percent": float(memory.percent) if memory else None,
        "host_disk_read_bytes_per_s": _rate("disk_read", disk.read_bytes if disk else None, now),
        "host_disk_write_bytes_per_s": _rate("disk_write", disk.write_bytes if disk else None, now),
        "host_net_sent_bytes_per_s": _rate("net_sent", net[0] if net else None, now),
        "host_net_recv_bytes_per_s": _rate("net_recv", net[1] if net else None, now),
    }


def _psutil_sample(psutil: Any, now: float) -> dict[str, Any]:
    memory = _read("host memory", psutil.virtual_memory)
    return {
        **_process_fields(psutil, now, memory.total if memory else None),
        **_host_fields(psutil, now, memory),
    }


def _import_psutil() -> Any:
    try:
        import psutil
    except ImportError as exc:
        _say_once("psutil", logging.INFO, "aitrace: psutil is missing (%s): resource samples from /proc", exc)
        return None
    return psutil


# -- GPUs


def _nvml_optional(fn: Callable[..., Any], *args: Any) -> Any:
    """An NVML reading a device may not support (power, temperature, utilization under MIG): None then."""
    try:
        return fn(*args)
    except Exception:
        return None


def _gpu(pynvml: Any, index: int) -> dict[str, Any]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = _nvml_optional(pynvml.nvmlDeviceGetName, handle)
    mem = _nvml_optional(pynvml.nvmlDeviceGetMemoryInfo, handle)
    util = _nvml_optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
    temperature = _nvml_optional(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)
    milliwatts = _nvml_optional(pynvml.nvmlDeviceGetPowerUsage, handle)
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else None if name is None else str(name),
        "utilization_percent": float(util.gpu) if util is not None else None,
        "memory_used_bytes": int(mem.used) if mem is not None else None,
        "memory_total_bytes": int(mem.total) if mem is not None else None,
        "temperature_c": float(temperature) if temperature is not None else None,
        "power_w": milliwatts / 1000.0 if milliwatts is not None else None,
    }


def gpu_samples() -> list[dict[str, Any]]:
    """One ``aitrace.GpuSample`` per NVIDIA device; [] without pynvml, a driver or a GPU (said once)."""
    if _nvml_state.get("unavailable"):
        return []
    try:
        import pynvml

        if not _nvml_state.get("initialized"):
            pynvml.nvmlInit()
            _nvml_state["initialized"] = True
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            raise LookupError("NVML sees no GPU")
        return [_gpu(pynvml, index) for index in range(count)]
    except Exception as exc:
        _nvml_state["unavailable"] = True
        log.info("aitrace: no GPU sampling (%s: %s)", type(exc).__name__, exc)
        return []


def sample() -> dict[str, Any]:
    """An ``aitrace.ResourceSample`` of this process and its host now. Never raises."""
    psutil = _import_psutil()
    with _lock:
        now = time.monotonic()
        fields = _read("resources", lambda: _psutil_sample(psutil, now) if psutil else _stdlib_sample(now))
    return {**(fields or {}), "gpus": gpu_samples()}


class ResourceSampler:
    """A daemon thread calling ``client.resources()`` at start, every ``interval_s``, and once more at :meth:`stop`.

    The last sample covers the end of the work, so even a run shorter than the interval gets a
    measured CPU share. Nothing the sampling does reaches the caller: a failure is logged once.
    """

    def __init__(self, client: Any, interval_s: float) -> None:
        if not 0 < interval_s <= threading.TIMEOUT_MAX:  # NaN spun at 3,000 samples/s, inf killed the thread
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
        self.client = client
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aitrace-resources", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.interval_s):
            self._sample()
        self._sample()

    def _sample(self) -> None:
        try:
            self.client.resources()
        except Exception:
            _say_once("sampler", logging.WARNING, "aitrace: a resource sample failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
