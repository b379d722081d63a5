"""Baseline for ``ingest_throughput.py``: the cheapest Flask app that answers Hotmart like ingest does.

One route, ``POST /webhooks/hotmart``, which reads the body (as ingest must) and answers
200 ``{"status": "accepted"}`` without checking, parsing or storing anything. Served by the same gunicorn
configuration as the real service, it measures what Flask + gunicorn + the load generator cost on this
machine, so the ingest figures can be read as a fraction of that ceiling.

    gunicorn -c python:coursebridge.runtime.gunicorn_conf --pythonpath benchmarks 'bare_app:create_app()'
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhooks/hotmart")
    def receive_hotmart_webhook() -> tuple[Response, int]:
        request.get_data(cache=False)
        return jsonify(status="accepted"), 200

    return app
