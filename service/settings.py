"""The service's settings: defaults, then the environment, then explicit overrides, checked once at startup."""
from __future__ import annotations

import os
import tempfile

from flask import Config

PREFIX = "SKIPGRAM"  # SKIPGRAM_MAX_K=50 sets MAX_K; values are parsed as JSON where they can be
PLAIN_ENV = ("MODEL_DIR", "INDEX")  # also read without the prefix, as the README and Makefile use them
INDEX_KINDS = ("flat", "hnsw")

DEFAULTS = {
    "MODEL_DIR": None,  # model folder written by trainer.artifact.save; required
    "INDEX": "flat",  # "flat": exact IndexFlatIP; "hnsw": approximate IndexHNSWFlat for large vocabularies
    "HNSW_M": 16,  # graph degree: more links, better recall, a bigger and slower index
    "HNSW_EF_CONSTRUCTION": 80,  # build-time beam width
    "HNSW_EF_SEARCH": 48,  # query-time beam width: the recall/latency dial (measure with bench/serve_load.py)
    "MAX_K": 100,  # largest k a client may ask for
    "MAX_BATCH_WORDS": 1000,  # largest word list in one request
    "MAX_WORD_LENGTH": 100,  # longest word accepted, in characters
    "MAX_CONTENT_LENGTH": 1 << 20,  # request body limit in bytes (Flask answers 413 above it)
    # Exact top-MAX_K tables are computed once per model for vocabularies up to this size (the cost grows
    # with its square: ~1.5 CPU-minutes at 100,000 x 100); 0 turns them off and every query is searched.
    "TABLES_MAX_WORDS": 200_000,
    "CACHE_DIR": os.path.join(tempfile.gettempdir(), "skipgram-cache"),  # where derived data is kept
    "FAISS_THREADS": 1,  # OpenMP threads per worker: single queries gain nothing from more
    "PROVIDE_AUTOMATIC_OPTIONS": False,  # OPTIONS would answer an empty non-JSON 200; let it be a JSON 405
}

_POSITIVE = ("HNSW_M", "HNSW_EF_CONSTRUCTION", "HNSW_EF_SEARCH", "MAX_K", "MAX_BATCH_WORDS",
             "MAX_WORD_LENGTH", "MAX_CONTENT_LENGTH", "FAISS_THREADS")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


def configure(config: Config, overrides: dict | None = None) -> Config:
    """Fill `config` from DEFAULTS, the environment and `overrides`, in that order, and check it."""
    config.from_mapping(DEFAULTS)
    config.update({name: os.environ[name] for name in PLAIN_ENV if name in os.environ})
    config.from_prefixed_env(PREFIX)
    config.update(overrides or {})
    check(config)
    return config


def load(overrides: dict | None = None) -> Config:
    """The settings outside a Flask app (the precompute command uses the same rules as create_app)."""
    return configure(Config(os.getcwd()), overrides)


def check(config) -> None:
    if not config.get("MODEL_DIR"):
        raise SettingsError("MODEL_DIR is not set: point it at a model folder (e.g. MODEL_DIR=models/default)")
    config["MODEL_DIR"] = os.fspath(config["MODEL_DIR"])
    if config["INDEX"] not in INDEX_KINDS:
        raise SettingsError(f"INDEX must be one of {', '.join(INDEX_KINDS)}, got {config['INDEX']!r}")
    for name in _POSITIVE:
        _check_int(config, name, minimum=1)
    _check_int(config, "TABLES_MAX_WORDS", minimum=0)


def _check_int(config, name: str, minimum: int) -> None:
    value = config[name]
    if isinstance(value, str) and value.strip().isdigit():
        value = config[name] = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingsError(f"{name} (environment {PREFIX}_{name}) must be an integer >= {minimum}, "
                            f"got {value!r}")
