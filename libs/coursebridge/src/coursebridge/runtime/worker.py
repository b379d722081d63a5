"""The worker process: subscribers and background loops, a health/metrics port, and a clean drain.

On SIGTERM (Kubernetes) or Ctrl-C: stop pulling, let in-flight handlers and the current loop iteration
finish, then exit 0. Nothing in flight is acked early, so whatever did not finish is simply redelivered.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog

from coursebridge.ports import EventHandler, MessageBus, SubscriptionRunner
from coursebridge.runtime.app import create_app

log = structlog.get_logger(__name__)

Loop = Callable[[threading.Event], None]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Worker:
    service: str
    bus: MessageBus
    subscriptions: Mapping[str, EventHandler] = field(default_factory=dict)
    loops: Mapping[str, Loop] = field(default_factory=dict)
    readiness: Mapping[str, Callable[[], None]] = field(default_factory=dict)
    max_in_flight: int = 10
    stop_event: threading.Event = field(default_factory=threading.Event)
    _runners: dict[str, SubscriptionRunner] = field(default_factory=dict)
    _threads: dict[str, threading.Thread] = field(default_factory=dict)

    def start(self) -> None:
        for name, handler in self.subscriptions.items():
            self._runners[name] = self.bus.subscribe(name, handler, max_in_flight=self.max_in_flight)
        for name, loop in self.loops.items():
            thread = threading.Thread(target=self._run_loop, args=(name, loop), name=name, daemon=True)
            self._threads[name] = thread
            thread.start()
        log.info("worker.started", subscriptions=sorted(self.subscriptions), loops=sorted(self.loops))

    def _run_loop(self, name: str, loop: Loop) -> None:
        try:
            loop(self.stop_event)
        except Exception:
            log.exception("worker.loop_crashed", loop=name)
            raise

    def alive(self) -> None:
        dead = [n for n, r in self._runners.items() if not r.running()]
        dead += [n for n, t in self._threads.items() if not t.is_alive()]
        if dead and not self.stop_event.is_set():
            raise RuntimeError(f"stopped unexpectedly: {', '.join(dead)}")

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        for runner in self._runners.values():
            runner.stop(timeout)
        for thread in self._threads.values():
            thread.join(timeout)
        log.info("worker.stopped")

    def serve_health(self, host: str, port: int) -> Callable[[], None]:
        """``/healthz`` fails when a subscriber or loop died, so Kubernetes restarts the pod."""
        app = create_app(f"{self.service}-worker", readiness={"running": self.alive, **self.readiness})
        app.view_functions["healthz"] = _liveness(self.alive, self.service)
        server = make_server(host, port, app, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="health", daemon=True)
        thread.start()
        return server.shutdown

    def run_until_signalled(self) -> None:
        """Run until SIGTERM/SIGINT. ``WORKER_HEALTH_PORT`` (and ``WORKER_HEALTH_HOST``) enable probes."""
        health_port = int(os.environ.get("WORKER_HEALTH_PORT", "0") or 0)
        health_host = os.environ.get("WORKER_HEALTH_HOST", "127.0.0.1")

        def request_stop(signum: int, _frame: object) -> None:
            log.info("worker.stopping", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.start()
        shutdown_health = self.serve_health(health_host, health_port) if health_port else None
        while not self.stop_event.wait(1.0):
            pass
        self.stop()
        if shutdown_health:
            shutdown_health()


def _liveness(alive: Callable[[], None], service: str):
    from flask import jsonify

    def healthz():
        try:
            alive()
        except RuntimeError as error:
            return jsonify(status="failing", reason=str(error)), 503
        return jsonify(status="ok", service=service)

    return healthz
