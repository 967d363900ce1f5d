"""The service's settings: defaults, then the environment, then explicit overrides, checked once at startup."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Config

PREFIX = "SKIPGRAM"  # SKIPGRAM_MAX_K=50 sets MAX_K; values are parsed as JSON where they can be
PLAIN_ENV = ("MODEL_DIR", "INDEX")  # also read without the prefix, as the README and Makefile use them
RAW_ENV = ("API_KEY", "API_KEY_FILE")  # taken as given, never parsed as JSON (a key of digits stays a string)
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")


def cores() -> int:
    """The cores this process may run on (all of them where the OS cannot say, as on macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_cache_dir() -> str:
    """A cache folder of the user's own under the temporary folder (created private, checked at use)."""
    return os.path.join(tempfile.gettempdir(), f"skipgram-cache-{os.getuid()}")


DEFAULTS = {
    "MODEL_DIR": None,  # model folder written by trainer.artifact.save; required
    # "auto": "flat" when every word's neighbours can be precomputed (see TABLES_MAX_COST), else "ivf";
    # "flat": exact IndexFlatIP; "hnsw": IndexHNSWFlat graph; "ivf": IVF with PQ fast-scan codes, re-ranked
    "INDEX": "auto",
    "HNSW_M": 16,  # graph degree: more links, better recall, a bigger and slower index
    "HNSW_EF_CONSTRUCTION": 80,  # build-time beam width
    "HNSW_EF_SEARCH": 48,  # query-time beam width: the recall/latency dial of hnsw
    "IVF_NLIST": 0,  # coarse lists; 0: about sqrt(V)
    # The recall/latency dial of ivf: lists scanned per query and PQ candidates re-ranked by exact cosine;
    # 0: tuned per model, the cheapest pair whose recall@10 on a sample of its words reaches IVF_RECALL
    "IVF_NPROBE": 0,
    "IVF_CANDIDATES": 0,
    "IVF_RECALL": 0.96,
    "MAX_K": 100,  # largest k a client may ask for; also the depth of the tables
    "MAX_BATCH_WORDS": 1000,  # largest word list in one request
    "MAX_WORD_LENGTH": 100,  # longest word accepted, in characters
    "MAX_CONTENT_LENGTH": 1 << 20,  # request body limit in bytes (Flask answers 413 above it)
    # Exact top-MAX_K tables cost about V^2 N multiply-adds each; they are built while their sum stays
    # within this, which keeps a first start under 90 s on 2 cores (the two tables of 100,000 x 100, 2e12,
    # took 95 s); 0 turns them off.
    "TABLES_MAX_COST": 1_200_000_000_000,
    # Tables beyond TABLES_MAX_COST but within this are built once the server is serving, in the background
    # (low priority), and then served after an automatic HUP: 100,000 x 100 gets its context table about
    # a minute after it is ready. 0 (or not above TABLES_MAX_COST) turns this off.
    "TABLES_LATER_MAX_COST": 3_000_000_000_000,
    "CACHE_DIR": None,  # where derived data is kept; default: default_cache_dir()
    "FAISS_THREADS": 1,  # OpenMP threads per worker: single queries gain nothing from more
    "PROVIDE_AUTOMATIC_OPTIONS": False,  # OPTIONS would answer an empty non-JSON 200; let it be a JSON 405
    # Set by gunicorn.conf.py for its workers: the model contents every worker serves, {"digest": D,
    # "held": {file name: descriptor}} (the master holds the files open: see trainer.artifact.hold), and
    # why the last HUP kept those contents, {"error": message, "at": time} (None: it did not).
    "SERVING": None,
    "RELOAD_ERROR": None,
    # When set, every endpoint but /healthz, /readyz, /metrics and the page (/, /static/) wants
    # "Authorization: Bearer KEY" (service.auth); printable ASCII without spaces. Never logged, never in an
    # error message.
    "API_KEY": None,
    "API_KEY_FILE": None,  # or a file holding the key (a mounted secret); its trailing newlines are dropped
}

_POSITIVE = ("HNSW_M", "HNSW_EF_CONSTRUCTION", "HNSW_EF_SEARCH", "MAX_K",
             "MAX_BATCH_WORDS", "MAX_WORD_LENGTH", "MAX_CONTENT_LENGTH", "FAISS_THREADS")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


def configure(config: Config, overrides: dict | None = None) -> Config:
    """Fill `config` from DEFAULTS, the environment and `overrides`, in that order, and check it."""
    config.from_mapping(DEFAULTS)
    config.update({name: os.environ[name] for name in PLAIN_ENV if name in os.environ})
    config.from_prefixed_env(PREFIX)
    config.update({name: os.environ[f"{PREFIX}_{name}"] for name in RAW_ENV if f"{PREFIX}_{name}" in os.environ})
    config.update(overrides or {})
    check(config)
    return config


def load(overrides: dict | None = None) -> Config:
    """The settings outside a Flask app (the precompute command uses the same rules as create_app)."""
    return configure(Config(os.getcwd()), overrides)


def check(config) -> None:
    if not config.get("MODEL_DIR"):
        raise SettingsError("MODEL_DIR is not set: point it at a model folder (e.g. MODEL_DIR=models/default)")
    # Absolute from here on: the precompute command and every worker then mean the same folders.
    config["MODEL_DIR"] = os.path.abspath(os.fspath(config["MODEL_DIR"]))
    config["CACHE_DIR"] = os.path.abspath(os.fspath(config["CACHE_DIR"] or default_cache_dir()))
    if config["INDEX"] not in INDEX_KINDS:
        raise SettingsError(f"INDEX must be one of {', '.join(INDEX_KINDS)}, got {config['INDEX']!r}")
    for name in _POSITIVE:
        _check_int(config, name, minimum=1)
    for name in ("IVF_NLIST", "IVF_NPROBE", "IVF_CANDIDATES"):
        _check_int(config, name, minimum=0)
    recall = config["IVF_RECALL"]
    if isinstance(recall, str):
        try:
            recall = config["IVF_RECALL"] = float(recall)
        except ValueError:
            pass
    if isinstance(recall, bool) or not isinstance(recall, (int, float)) or not 0 < recall <= 1:
        raise SettingsError(f"IVF_RECALL (environment {PREFIX}_IVF_RECALL) must be a number in (0, 1], "
                            f"got {recall!r}")
    for name in ("TABLES_MAX_COST", "TABLES_LATER_MAX_COST"):
        if isinstance(config[name], float) and config[name].is_integer():
            config[name] = int(config[name])  # 2e12 reads as a float
        _check_int(config, name, minimum=0)
    serving = config["SERVING"]
    if serving is not None and not (isinstance(serving, dict) and isinstance(serving.get("digest"), str)
                                    and isinstance(serving.get("held"), dict)
                                    and all(type(fd) is int for fd in serving["held"].values())):
        raise SettingsError(f"SERVING (environment {PREFIX}_SERVING) must be JSON "
                            '{"digest": "...", "held": {"file": descriptor, ...}}')
    reload_error = config["RELOAD_ERROR"]
    if reload_error is not None and not (isinstance(reload_error, dict) and isinstance(reload_error.get("error"), str)):
        raise SettingsError(f"RELOAD_ERROR (environment {PREFIX}_RELOAD_ERROR) must be JSON "
                            '{"error": "...", "at": "..."}')
    _check_api_key(config)


def _check_api_key(config) -> None:
    """Resolve API_KEY_FILE into API_KEY and check the key; no message quotes it."""
    key, path = config.get("API_KEY"), config.get("API_KEY_FILE")
    if key is not None and path is not None:
        raise SettingsError(f"API_KEY and API_KEY_FILE (environment {PREFIX}_API_KEY, {PREFIX}_API_KEY_FILE) "
                            "are both set: set one")
    what = f"API_KEY (environment {PREFIX}_API_KEY)"
    if path is not None:
        what = f"the API key in {path} (API_KEY_FILE)"
        try:
            key = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise SettingsError(f"{what} is not UTF-8 text") from None
        except OSError as exc:
            raise SettingsError(f"cannot read the API key file {path} (API_KEY_FILE): {exc.strerror}") from None
        config["API_KEY"], config["API_KEY_FILE"] = key, None  # resolved: checking again finds one setting
    if key is None:
        return
    if not isinstance(key, str) or not key:
        raise SettingsError(f"{what} is empty" if key == "" else f"{what} must be a string")
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise SettingsError(f"{what} must be printable ASCII without spaces (it is sent in a header)")


def _check_int(config, name: str, minimum: int) -> None:
    value = config[name]
    if isinstance(value, str) and value.strip().isdigit():
        value = config[name] = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingsError(f"{name} (environment {PREFIX}_{name}) must be an integer >= {minimum}, "
                            f"got {value!r}")
