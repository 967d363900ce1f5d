"""The explorer page as files: GET / and its assets through the Flask test client, their size, their
origin (nothing from elsewhere), and their place in the package (the image installs the package)."""
from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "service" / "static"
BUDGET = 50 * 1024  # the page and all its assets, in bytes


def test_the_page_is_served_at_the_root_with_a_strict_policy(app):
    client = app.test_client()
    with client.get("/?word=king") as response:  # a file's answer: closed, as a server closes it
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert response.data == (STATIC / "index.html").read_bytes()
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "unsafe-inline" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    with client.head("/") as response:
        assert response.status_code == 200


@pytest.mark.parametrize("name, mimetype", [("explorer.js", "text/javascript"), ("explorer.css", "text/css")])
def test_the_assets_the_page_names_are_served(app, name, mimetype):
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert f'"static/{name}"' in page  # relative: the page also works under a path prefix
    with app.test_client().get(f"/static/{name}") as response:
        assert response.status_code == 200 and response.mimetype == mimetype
        assert response.data == (STATIC / name).read_bytes()


def test_the_page_and_its_assets_stay_within_the_budget():
    sizes = {path.name: path.stat().st_size for path in STATIC.iterdir()}
    assert set(sizes) == {"index.html", "explorer.js", "explorer.css"}
    assert sum(sizes.values()) < BUDGET, sizes


def test_the_page_loads_nothing_from_elsewhere():
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        # The SVG namespace is a name, never fetched; any other absolute address would be a fetch.
        assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text.replace("http://www.w3.org/2000/svg", "")) == [], path
        assert "<script>" not in text and " on" + "click=" not in text  # no inline script: the policy forbids it


def test_the_package_data_holds_every_file_of_the_page():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    for path in STATIC.iterdir():
        assert path.is_file() and any(fnmatch.fnmatch(f"static/{path.name}", p) for p in patterns), path


def test_the_page_is_only_read(app):
    client = app.test_client()
    for method in ("POST", "PUT", "DELETE"):
        response = client.open("/", method=method)
        assert response.status_code == 405 and response.is_json


def test_with_a_key_the_page_is_open_and_the_data_is_not(make_app):
    client = make_app(API_KEY="secret-key").test_client()
    for path, status in [("/", 200), ("/static/explorer.js", 200), ("/static/nope.js", 404)]:
        with client.get(path) as response:
            assert response.status_code == status, path
    for path in ("/words?prefix=k", "/map?word=king", "/similar?word=king", "/context-probs?word=king"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer secret-key"}).status_code == 200, path
