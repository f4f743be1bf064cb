"""Record this machine's own telemetry at 1 s while a real ASGI service is under load.

    .venv/bin/python bench/record_telemetry.py [--minutes 30] [--rate 30] [--out bench/data/x.csv]

Every second one CSV row: CPU utilisation (total and per core, from /proc/stat deltas),
load average, memory (/proc/meminfo), disk read/write bytes/s (/proc/diskstats deltas
over the whole-disk devices that have real hardware behind them), network rx/tx bytes/s
(/proc/net/dev deltas over every interface, loopback included: the service and its load
generator talk over 127.0.0.1, and so does everything else running here), process
counts, and, for a small starlette service under uvicorn (scikit-learn predict + JSON
per request; a child process bound to 127.0.0.1) driven by an open-loop load generator
(Poisson arrivals at --rate requests/s), the requests answered in that second, errors,
latency p50/p95/max (ms, measured by the client) and the service's CPU and RSS. Every
request (time sent, latency, ok) also goes to ``<out stem>.requests.csv.gz``.

Nothing is labelled: this is normal operation, so every incident raised on it is a
false alarm. Everything stops by itself after --minutes (the service after a deadline of
its own too, should this process die first).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------------------- the service
def _service_app() -> Any:
    """Starlette app: POST /predict {"rows": [[30 floats], ...]} -> class probabilities."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    x, y = load_breast_cancer(return_X_y=True)
    model = RandomForestClassifier(n_estimators=60, max_depth=8, random_state=0).fit(x, y)

    def predict(rows: list[list[float]]) -> dict[str, Any]:
        proba = model.predict_proba(np.asarray(rows, dtype=np.float64))[:, 1]
        return {"proba": [round(float(p), 4) for p in proba], "n": len(rows)}

    async def predict_route(request: Request) -> JSONResponse:
        body = await request.json()
        # CPU-bound work goes to the thread pool, as a real service keeps its event loop free.
        return JSONResponse(await run_in_threadpool(predict, body["rows"]))

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/predict", predict_route, methods=["POST"]), Route("/health", health)])


def serve(port: int, max_seconds: float) -> None:
    import uvicorn

    config = uvicorn.Config(_service_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    # Own deadline: the service never outlives the recording, even if the recorder is killed.
    deadline = threading.Timer(max_seconds, lambda: setattr(server, "should_exit", True))
    deadline.daemon = True  # a SIGTERM ends the process now, not when the deadline passes
    deadline.start()
    server.run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"service on 127.0.0.1:{port} not ready after {timeout:.0f} s")


# ----------------------------------------------------------------------------- load generator
class LoadGenerator(threading.Thread):
    """Open loop: Poisson arrivals at ``rate``/s, sent one at a time over a keep-alive connection."""

    def __init__(self, port: int, rate: float, seconds: float, seed: int = 0) -> None:
        super().__init__(daemon=True)
        self.port, self.rate, self.seconds = port, rate, seconds
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.done: list[tuple[float, bool, float]] = []  # (latency ms, ok, unix time sent) since the last drain
        self.stop = threading.Event()
        from sklearn.datasets import load_breast_cancer

        self.pool = load_breast_cancer().data

    def drain(self) -> list[tuple[float, bool, float]]:
        with self.lock:
            out, self.done = self.done, []
        return out

    def _body(self) -> bytes:
        # 1-20 real rows with a little noise: request sizes (and so latencies) vary like real traffic.
        rows = self.pool[self.rng.integers(0, len(self.pool), int(self.rng.integers(1, 21)))]
        rows = rows * self.rng.normal(1.0, 0.02, rows.shape)
        return json.dumps({"rows": rows.round(5).tolist()}).encode()

    def _send(self, conn: http.client.HTTPConnection) -> bool:
        conn.request("POST", "/predict", body=self._body(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        start = time.monotonic()
        due = start
        while not self.stop.is_set() and time.monotonic() - start < self.seconds:
            due += float(self.rng.exponential(1.0 / self.rate))
            pause = due - time.monotonic()
            if pause > 0:
                self.stop.wait(pause)
            t, sent = time.perf_counter(), time.time()
            try:
                ok = self._send(conn)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()  # a fresh connection for the next request
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            with self.lock:
                self.done.append((1000 * (time.perf_counter() - t), ok, sent))
        conn.close()


# ----------------------------------------------------------------------------- /proc readers
def _cpu_times() -> dict[str, tuple[int, int]]:
    """cpu name -> (busy ticks, total ticks); iowait counts as idle, steal as busy."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu"):
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            idle = v[3] + v[4]
            out[name] = (sum(v) - idle, sum(v))
    return out


def _proc_stat_counter(key: str) -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(key + " "):
            return int(line.split()[1])
    return 0


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, rest = line.split(":", 1)
        out[key] = int(rest.split()[0]) * 1024
    return out


def _real_disks() -> set[str]:
    """Whole disks with a device behind them (vda, sda, nvme0n1): no loop, zram, dm, partitions."""
    return {p.name for p in Path("/sys/block").iterdir() if (p / "device").exists()}


def _disk_bytes(disks: set[str]) -> tuple[int, int]:
    read = write = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] in disks:
            read += int(f[5]) * SECTOR
            write += int(f[9]) * SECTOR
    return read, write


def _net_bytes() -> tuple[int, int]:
    rx = tx = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        _name, rest = line.split(":", 1)
        f = rest.split()
        rx += int(f[0])
        tx += int(f[8])
    return rx, tx


def _proc_counts() -> tuple[int, int]:
    """(processes, runnable tasks)."""
    total = sum(1 for p in os.listdir("/proc") if p.isdigit())
    return total, _proc_stat_counter("procs_running")


def _process_usage(pid: int) -> tuple[int, int]:
    """(utime + stime ticks, RSS bytes) of one process; (0, 0) once it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(f[11]) + int(f[12]), int(f[21]) * PAGE


# ----------------------------------------------------------------------------- sampler
class Sampler:
    """Counters read once per second; each row holds the deltas since the previous read."""

    def __init__(self, service_pid: int) -> None:
        self.pid = service_pid
        self.disks = _real_disks()
        self.prev = self._read()
        self.cores = sorted((c for c in self.prev["cpu"] if c != "cpu"), key=lambda c: int(c[3:]))

    def _read(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "cpu": _cpu_times(),
            "disk": _disk_bytes(self.disks),
            "net": _net_bytes(),
            "ctxt": _proc_stat_counter("ctxt"),
            "svc": _process_usage(self.pid),
        }

    def header(self) -> list[str]:
        cols = ["time", "cpu_pct"] + [f"{c}_pct" for c in self.cores]
        cols += ["load1", "load5", "load15", "mem_used_mb", "mem_available_mb", "disk_read_bps", "disk_write_bps"]
        cols += ["net_rx_bps", "net_tx_bps", "ctxt_per_s", "procs", "procs_running"]
        cols += ["svc_cpu_pct", "svc_rss_mb", "requests", "errors", "latency_p50_ms", "latency_p95_ms"]
        return [*cols, "latency_max_ms"]

    def row(self, done: list[tuple[float, bool, float]]) -> list[Any]:
        cur, prev = self._read(), self.prev
        self.prev = cur
        dt = cur["t"] - prev["t"]

        def pct(name: str) -> float:
            busy = cur["cpu"][name][0] - prev["cpu"][name][0]
            total = cur["cpu"][name][1] - prev["cpu"][name][1]
            return round(100 * busy / total, 2) if total > 0 else 0.0

        mem = _meminfo()
        procs, running = _proc_counts()
        lat = np.array([d[0] for d in done])
        q = [round(float(v), 3) for v in np.percentile(lat, [50, 95, 100])] if lat.size else ["", "", ""]
        out: list[Any] = [_iso(time.time())]
        out += [pct("cpu"), *(pct(c) for c in self.cores)]
        out += [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
        out += [round((mem["MemTotal"] - mem["MemAvailable"]) / 2**20, 1), round(mem["MemAvailable"] / 2**20, 1)]
        out += [round((c - p) / dt) for c, p in zip(cur["disk"], prev["disk"], strict=True)]
        out += [round((c - p) / dt) for c, p in zip(cur["net"], prev["net"], strict=True)]
        out += [round((cur["ctxt"] - prev["ctxt"]) / dt), procs, running]
        out += [round(100 * (cur["svc"][0] - prev["svc"][0]) / TICK / dt, 2), round(cur["svc"][1] / 2**20, 1)]
        return [*out, len(done), sum(1 for d in done if not d[1]), *q]


# ----------------------------------------------------------------------------- main
def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def requests_path(out: Path) -> Path:
    """Every request of the recording (time sent, latency, ok), beside the per-second CSV."""
    return out.with_name(out.stem + ".requests.csv.gz")


def _snapshot(label: str) -> None:
    """Load average and the busiest processes, for the data's README."""
    top = subprocess.run(
        ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True, check=False
    )
    print(f"--- {label} {datetime.now(UTC).isoformat(timespec='seconds')}", flush=True)
    print("loadavg:", Path("/proc/loadavg").read_text().strip(), flush=True)
    print("\n".join(line[:200] for line in top.stdout.splitlines()[:12]), flush=True)


def record(minutes: float, rate: float, out: Path) -> int:
    seconds = round(minutes * 60)
    port = _free_port()
    svc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--minutes", str(minutes + 2)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port)
        _snapshot("start")
        load = LoadGenerator(port, rate, seconds + 5)
        sampler = Sampler(svc.pid)
        load.start()
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as fh, gzip.open(requests_path(out), "wt", newline="") as rq:
            writer, each = csv.writer(fh), csv.writer(rq)
            writer.writerow(sampler.header())
            each.writerow(["time", "latency_ms", "ok"])
            start = time.monotonic()
            for k in range(1, seconds + 1):  # bounded: one row per second, ``seconds`` rows
                time.sleep(max(0.0, start + k - time.monotonic()))
                done = load.drain()
                writer.writerow(sampler.row(done))
                each.writerows((_iso(sent), round(ms, 3), int(ok)) for ms, ok, sent in done)
                fh.flush()  # a partial recording survives an interruption
        load.stop.set()
        load.join(timeout=10)
        _snapshot("end")
    finally:
        svc.terminate()
        try:
            svc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            svc.kill()
    print(f"wrote {seconds} rows to {out}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=30.0, help="mean requests/s of the load generator")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.minutes * 60)
        return 0
    if not 0 < args.rate <= 100:
        parser.error("--rate must be in (0, 100]: the machine is shared")
    day = datetime.now(UTC).strftime("%Y%m%d")
    out = args.out or Path(__file__).resolve().parent / "data" / f"telemetry-{socket.gethostname()}-{day}.csv"
    # A recording stopped early (`kill PID`; a background job ignores Ctrl-C's SIGINT) still closes its files:
    # the request log is gzip, unreadable to its end without its trailer.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return record(args.minutes, args.rate, out)


if __name__ == "__main__":
    raise SystemExit(main())
