"""What every CourseBridge service shares.

Event envelope and contracts, the bus and document-store ports with their embedded and Google Cloud
adapters, structured logging, metrics and the service runtime. Services import from here instead of
copying, so a contract changes in one place.
"""
