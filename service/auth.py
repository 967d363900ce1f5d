"""The optional API key: with API_KEY set, every endpoint but the probes, /metrics and the page wants
`Authorization: Bearer KEY`, compared in constant time; any other request is answered a JSON 401."""
from __future__ import annotations

import hmac

from flask import Flask, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

# For probes and scrapers, which hold no key, and the explorer page and its files (which ask for the key and
# send it with every request to the other endpoints).
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/", "/static/<path:filename>"})


def install(app: Flask) -> None:
    """Refuse, before its view, every request to `app` without the key (when the settings name one)."""
    key = app.config["API_KEY"]
    if key is None:
        return
    expected = key.encode("ascii")  # service.settings checked: printable ASCII

    @app.before_request
    def require_key() -> None:
        rule = request.url_rule
        if rule is not None and rule.rule in OPEN_ROUTES:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(description="this endpoint needs the API key: send 'Authorization: Bearer KEY'",
                               www_authenticate=WWWAuthenticate("Bearer"))
        if not (token.isascii() and hmac.compare_digest(token.encode("ascii"), expected)):
            raise Unauthorized(description="the API key sent is not the key of this service",
                               www_authenticate=WWWAuthenticate("Bearer", {"error": "invalid_token"}))
