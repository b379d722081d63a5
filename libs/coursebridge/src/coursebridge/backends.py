"""Pick the adapter family from configuration (``COURSEBRIDGE_BACKEND=embedded|gcp``).

The Google Cloud modules are imported only when the gcp family is chosen, so the embedded default starts
fast and works with nothing but Python.
"""

from __future__ import annotations

from coursebridge.config import PlatformSettings
from coursebridge.ports import DocumentStore, MessageBus

EMBEDDED_BUS_FILE = "bus.sqlite3"


def open_bus(settings: PlatformSettings) -> MessageBus:
    if settings.backend == "gcp":
        from coursebridge.adapters.pubsub_bus import PubSubBus

        return PubSubBus(settings.gcp_project)
    from coursebridge.adapters.sqlite_bus import SqliteBus

    return SqliteBus(settings.data_dir / EMBEDDED_BUS_FILE)


def open_store(settings: PlatformSettings, owner: str) -> DocumentStore:
    """The store of ``owner``'s own collection; on the embedded backend each service has its own file."""
    if settings.backend == "gcp":
        from coursebridge.adapters.firestore_store import FirestoreStore

        return FirestoreStore(owner, project=settings.gcp_project, database=settings.firestore_database)
    from coursebridge.adapters.sqlite_store import SqliteStore

    return SqliteStore(owner, settings.data_dir / f"{owner}.sqlite3")
