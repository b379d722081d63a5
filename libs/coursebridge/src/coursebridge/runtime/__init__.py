"""The service runtime every CourseBridge service shares: logging, metrics, HTTP app, worker."""
