"""goccy/bigquery-emulator as a test fixture: a process of its own on free loopback ports.

The binary is where ``tools/install_bigquery_emulator.sh`` puts it:
``${BQ_EMULATOR_BIN:-$HOME/.cache/coursebridge/bin}/bigquery-emulator``. Missing binary: the test is
skipped locally and fails on CI (``CI=true``). The emulator runs under the same watchdog as Google's
emulators (``tests/emulators.py``), as the leader of its own process group, and is stopped with ``killpg``.

Known limits of v0.8.1 that matter here (measured, see ``docs/analytics.md``): unary minus (``-x``) has no
implementation in its SQLite backend (HTTP 500, which the client would retry for minutes), so the views
write ``0 - x``; ``CREATE OR REPLACE VIEW`` on an existing view answers 500, and
`` `project.dataset`.table `` hangs. Queries here therefore run with a short retry deadline and no job
retry, so an unsupported construct fails the test in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from emulators import _WATCHDOG, EmulatorStartFailed, free_port, log_tail, port_open, skip_or_fail

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
QUERY_TIMEOUT = 60.0


def emulator_binary() -> Path:
    """Where the install script builds it (same variables, same default)."""
    folder = os.environ.get("BQ_EMULATOR_BIN") or str(Path.home() / ".cache" / "coursebridge" / "bin")
    return Path(folder) / "bigquery-emulator"


def require_binary() -> Path:
    binary = emulator_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        skip_or_fail(f"no BigQuery emulator at {binary}: run tools/install_bigquery_emulator.sh")
    return binary


@dataclass
class BigQueryEmulator:
    binary: Path
    log_dir: Path
    project: str = "coursebridge-test"
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "bigquery-emulator.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary),
            f"--project={self.project}",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--grpc-port={self.grpc_port}",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(os.getpid()), *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmulatorStartFailed(
                    f"bigquery-emulator exited with {self._process.returncode}; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if port_open("127.0.0.1", self.port, timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise EmulatorStartFailed(
            f"bigquery-emulator not listening on {self.endpoint} after {READY_TIMEOUT:.0f} s; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
        # The watchdog takes the emulator (same group) down with it; make sure nothing is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def client(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )


def run_query(client: Any, sql: str) -> list[dict[str, Any]]:
    """A query with a short retry deadline and no job retry: an emulator 500 fails fast."""
    from google.cloud import bigquery

    retry = bigquery.DEFAULT_RETRY.with_deadline(30.0)
    job = client.query(sql, retry=retry, job_retry=None)
    return [dict(row.items()) for row in job.result(timeout=QUERY_TIMEOUT, retry=retry)]


# --- rows for streaming inserts --------------------------------------------------------------------------


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, date):  # datetime too (aware UTC from the projection)
            value = value.isoformat()
        elif isinstance(value, dict | list):  # the raw payload, a JSON column
            value = json.dumps(value, separators=(",", ":"), default=str)
        out[key] = value
    return out
