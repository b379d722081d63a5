"""How many Hotmart webhooks per second the ingest HTTP app accepts, next to a bare Flask baseline.

    uv run python benchmarks/ingest_throughput.py [--duration S] [--rate R] [--concurrency C] [--json PATH]

Both servers run under gunicorn with the project's own configuration module
(``coursebridge.runtime.gunicorn_conf``) and the same ``WEB_CONCURRENCY`` / ``GUNICORN_THREADS``, on free
loopback ports, one after the other:

* baseline: ``benchmarks/bare_app.py``, which answers 200 ``{"status": "accepted"}`` and does nothing else;
* ingest: ``ingest.entrypoints.api:create_app()`` on the embedded backend (SQLite in a temporary directory).

Each is measured twice:

* saturation: C closed-loop keep-alive clients for S seconds -> accepted requests/s, p50, p99, errors;
* fixed rate: an open-loop schedule of R requests/s for S seconds; each latency runs from the request's
  *scheduled* send time, so a stalled server is charged for the requests it delayed (no coordinated
  omission) -> p50, p99, max, achieved rate, errors.

Each phase starts with a warm-up (default 1 s, same load, not measured). The load comes from
``--processes`` (default 2) processes of threads, each thread with its own ``http.client`` keep-alive
connection. Every body is a PURCHASE_APPROVED webhook with a fresh ``id`` and transaction, so ingest
really stores each one. After the ingest run, the webhook documents in its SQLite store are counted and
compared with the number of 200 ``accepted`` answers.

Project targets (embedded backend): ingest/baseline saturation throughput >= 0.5 and ingest p99 <= 25 ms at
200 requests/s. The load generator shares the CPUs with the servers: on a small machine read the CPU
figures printed with the results before blaming either side.
"""

from __future__ import annotations

import argparse
import array
import http.client
import json
import math
import multiprocessing
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
GUNICORN_CONF = "python:coursebridge.runtime.gunicorn_conf"
WEBHOOK_PATH = "/webhooks/hotmart"
HOTTOK = "benchmark-hottok"  # module constant: the spawned load generators import it too
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
REQUEST_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
UNEVEN_WORKERS_SHARE = 0.75
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


# --------------------------------------------------------------------------------------------- bodies


def approval_body() -> bytes:
    """A PURCHASE_APPROVED webhook shaped like ``make_approval`` in services/ingest/tests/conftest.py."""
    body = {
        "id": str(uuid.uuid4()),
        "creation_date": 1763726400000,
        "event": "PURCHASE_APPROVED",
        "version": "2.0.0",
        "data": {
            "product": {"id": 4712, "ucode": "abc-123", "name": "Watercolour Basics"},
            "buyer": {
                "email": "Ana.Silva@Example.com",
                "name": "Ana Silva",
                "checkout_phone": "+5511987654321",
                "document": "12345678909",
            },
            "purchase": {
                "transaction": "HPB" + uuid.uuid4().hex[:14].upper(),
                "status": "APPROVED",
                "approved_date": 1763726399000,
                "price": {"value": 197.0, "currency_value": "BRL"},
            },
        },
    }
    return json.dumps(body).encode()


# ------------------------------------------------------------------------------------- load generator


class Client:
    """One keep-alive connection; ``post`` returns the outcome ("accepted" or an error kind), never raises.

    With ``reconnect_every`` > 0 the connection is closed after that many requests and reopened by the next.
    """

    def __init__(self, port: int, reconnect_every: int = 0) -> None:
        self.port = port
        self.reconnect_every = reconnect_every
        self.connection: http.client.HTTPConnection | None = None
        self.used = False
        self.retries = 0
        self.requests_on_connection = 0

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.used = False
        return connection

    def open(self) -> None:
        self.connection = self._connect()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        self.requests_on_connection = 0

    def _exchange(self, body: bytes) -> str:
        if self.connection is None:
            self.connection = self._connect()
        connection = self.connection
        connection.request(
            "POST",
            WEBHOOK_PATH,
            body=body,
            headers={"Content-Type": "application/json", "X-HOTMART-HOTTOK": HOTTOK},
        )
        response = connection.getresponse()
        payload = response.read()
        self.used = True
        self.requests_on_connection += 1
        if response.will_close or (
            self.reconnect_every and self.requests_on_connection >= self.reconnect_every
        ):
            self.close()
        if response.status != 200:
            return f"http_{response.status}"
        try:
            status = json.loads(payload).get("status")
        except (ValueError, AttributeError):
            return "bad_body"
        return "accepted" if status == "accepted" else f"status_{status}"

    def post(self, body: bytes) -> str:
        try:
            return self._exchange(body)
        except STALE_CONNECTION_ERRORS:
            # The server may close an idle keep-alive connection just as a request goes out; nothing was
            # processed then, so retry once on a new connection (a retry that was processed would show
            # as a "duplicate" error).
            was_used = self.used
            self.close()
            if not was_used:
                return "connection_error"
            self.retries += 1
            try:
                return self._exchange(body)
            except (OSError, http.client.HTTPException) as error:
                self.close()
                return type(error).__name__
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return type(error).__name__


def _process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadgen_process(pipe: Any, spec: dict[str, Any]) -> None:
    """One load-generator process: ``spec["threads"]`` threads, each with its own connection.

    Handshake: connect every thread, send "ready", receive the start time (``time.monotonic``, which is
    system-wide on Linux), run, send the results.
    """
    mode: str = spec["mode"]
    threads: int = spec["threads"]
    warmup: float = spec["warmup"]
    duration: float = spec["duration"]
    clients = [Client(spec["port"], spec["reconnect_every"]) for _ in range(threads)]
    for client in clients:
        try:
            client.open()
        except OSError:
            client.close()  # retried on the first request
    lock = threading.Lock()
    start = threading.Event()
    shared: dict[str, Any] = {"t0": 0.0}
    latencies = array.array("d")  # seconds, accepted answers inside the measured window
    completions = array.array("d")  # finish times of those, for the achieved rate
    errors: Counter[str] = Counter()
    totals: Counter[str] = Counter()  # every answer, warm-up and stragglers included
    measured_sent = [0]

    if mode == "open":
        rate: float = spec["rate"]
        processes: int = spec["processes"]
        index: int = spec["index"]
        total_requests = round(rate * (warmup + duration))
        schedule = iter(range(index, total_requests, processes))

    def record(outcome: str, latency: float, finished: float, measured: bool) -> None:
        with lock:
            totals[outcome] += 1
            if not measured:
                return
            measured_sent[0] += 1
            if outcome == "accepted":
                latencies.append(latency)
                completions.append(finished)
            else:
                errors[outcome] += 1

    def closed_loop(client: Client) -> None:
        start.wait()
        t0 = shared["t0"]
        window_start, window_end = t0 + warmup, t0 + warmup + duration
        time.sleep(max(0.0, t0 - time.monotonic()))
        while True:
            body = approval_body()
            sent = time.monotonic()
            if sent >= window_end:
                break
            outcome = client.post(body)
            finished = time.monotonic()
            # Measured: requests both sent and completed inside the window (those straddling an edge are not).
            record(outcome, finished - sent, finished, window_start <= sent and finished <= window_end)

    def open_loop(client: Client) -> None:
        start.wait()
        t0 = shared["t0"]
        window_start = t0 + warmup
        while True:
            with lock:
                k = next(schedule, None)
            if k is None:
                break
            body = approval_body()
            scheduled = t0 + k / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            outcome = client.post(body)
            finished = time.monotonic()
            record(outcome, finished - scheduled, finished, scheduled >= window_start)

    target = closed_loop if mode == "closed" else open_loop
    workers = [threading.Thread(target=target, args=(client,), daemon=True) for client in clients]
    for worker in workers:
        worker.start()
    pipe.send("ready")
    t0 = shared["t0"] = pipe.recv()
    start.set()
    time.sleep(max(0.0, t0 + warmup - time.monotonic()))
    cpu_before = _process_cpu_seconds()  # CPU spent by this process during the measured window
    time.sleep(max(0.0, t0 + warmup + duration - time.monotonic()))
    cpu_seconds = _process_cpu_seconds() - cpu_before
    deadline = t0 + warmup + duration + REQUEST_TIMEOUT_S + 5
    for worker in workers:
        worker.join(max(0.1, deadline - time.monotonic()))
    stuck = sum(worker.is_alive() for worker in workers)
    for client in clients:
        client.close()
    pipe.send(
        {
            "latencies": latencies.tobytes(),
            "completions": completions.tobytes(),
            "errors": dict(errors),
            "totals": dict(totals),
            "measured_sent": measured_sent[0],
            "retries": sum(client.retries for client in clients),
            "stuck_threads": stuck,
            "cpu_seconds": cpu_seconds,
        }
    )
    pipe.close()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def run_phase(
    mode: str,
    port: int,
    args: argparse.Namespace,
    server_cpu: Callable[[], dict[int, float]],
    server_pid: int,
) -> dict[str, Any]:
    """One phase against the server on ``port``; ``server_cpu`` is sampled at the measured window's edges."""
    processes = max(1, min(args.processes, args.concurrency))
    context = multiprocessing.get_context("spawn")
    children = []
    for index, threads in enumerate(split(args.concurrency, processes)):
        parent_end, child_end = context.Pipe()
        spec = {
            "mode": mode,
            "port": port,
            "threads": threads,
            "warmup": args.warmup,
            "duration": args.duration,
            "rate": args.rate,
            "processes": processes,
            "index": index,
            "reconnect_every": args.reconnect_every,
        }
        process = context.Process(target=loadgen_process, args=(child_end, spec), daemon=True)
        process.start()
        child_end.close()
        children.append((process, parent_end))
    for process, pipe in children:
        if not pipe.poll(30) or pipe.recv() != "ready":
            raise RuntimeError(f"load generator {process.pid} did not get ready")
    t0 = time.monotonic() + 0.2
    for _, pipe in children:
        pipe.send(t0)
    time.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
    cpu_before = server_cpu()
    time.sleep(max(0.0, t0 + args.warmup + args.duration - time.monotonic()))
    cpu_after = server_cpu()
    cpu_by_pid = {pid: seconds - cpu_before.get(pid, 0.0) for pid, seconds in cpu_after.items()}
    server_cpu_seconds = sum(cpu_by_pid.values())
    worker_cpu = sorted((seconds for pid, seconds in cpu_by_pid.items() if pid != server_pid), reverse=True)
    results = []
    for process, pipe in children:
        if not pipe.poll(args.warmup + args.duration + REQUEST_TIMEOUT_S + 30):
            raise RuntimeError(f"load generator {process.pid} did not report")
        results.append(pipe.recv())
        process.join(10)
    window_start = t0 + args.warmup
    latencies: list[float] = []
    completions: list[float] = []
    errors: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for result in results:
        latencies.extend(array.array("d", result["latencies"]))
        completions.extend(array.array("d", result["completions"]))
        errors.update(result["errors"])
        totals.update(result["totals"])
    latencies.sort()
    accepted = len(latencies)
    if mode == "closed":
        throughput = accepted / args.duration
    else:
        # The schedule ends at window_start + duration; a server that falls behind finishes later.
        span = max(args.duration, (max(completions) - window_start) if completions else 0.0)
        throughput = accepted / span
    return {
        "mode": "saturation" if mode == "closed" else "fixed_rate",
        "connections": args.concurrency,
        "generator_processes": processes,
        "offered_rate": args.rate if mode == "open" else None,
        "duration_s": args.duration,
        "accepted": accepted,
        "measured_requests": sum(result["measured_sent"] for result in results),
        "throughput_rps": throughput,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else math.nan,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "all_answers": dict(totals),
        "reconnect_retries": sum(result["retries"] for result in results),
        "stuck_threads": sum(result["stuck_threads"] for result in results),
        "server_cpu_s": server_cpu_seconds,
        # Per worker, busiest first: keep-alive connections stay on the worker that accepted them, so an
        # uneven split means one GIL-bound worker did most of the work (see UNEVEN_WORKERS_SHARE).
        "worker_cpu_s": [round(seconds, 2) for seconds in worker_cpu],
        "busiest_worker_share": (worker_cpu[0] / sum(worker_cpu)) if sum(worker_cpu) > 0 else math.nan,
        "loadgen_cpu_s": sum(result["cpu_seconds"] for result in results),
        # Share of the machine busy during the window (servers + load generators; other processes not
        # counted): near 100 % means the figures are CPU-bound on this machine.
        "machine_busy_pct": 100
        * (server_cpu_seconds + sum(result["cpu_seconds"] for result in results))
        / (args.duration * (os.cpu_count() or 1)),
    }


# ------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree_cpu_seconds(root_pid: int) -> dict[int, float]:
    """utime + stime by pid of a process and its direct children (the gunicorn master and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    by_pid: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        if root_pid in (pid, ppid):
            by_pid[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return by_pid


class Server:
    def __init__(self, name: str, app: str, data_dir: Path, extra_args: list[str]) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = data_dir.parent / f"{name}.log"
        env = dict(os.environ)
        env.update(
            PORT=str(self.port),
            HOST="127.0.0.1",
            HOTMART_HOTTOK=HOTTOK,
            COURSEBRIDGE_BACKEND="embedded",
            COURSEBRIDGE_DATA_DIR=str(data_dir),
            WEB_CONCURRENCY=os.environ.get("WEB_CONCURRENCY", "2"),
            GUNICORN_THREADS=os.environ.get("GUNICORN_THREADS", "4"),
        )
        command = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, *extra_args, app]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} server exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_tcp(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not listen within {STARTUP_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.05)

    def wait_http(self, path: str, expect: int | None) -> None:
        """Poll ``path`` until it answers (``expect`` status, or any when None), bounded."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            self._check_alive()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", path)
                status = connection.getresponse().status
                if expect is None or status == expect:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: GET {path} not ready in {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.1)

    def cpu_seconds(self) -> dict[int, float]:
        return process_tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass

    def log_problems(self) -> Counter[str]:
        """Log lines at WARNING or above, by message (the app logs JSON lines with ``severity``)."""
        problems: Counter[str] = Counter()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return problems
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                if "Traceback" in line or "ERROR" in line:
                    problems["(unstructured) " + line[:80]] += 1
                continue
            if isinstance(entry, dict) and entry.get("severity") in ("WARNING", "ERROR", "CRITICAL"):
                problems[f"{entry['severity']} {str(entry.get('message'))[:80]}"] += 1
        return problems


def benchmark_server(server: Server, readiness: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    try:
        if readiness == "healthz":
            server.wait_http("/healthz", 200)
        else:
            server.wait_tcp()
            server.wait_http("/", None)  # one answer from a worker, whatever the status
        ready_s = time.monotonic() - started
        phases = {}
        for mode in ("closed", "open"):
            result = run_phase(mode, server.port, args, server.cpu_seconds, server.process.pid)
            phases[result["mode"]] = result
            server._check_alive()
    finally:
        server.stop()
    problems = server.log_problems()
    return {
        "startup_s": ready_s,
        **phases,
        "log_problems": dict(problems.most_common(10)),
        "log_problem_lines": sum(problems.values()),
    }


def count_stored(data_dir: Path) -> dict[str, int]:
    from coursebridge.adapters.sqlite_store import SqliteStore

    store = SqliteStore("ingest", data_dir / "ingest.sqlite3")
    try:
        return {kind: len(store.query(kind)) for kind in ("webhooks", "outbox", "quarantine")}
    finally:
        store.close()


# ------------------------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def print_report(report: dict[str, Any]) -> None:
    m, cfg = report["machine"], report["config"]
    base, ingest = report["baseline"], report["ingest"]
    print()
    print(
        f"machine: {m['nproc']} CPUs ({m['usable_cpus']} usable), {m['cpu_model']}, {m['python']}, "
        f"{m['platform']}"
    )
    print(
        f"gunicorn: {cfg['workers']} workers x {cfg['threads']} threads (gthread), "
        f"-c {GUNICORN_CONF}; load: {cfg['concurrency']} connections over {cfg['processes']} "
        f"processes, {cfg['warmup_s']:g} s warm-up + {cfg['duration_s']:g} s per phase"
        + (f", reconnect every {cfg['reconnect_every']} requests" if cfg["reconnect_every"] else "")
    )
    rows = [
        ("saturation: accepted req/s", "saturation", "throughput_rps", 0),
        ("saturation: p50 ms", "saturation", "p50_ms", 2),
        ("saturation: p99 ms", "saturation", "p99_ms", 2),
        ("saturation: max ms", "saturation", "max_ms", 1),
        ("saturation: errors", "saturation", "errors", 0),
        ("saturation: server CPU s", "saturation", "server_cpu_s", 1),
        ("saturation: loadgen CPU s", "saturation", "loadgen_cpu_s", 1),
        ("saturation: machine busy %", "saturation", "machine_busy_pct", 0),
        (f"fixed {cfg['rate']:g}/s: achieved req/s", "fixed_rate", "throughput_rps", 1),
        (f"fixed {cfg['rate']:g}/s: p50 ms", "fixed_rate", "p50_ms", 2),
        (f"fixed {cfg['rate']:g}/s: p99 ms", "fixed_rate", "p99_ms", 2),
        (f"fixed {cfg['rate']:g}/s: max ms", "fixed_rate", "max_ms", 2),
        (f"fixed {cfg['rate']:g}/s: errors", "fixed_rate", "errors", 0),
        (f"fixed {cfg['rate']:g}/s: server CPU s", "fixed_rate", "server_cpu_s", 1),
        (f"fixed {cfg['rate']:g}/s: loadgen CPU s", "fixed_rate", "loadgen_cpu_s", 1),
        (f"fixed {cfg['rate']:g}/s: machine busy %", "fixed_rate", "machine_busy_pct", 0),
    ]
    print()
    print(f"{'':34}{'baseline':>14}{'ingest':>14}")
    for label, phase, key, digits in rows:
        print(f"{label:34}{fmt(base[phase][key], digits):>14}{fmt(ingest[phase][key], digits):>14}")
    print()
    r = report["results"]
    print(
        f"throughput ratio ingest/baseline: {fmt(r['throughput_ratio'], 3)} "
        f"(target >= {TARGET_RATIO}: {'PASS' if r['throughput_ratio_ok'] else 'FAIL'})"
    )
    print(
        f"p99 at {cfg['rate']:g} req/s: ingest {fmt(r['ingest_fixed_p99_ms'], 2)} ms, baseline "
        f"{fmt(r['baseline_fixed_p99_ms'], 2)} ms (target <= {TARGET_P99_MS:g} ms: "
        f"{'PASS' if r['fixed_p99_ok'] else 'FAIL'}); p99 ratio {fmt(r['fixed_p99_ratio'], 2)}"
    )
    v = report["verification"]
    print(
        f"stored {v['stored_webhooks']} / accepted {v['accepted_answers']} "
        f"({'OK' if v['match'] else 'MISMATCH'}; outbox {v['stored_outbox']}, quarantine "
        f"{v['stored_quarantine']}, answers without an outcome {v['unknown_outcome_answers']})"
    )
    for name in ("baseline", "ingest"):
        section = report[name]
        details = []
        for phase in ("saturation", "fixed_rate"):
            p = section[phase]
            if p["error_kinds"]:
                details.append(f"{phase} errors {p['error_kinds']}")
            if p["reconnect_retries"]:
                details.append(f"{phase} stale keep-alive retries {p['reconnect_retries']}")
            if p["stuck_threads"]:
                details.append(f"{phase} {p['stuck_threads']} client threads did not finish")
        if section["log_problem_lines"]:
            details.append(
                f"{section['log_problem_lines']} warning/error log lines {section['log_problems']}"
            )
        if details:
            print(f"{name}: " + "; ".join(details))
    for name in ("baseline", "ingest"):
        p = report[name]["saturation"]
        workers = " / ".join(f"{seconds:.1f}" for seconds in p["worker_cpu_s"])
        line = f"{name} saturation: CPU s per gunicorn worker {workers}"
        if p["busiest_worker_share"] > UNEVEN_WORKERS_SHARE and len(p["worker_cpu_s"]) > 1:
            line += (
                f" -- WARNING: one worker did {p['busiest_worker_share']:.0%} of the work (the keep-alive"
                " connections landed on it); this figure is closer to one worker's capacity. Compare with"
                " --reconnect-every 50"
            )
        print(line)


def without_nan(value: Any) -> Any:
    """JSON has no NaN: an empty measurement is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(item) for item in value]
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (10)")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s (200)")
    parser.add_argument("--concurrency", type=int, default=16, help="client connections (16)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per phase (1)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (2)")
    parser.add_argument(
        "--reconnect-every",
        type=int,
        default=0,
        metavar="N",
        help="reopen each connection after N requests (0: never); spreads connections over the workers",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0 or args.concurrency < 1 or args.warmup < 0 or args.processes < 1:
        parser.error("--duration and --rate must be > 0, --concurrency and --processes >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = {
        "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
        "threads": int(os.environ.get("GUNICORN_THREADS", "4")),
        "concurrency": args.concurrency,
        "processes": min(args.processes, args.concurrency),
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "reconnect_every": args.reconnect_every,
    }
    temp = Path(tempfile.mkdtemp(prefix="cb-bench-"))
    report: dict[str, Any] = {"machine": machine(), "config": config}
    try:
        print(f"baseline: bare Flask app ({args.warmup:g}+{args.duration:g} s x 2 phases) ...", flush=True)
        bare = Server(
            "baseline", "bare_app:create_app()", temp / "baseline-data", ["--pythonpath", str(BENCH_DIR)]
        )
        report["baseline"] = benchmark_server(bare, "tcp", args)
        print("ingest: embedded backend ...", flush=True)
        data_dir = temp / "ingest-data"
        ingest = Server("ingest", "ingest.entrypoints.api:create_app()", data_dir, [])
        report["ingest"] = benchmark_server(ingest, "healthz", args)
        stored = count_stored(data_dir)
        answers = Counter()
        for phase in ("saturation", "fixed_rate"):
            answers.update(report["ingest"][phase]["all_answers"])
        report["verification"] = {
            "stored_webhooks": stored["webhooks"],
            "stored_outbox": stored["outbox"],
            "stored_quarantine": stored["quarantine"],
            "accepted_answers": answers["accepted"],
            "unknown_outcome_answers": sum(
                n
                for outcome, n in answers.items()
                if not outcome.startswith(("accepted", "http_", "status_"))
            ),
            "match": stored["webhooks"] == answers["accepted"],
        }
    finally:
        if args.keep:
            print(f"kept {temp}")
        else:
            import shutil

            shutil.rmtree(temp, ignore_errors=True)
    base, ing = report["baseline"], report["ingest"]
    base_rps = base["saturation"]["throughput_rps"]
    ratio = ing["saturation"]["throughput_rps"] / base_rps if base_rps else math.nan
    ingest_p99 = ing["fixed_rate"]["p99_ms"]
    report["results"] = {
        "throughput_ratio": ratio,
        "throughput_ratio_ok": ratio >= TARGET_RATIO,
        "ingest_fixed_p99_ms": ingest_p99,
        "baseline_fixed_p99_ms": base["fixed_rate"]["p99_ms"],
        "fixed_p99_ratio": ingest_p99 / base["fixed_rate"]["p99_ms"],
        "fixed_p99_ok": ingest_p99 <= TARGET_P99_MS,
        "targets": {"throughput_ratio_min": TARGET_RATIO, "fixed_p99_ms_max": TARGET_P99_MS},
    }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(without_nan(report), indent=2, allow_nan=False, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
