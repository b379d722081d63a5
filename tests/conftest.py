"""Shared fixtures: Google's emulators and the two backend families (embedded SQLite, gcp emulators).

``bus_backend`` and ``store_backend`` are parametrized over ``embedded`` and ``gcp``; a test that takes
one runs against both, the ``gcp`` run marked ``emulator``. Each test gets a project id of its own, so
nothing leaks between tests that share one emulator process.
"""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from coursebridge.ports import DocumentStore, MessageBus

# --import-mode=importlib leaves sys.path alone; tests import the helper module ``emulators`` from here.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from emulators import FIRESTORE, PUBSUB, Emulator, LazyEmulator

BackendKind = Literal["embedded", "gcp"]
BACKENDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("gcp", id="gcp", marks=pytest.mark.emulator),
]

# Backoff for the embedded bus in tests (the Pub/Sub emulator ignores retry-policy backoff altogether).
TEST_MIN_BACKOFF = 0.05
TEST_MAX_BACKOFF = 0.2


# --- emulator processes (one of each per session, started on first use) ---------------------------------


@pytest.fixture(scope="session")
def _pubsub_emulator_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LazyEmulator]:
    handle = LazyEmulator(PUBSUB, tmp_path_factory.mktemp("pubsub-emulator"))
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def _firestore_emulator_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LazyEmulator]:
    handle = LazyEmulator(FIRESTORE, tmp_path_factory.mktemp("firestore-emulator"))
    yield handle
    handle.close()


@pytest.fixture
def pubsub_emulator(
    _pubsub_emulator_handle: LazyEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Emulator]:
    """The Pub/Sub emulator, with ``PUBSUB_EMULATOR_HOST`` pointing at it for this test only.

    A test may ``stop()`` and ``restart()`` it (same port, empty state); it is running again afterwards.
    """
    emulator = _pubsub_emulator_handle.get()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    yield emulator
    _ensure_running(emulator)


@pytest.fixture
def firestore_emulator(
    _firestore_emulator_handle: LazyEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Emulator]:
    """The Firestore emulator, with ``FIRESTORE_EMULATOR_HOST`` pointing at it for this test only."""
    emulator = _firestore_emulator_handle.get()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
    yield emulator
    _ensure_running(emulator)


def _ensure_running(emulator: Emulator) -> None:
    running = getattr(emulator, "running", None)
    if callable(running) and not running():
        emulator.restart()


@pytest.fixture
def gcp_project(monkeypatch: pytest.MonkeyPatch) -> str:
    """A project id of this test's own: topics, subscriptions and documents do not leak across tests."""
    project = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    return project


# --- backends ---------------------------------------------------------------------------------------------


def _embedded(module: str) -> Any:
    """Import an embedded adapter module; skip (not fail) only while it does not exist yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module:
            raise
        pytest.skip(f"{module} is not written yet")


@dataclass
class BusBackend:
    """Makes buses that share one backend (one SQLite file, or one emulator project).

    ``make()`` is called once per "process" a test needs (publisher, consumer...); every bus it made is
    closed at the end of the test.
    """

    kind: BackendKind
    factory: Callable[..., MessageBus]
    project: str | None = None
    emulator: Emulator | None = None
    _made: list[MessageBus] = field(default_factory=list)

    def make(self, **options: Any) -> MessageBus:
        bus = self.factory(**options)
        self._made.append(bus)
        return bus

    __call__ = make

    def close(self) -> None:
        for bus in reversed(self._made):
            try:
                bus.close()
            except Exception as error:  # teardown must not hide the test's own failure
                print(f"closing {bus!r} failed: {error!r}")
        self._made.clear()


@dataclass
class StoreBackend:
    """Makes document stores for any owner on one backend (one SQLite file, or one emulator project)."""

    kind: BackendKind
    factory: Callable[[str], DocumentStore]
    project: str | None = None
    emulator: Emulator | None = None
    _made: list[DocumentStore] = field(default_factory=list)

    def make(self, owner: str) -> DocumentStore:
        store = self.factory(owner)
        self._made.append(store)
        return store

    __call__ = make

    def close(self) -> None:
        for store in reversed(self._made):
            try:
                store.close()
            except Exception as error:
                print(f"closing {store!r} failed: {error!r}")
        self._made.clear()


@pytest.fixture(params=BACKENDS)
def bus_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BusBackend]:
    """A bus factory for each backend: ``bus_backend.make()`` (embedded options: ``min_backoff``...)."""
    if request.param == "embedded":
        sqlite_bus = _embedded("coursebridge.adapters.sqlite_bus")
        path = tmp_path / "bus.sqlite3"

        def make_embedded(
            *, min_backoff: float | None = TEST_MIN_BACKOFF, max_backoff: float | None = TEST_MAX_BACKOFF
        ) -> MessageBus:
            return sqlite_bus.SqliteBus(
                path, poll_interval=0.02, min_backoff=min_backoff, max_backoff=max_backoff
            )

        backend = BusBackend(kind="embedded", factory=make_embedded)
    else:
        emulator = request.getfixturevalue("pubsub_emulator")
        project = request.getfixturevalue("gcp_project")
        from coursebridge.adapters.pubsub_bus import PubSubBus

        def make_gcp(*, publish_timeout: float = 10.0, **_embedded_only: Any) -> MessageBus:
            return PubSubBus(project, publish_timeout=publish_timeout)

        backend = BusBackend(kind="gcp", factory=make_gcp, project=project, emulator=emulator)
    yield backend
    backend.close()


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    """A document-store factory for each backend: ``store_backend.make(owner)``."""
    if request.param == "embedded":
        sqlite_store = _embedded("coursebridge.adapters.sqlite_store")
        path = tmp_path / "store.sqlite3"
        backend = StoreBackend(kind="embedded", factory=lambda owner: sqlite_store.SqliteStore(owner, path))
    else:
        emulator = request.getfixturevalue("firestore_emulator")
        project = request.getfixturevalue("gcp_project")
        from coursebridge.adapters.firestore_store import FirestoreStore

        backend = StoreBackend(
            kind="gcp",
            factory=lambda owner: FirestoreStore(owner, project=project),
            project=project,
            emulator=emulator,
        )
    yield backend
    backend.close()
