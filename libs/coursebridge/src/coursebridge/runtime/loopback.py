"""Serve a WSGI app on a loopback port, in a background thread or in the foreground.

The local fakes (TalentLMS, Hotmart) run this way in tests, benchmarks and ``make run``: threaded, HTTP/1.1
keep-alive like a real API behind a load balancer, and quiet by default, because their URLs carry API
arguments that can hold e-mail addresses and client secrets.
"""

from __future__ import annotations

import threading
from typing import Self

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 and no request lines (subclass and override ``log_request`` to log a safe form)."""

    protocol_version = "HTTP/1.1"

    def log_request(self, *_args: object) -> None:
        return


class LoopbackServer:
    """``with LoopbackServer(app) as server: server.url`` -> ``http://127.0.0.1:<free port>``."""

    def __init__(
        self,
        app: Flask,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handler: type[WSGIRequestHandler] = QuietHandler,
        name: str = "loopback-server",
    ) -> None:
        self.app = app
        self.name = name
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=handler)
        # Keep-alive connections park a handler thread each; stopping must not wait for clients to hang up.
        self._server.block_on_close = False  # type: ignore[attr-defined]
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=self.name, daemon=True
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
