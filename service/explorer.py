"""The explorer page: GET / serves static/index.html, whose script asks the JSON endpoints of service.api;
its script and style sheet are the app's static files (/static/...)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, send_from_directory

bp = Blueprint("explorer", __name__)
# The page runs its own files only: no inline script or style, nothing from another origin.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")


@bp.get("/")
def page() -> Response:
    response = send_from_directory(current_app.static_folder, "index.html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
