"""Resource samples (CPU, memory, GPUs) for ``aitrace.ResourceSample``, read without extra packages.

CPU and memory come from the standard library and ``/proc`` (Linux); elsewhere those fields
stay None. GPUs are read through NVML when ``pynvml`` is importable; otherwise the sample has
no GPUs and a debug line says why (once). CPU percent is the process's CPU time over wall time
since the previous sample (100 = one core busy).
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from typing import Any

log = logging.getLogger("aitrace.resources")

_last_cpu: tuple[float, float] | None = None
_nvml_state: dict[str, Any] = {}


def _cpu_percent() -> float | None:
    global _last_cpu
    times = os.times()
    now = (time.monotonic(), times.user + times.system)
    prev, _last_cpu = _last_cpu, now
    if prev is None or now[0] <= prev[0]:
        return None
    return 100.0 * (now[1] - prev[1]) / (now[0] - prev[0])


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # ru_maxrss is the peak, not the current size: better than nothing off Linux.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _mem_total_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def gpu_samples() -> list[dict[str, Any]]:
    """One ``aitrace.GpuSample`` per device via NVML; [] when pynvml or a driver is missing."""
    if _nvml_state.get("unavailable"):
        return []
    try:
        import pynvml  # type: ignore[import-not-found]

        if not _nvml_state.get("initialized"):
            pynvml.nvmlInit()
            _nvml_state["initialized"] = True
        out = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            out.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "utilization_percent": float(util.gpu),
                    "memory_used_bytes": int(mem.used),
                    "memory_total_bytes": int(mem.total),
                    "temperature_c": float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
                    "power_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                }
            )
        return out
    except Exception as exc:
        _nvml_state["unavailable"] = True
        log.debug("aitrace: no GPU sampling (%s: %s)", type(exc).__name__, exc)
        return []


def sample() -> dict[str, Any]:
    """An ``aitrace.ResourceSample`` of this process now."""
    rss = _rss_bytes()
    total = _mem_total_bytes()
    return {
        "cpu_percent": _cpu_percent(),
        "memory_rss_bytes": rss,
        "memory_percent": 100.0 * rss / total if rss is not None and total else None,
        "gpus": gpu_samples(),
    }


class ResourceSampler:
    """A daemon thread calling ``client.resources()`` every ``interval_s`` until :meth:`stop`."""

    def __init__(self, client: Any, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.client = client
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aitrace-resources", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.client.resources()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
