"""Serve the fake on a loopback port, in a background thread (tests, benchmarks) or in the foreground."""

from __future__ import annotations

from flask import Flask

from coursebridge.runtime.loopback import LoopbackServer


class FakeHotmartServer(LoopbackServer):
    """``with FakeHotmartServer(app) as server: server.url`` -> ``http://127.0.0.1:<free port>``.

    Silent: its URLs carry client secrets and buyer e-mails."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, host, port, name="hotmart-fake")

    @property
    def token_url(self) -> str:
        return f"{self.url}/security/oauth/token"
