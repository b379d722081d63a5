"""Adapters: the only modules that touch SQLite, Pub/Sub or Firestore."""
