"""Serve the fake on a loopback port, in a background thread (tests, benchmarks) or in the foreground."""

from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _Quiet(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *_args: object) -> None:  # URLs carry client secrets and buyer e-mails
        return


class FakeHotmartServer:
    """``with FakeHotmartServer(app) as server: server.url`` -> ``http://127.0.0.1:<free port>``."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_Quiet)
        self._server.block_on_close = False  # type: ignore[attr-defined]
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/security/oauth/token"

    def start(self) -> FakeHotmartServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="hotmart-fake", daemon=True
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

    def __enter__(self) -> FakeHotmartServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
