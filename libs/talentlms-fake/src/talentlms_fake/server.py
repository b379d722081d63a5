"""Serve an app on a loopback port in a background thread (tests, benchmarks) or in the foreground."""

from __future__ import annotations

import sys
import threading
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _Handler(WSGIRequestHandler):
    """HTTP/1.1 (keep-alive, as a real portal behind a load balancer), one log line per call or none.

    The line names the action only: argument segments can hold an email address.
    """

    protocol_version = "HTTP/1.1"
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


class FakeServer:
    """``with FakeServer(app) as server: server.base_url`` → ``http://127.0.0.1:<free port>/api/v1``."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_Handler if quiet else _VerboseHandler
        )
        # Keep-alive connections park a handler thread each; stopping must not wait for clients to hang up.
        self._server.block_on_close = False  # type: ignore[attr-defined]
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v1"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="talentlms-fake", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
