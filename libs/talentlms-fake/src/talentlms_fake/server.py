"""Serve an app on a loopback port in a background thread (tests, benchmarks) or in the foreground."""

from __future__ import annotations

import sys
from typing import Any

from flask import Flask

from coursebridge.runtime.loopback import LoopbackServer, QuietHandler


class _Handler(QuietHandler):
    """HTTP/1.1 (keep-alive, as a real portal behind a load balancer), one log line per call or none.

    The line names the action only: argument segments can hold an email address.
    """

    quiet = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.quiet:
            return
        action = self.path.split("?", 1)[0]
        if action.startswith("/api/v1/"):
            action = "/api/v1/" + action[len("/api/v1/") :].split("/", 1)[0]
        sys.stderr.write(f"{self.command} {action} {code}\n")

    def log_error(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_error(format, *args)


class _VerboseHandler(_Handler):
    quiet = False


class FakeServer(LoopbackServer):
    """``with FakeServer(app) as server: server.base_url`` → ``http://127.0.0.1:<free port>/api/v1``."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> None:
        super().__init__(
            app, host, port, handler=_Handler if quiet else _VerboseHandler, name="talentlms-fake"
        )

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v1"
