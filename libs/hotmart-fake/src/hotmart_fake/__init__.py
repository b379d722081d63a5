"""A local Hotmart: OAuth2 client credentials, sales history, subscriptions, the rate limit, and webhooks.

``create_app()`` builds the Flask app; ``HotmartState`` holds the sales and subscriptions; tests serve it
with ``talentlms_fake``'s ``FakeServer`` or ``hotmart_fake.server``.
"""

from hotmart_fake.app import STATE_EXTENSION, create_app
from hotmart_fake.state import HotmartState, Sale, Subscription

__all__ = ["STATE_EXTENSION", "HotmartState", "Sale", "Subscription", "create_app"]
