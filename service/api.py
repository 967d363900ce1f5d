"""HTTP endpoints: parse and bound the inputs, ask Embeddings, shape JSON; every error is answered as JSON."""
from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from flask import Blueprint, Response, abort, current_app, request
from werkzeug.exceptions import HTTPException

from service.embeddings import BadQuery, ContextUnavailable, Embeddings, UnknownWord

bp = Blueprint("api", __name__)
DEFAULT_K = 10
DEFAULT_LIMIT = 10
MAX_LIMIT = 100  # words in one /words answer at most: suggestions, not a way to page through the vocabulary
_K_DIGITS = 9  # longer digit strings are out of range anyway (and int() refuses those over 4300 digits)


# ------------------------------------------------------------------------------------------- endpoints

@bp.get("/healthz")
def healthz():
    return _json({"status": "ok"})


@bp.get("/readyz")
def readyz():
    limits = {name.lower(): current_app.config[name]
              for name in ("MAX_K", "MAX_BATCH_WORDS", "MAX_WORD_LENGTH", "MAX_CONTENT_LENGTH")}
    return _json({"status": "ready", **_embeddings().describe(), "limits": limits,
                  "reload_error": current_app.config["RELOAD_ERROR"]})


@bp.get("/openapi.json")
def openapi():
    return Response(current_app.extensions["openapi"], mimetype="application/json")


@bp.get("/vector")
def get_vector():
    word = _word(_param("word", required=True), "word")
    return _json({"word": word, "vector": _ask(_embeddings().vector, word)})


@bp.post("/vector")
def post_vector():
    body = _body(required={"words"})
    words = _word_list(body["words"], "words")
    vectors, missing = _embeddings().vectors(words)
    return _json({"vectors": vectors, "missing": missing})


@bp.get("/similar")
def get_similar():
    word, positive, negative = _param("word"), _param("positive"), _param("negative")
    k = _k(_param("k"))
    if word is not None:
        if positive is not None or negative is not None:
            abort(400, description="give either 'word' or 'positive'/'negative', not both")
        word = _word(word, "word")
        return _json({"word": word, "k": k, "neighbors": _scored(_ask(_embeddings().similar, word, k))})
    if positive is None and negative is None:
        abort(400, description="missing parameter: give 'word', or 'positive' and/or 'negative'")
    positive = _word_list(positive.split(",") if positive is not None else [], "positive")
    negative = _word_list(negative.split(",") if negative is not None else [], "negative")
    neighbors = _ask(_embeddings().analogy, positive, negative, k)
    return _json({"positive": positive, "negative": negative, "k": k, "neighbors": _scored(neighbors)})


@bp.post("/similar")
def post_similar():
    body = _body(required={"vector"}, optional={"k"})
    k = _k(body["k"], from_json=True) if "k" in body else _k(None)
    vector = _numbers(body["vector"], _embeddings().dim)
    return _json({"k": k, "neighbors": _scored(_ask(_embeddings().similar_to_vector, vector, k))})


@bp.get("/map")
def get_map():
    word = _word(_param("word", required=True), "word")
    k = _k(_param("k"))
    (x, y), placed, explained = _ask(_embeddings().map_2d, word, k)
    return _json({"word": word, "k": k, "x": x, "y": y, "explained": explained,
                  "neighbors": [{"word": w, "score": s, "x": px, "y": py} for w, s, px, py in placed]})


@bp.get("/words")
def get_words():
    prefix = _param("prefix") or ""  # empty or absent: every word, so the most frequent ones
    longest = current_app.config["MAX_WORD_LENGTH"]
    if len(prefix) > longest:
        abort(400, description=f"prefix is longer than {longest} characters")
    limit = _count(_param("limit"), "limit", DEFAULT_LIMIT, MAX_LIMIT)
    return _json({"prefix": prefix, "limit": limit, "words": _embeddings().words(prefix, limit)})


@bp.get("/context-probs")
def context_probs():
    word = _word(_param("word", required=True), "word")
    k = _k(_param("k"))
    context = _ask(_embeddings().context_probs, word, k)
    return _json({"word": word, "k": k, "objective": _embeddings().model.objective,
                  "context": [{"word": w, "prob": p} for w, p in context]})


@bp.app_errorhandler(HTTPException)
def json_error(exc: HTTPException):
    response = exc.get_response()  # keeps the status and headers such as Allow on 405
    response.set_data(json.dumps({"error": exc.description or exc.name}, separators=(",", ":")))
    response.mimetype = "application/json"
    return response


# ------------------------------------------------------------------------------- shaping and asking

def _embeddings() -> Embeddings:
    return current_app.extensions["embeddings"]


def _json(payload: dict, status: int = 200) -> Response:
    # allow_nan=False: a non-finite number would be invalid JSON; better a loud 500 than a broken body
    return Response(json.dumps(payload, separators=(",", ":"), allow_nan=False), status=status,
                    mimetype="application/json")


def _scored(pairs: list[tuple[str, float]]) -> list[dict]:
    return [{"word": w, "score": s} for w, s in pairs]


def _ask(method, *args):
    """Call an Embeddings method, turning its exceptions into HTTP errors."""
    try:
        return method(*args)
    except UnknownWord as exc:
        abort(404, description=f"unknown word: {exc.word}")
    except BadQuery as exc:
        abort(400, description=str(exc))
    except ContextUnavailable as exc:
        abort(409, description=str(exc))


# ---------------------------------------------------------------------------------- parsing inputs

def _param(name: str, required: bool = False) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        abort(400, description=f"parameter '{name}' given {len(values)} times: give it once")
    if not values and required:
        abort(400, description=f"missing parameter '{name}'")
    return values[0] if values else None


def _word(value, what: str) -> str:
    limit = current_app.config["MAX_WORD_LENGTH"]
    if not isinstance(value, str) or not value:
        abort(400, description=f"{what} must be a non-empty string")
    if len(value) > limit:
        abort(400, description=f"{what} is longer than {limit} characters")
    return value


def _word_list(values, what: str) -> list[str]:
    limit = current_app.config["MAX_BATCH_WORDS"]
    if not isinstance(values, list):
        abort(400, description=f"'{what}' must be a list of words")
    if len(values) > limit:
        abort(400, description=f"'{what}' holds {len(values)} words; at most {limit} are allowed")
    return [_word(value, f"each word of '{what}'") for value in values]


def _k(value, from_json: bool = False) -> int:
    """k from a query string or a JSON body (see _count), within 1..MAX_K."""
    max_k = current_app.config["MAX_K"]
    return _count(value, "k", min(DEFAULT_K, max_k), max_k, from_json)


def _count(value, name: str, default: int, maximum: int, from_json: bool = False) -> int:
    """A count from a query string (ASCII digits only; absent: `default`) or a JSON body (an integer; null
    is an error), within 1..maximum."""
    if value is None and not from_json:
        return default
    if from_json:
        number = value if type(value) is int else None  # not bool, not 10.0
    else:
        ok = value.isascii() and value.isdigit() and len(value) <= _K_DIGITS
        number = int(value) if ok else None
    if number is None or not 1 <= number <= maximum:
        abort(400, description=f"{name} must be an integer from 1 to {maximum}")
    return number


def _numbers(values, dim: int) -> list[float]:
    if not isinstance(values, list) or len(values) != dim:
        abort(400, description=f"'vector' must be a list of {dim} numbers")
    try:
        numbers = [float(v) for v in values if type(v) in (int, float)]
    except OverflowError:  # an integer literal beyond float range
        numbers = []
    if len(numbers) != dim or not all(map(math.isfinite, numbers)):
        abort(400, description=f"'vector' must be a list of {dim} finite numbers")
    return numbers


def _body(required: set[str], optional: set[str] = frozenset()) -> dict:
    """The request's JSON object, with exactly the allowed keys; 415, 413 or 400 otherwise."""
    if not request.is_json:
        abort(415, description="send the body as application/json")
    try:  # NaN and Infinity are not JSON; deep nesting must be a 400, not a RecursionError
        body = json.loads(request.get_data(cache=False), parse_constant=_reject_constant)
    except RecursionError:
        abort(400, description="body is nested too deeply")
    except ValueError as exc:
        abort(400, description=f"body is not valid JSON ({str(exc)[:200]})")
    if not isinstance(body, dict):
        abort(400, description="body must be a JSON object")
    unknown, missing = set(body) - required - optional, required - set(body)
    if unknown or missing:
        abort(400, description=f"body must have the fields {sorted(required)}"
                               + (f" and optionally {sorted(optional)}" if optional else "")
                               + f"; missing {sorted(missing)}, unexpected {sorted(unknown)[:10]}")
    return body


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


# ---------------------------------------------------------------------------------------- contract

def openapi_document(config, dim: int) -> bytes:
    """service/openapi.yaml as JSON, with this instance's limits and vector length written into it, and the
    key required where this instance has one (the file says: the key, or none)."""
    doc = yaml.safe_load(Path(__file__).with_name("openapi.yaml").read_text(encoding="utf-8"))
    if config["API_KEY"] is not None:
        doc["security"] = [{"bearer": []}]
    parameters, schemas = doc["components"]["parameters"], doc["components"]["schemas"]
    parameters["k"]["schema"].update(maximum=config["MAX_K"], default=min(DEFAULT_K, config["MAX_K"]))
    parameters["limit"]["schema"].update(maximum=MAX_LIMIT, default=DEFAULT_LIMIT)
    for limited in (parameters["word"]["schema"], parameters["word_optional"]["schema"], schemas["Word"],
                    parameters["prefix"]["schema"]):
        limited["maxLength"] = config["MAX_WORD_LENGTH"]
    schemas["WordsRequest"]["properties"]["words"]["maxItems"] = config["MAX_BATCH_WORDS"]
    schemas["VectorRequest"]["properties"]["k"].update(maximum=config["MAX_K"])
    schemas["Vector"].update(minItems=dim, maxItems=dim)
    return json.dumps(doc, indent=1).encode()
