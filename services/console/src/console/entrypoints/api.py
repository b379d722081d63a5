"""Gunicorn's entry point: ``console.entrypoints.api:create_app()`` on ``CONSOLE_PORT`` (8084)."""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    from console.bootstrap import build_app

    return build_app()
