"""A model's derived data: what the service computes once per model contents and every worker maps.

One cache entry, a folder NAME-DIGEST under CACHE_DIR (the digest of the model's contents), holds
  words-{blob,offsets,hashes,rows,sorted}.npy   the vocabulary lookup and prefix order (service.words)
  unit.faiss                             the unit input vectors, the one copy every search reads (service.indexes)
  hnsw-m{M}-efc{E}.faiss, ivf-nlist{L}-pq{P}-residual.faiss   the approximate index of INDEX=hnsw or ivf
  ivf-...-dial-recall{R}[-nprobe{n}][-candidates{c}].json   how ivf is searched, tuned for recall R (the
                                         settings given are in the name)
  similar-top{k}-{ids,scores}.npy        every word's k nearest words (exact index, when affordable)
  context-top{k}-{ids,scores}.npy, context-lse.npy   every word's k likeliest context words, log softmax normaliser
  manifest.json                          the files prepare() checked, with their sizes, and its seconds
  models.txt                             the model folders the entry was prepared for (see remove_stale)
prepare() runs once per server start (`python -m service.precompute`, before gunicorn forks): it checks the
model's values and every file there, rebuilds what is missing or damaged, then writes the manifest. open()
runs in every worker: it maps what the manifest lists after checking sizes and shapes, and prepares the
data itself only when it cannot. Nothing mapped is ever written.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from service import arrays, indexes, words
from service import settings as settings_module
from trainer import artifact
from trainer.artifact import ModelError

log = logging.getLogger(__name__)
# Tables hold an id and a score (8 bytes) per entry: beyond this (a very large MAX_K) they would cost more
# memory than they save time, and queries are searched instead.
MAX_TABLE_ENTRIES = 50_000_000
# INDEX=auto: HNSW recalls more than IVF at equal speed, but its graph took 15 s to build at 100,000 x 100
# and 261 s at 1,000,000 x 300 on 2 cores; up to this many values (V N) it builds in well under 90 s.
AUTO_HNSW_MAX_VALUES = 20_000_000
MANIFEST = "manifest.json"
MODELS_FILE = "models.txt"
UNIT_FILE = "unit.faiss"


@dataclass(frozen=True)
class Plan:
    """What a model's derived data consists of under given settings (a pure function of both)."""

    kind: str  # "flat", "hnsw" or "ivf" (INDEX=auto resolved)
    index_file: str | None  # the approximate index's file, None for flat
    dial_file: str | None  # ivf: the tuned nprobe and candidates; None when both are set or not ivf
    similar_k: int  # depth of the similar table; 0: none
    context_k: int  # depth of the context table; 0: none

    def files(self) -> list[str]:
        names = [f"words-{name}.npy" for name in words.NAMES] + [UNIT_FILE]
        names += [name for name in (self.index_file, self.dial_file) if name]
        names += list(_similar_specs(self.similar_k, 0)) if self.similar_k else []
        names += list(_context_specs(self.context_k, 0)) if self.context_k else []
        return names


def make_plan(model: artifact.Model, settings: Mapping) -> Plan:
    """Tables cost about V^2 N multiply-adds each: they are built, the similar table first, while their
    sum stays within TABLES_MAX_COST. INDEX=auto is the exact index when the similar table is affordable
    (every answer by word precomputed), else HNSW while its graph builds in well under a minute and a half
    on 2 cores (V N up to AUTO_HNSW_MAX_VALUES), else IVF, which builds in a fraction of HNSW's time."""
    size, dim, max_k = model.vocab_size, model.dim, settings["MAX_K"]
    cost = size * size * dim
    affordable = lambda tables: (size >= 2 and size * max_k <= MAX_TABLE_ENTRIES  # noqa: E731
                                 and tables * cost <= settings["TABLES_MAX_COST"])
    kind = settings["INDEX"]
    if kind == "auto":
        kind = "flat" if affordable(1) else "hnsw" if size * dim <= AUTO_HNSW_MAX_VALUES else "ivf"
    similar_k = min(max_k, size - 1) if kind == "flat" and affordable(1) else 0
    context_k = (min(max_k, size) if model.output_vectors is not None and affordable(1 + bool(similar_k))
                 else 0)
    index_file = {"flat": None,
                  "hnsw": f"hnsw-m{settings['HNSW_M']}-efc{settings['HNSW_EF_CONSTRUCTION']}.faiss",
                  "ivf": (f"ivf-nlist{indexes.ivf_lists(size, settings['IVF_NLIST'])}-pq{indexes.pq_parts(dim)}"
                          "-residual.faiss"),
                  }[kind]
    dial_file = None
    if kind == "ivf" and not (settings["IVF_NPROBE"] and settings["IVF_CANDIDATES"]):
        fixed = "".join(f"-{name}{settings[key]}" for name, key in
                        (("nprobe", "IVF_NPROBE"), ("candidates", "IVF_CANDIDATES")) if settings[key])
        dial_file = f"{_dial_prefix(index_file)}-recall{settings['IVF_RECALL']!r}{fixed}.json"
    return Plan(kind, index_file, dial_file, similar_k, context_k)


@dataclass(eq=False)
class Derived:
    """A model's derived data, mapped from its cache entry (or in memory when the entry cannot be written)."""

    plan: Plan
    words: words.WordTable
    unit_index: faiss.IndexFlatIP  # owns the memory `unit` views
    unit: np.ndarray  # float32 (V, N), read-only: unit input vectors
    index: faiss.Index | None  # the approximate index (hnsw: unit_index is its storage)
    ivf_dial: indexes.IvfDial | None  # how the ivf index is searched
    similar: tuple[np.ndarray, np.ndarray] | None  # ids int32 (V, k), cosines float32 (V, k)
    context: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # ids (V, k), scores (V, k), lse float64 (V,)
    folder: Path
    seconds: float  # time taken to prepare or open it
    prepare_seconds: float | None  # time the entry's last prepare() took (its manifest says); None: unknown


def cache_folder(model: artifact.Model, cache_dir: str | os.PathLike) -> Path:
    """One folder per model contents (a model saved again unchanged finds its old entry)."""
    return Path(cache_dir) / f"{model.path.name}-{model.digest}"


# ------------------------------------------------------------------------------------------ preparing

def prepare(model: artifact.Model, settings: Mapping, threads: int = 1) -> Derived:
    """Check the model's values and every file of its cache entry, build what is missing or damaged (with
    `threads` threads), record the result in the manifest. Raises ModelError for an unusable model."""
    started = time.perf_counter()
    artifact.check_values_of(model)
    plan = make_plan(model, settings)
    folder = cache_folder(model, settings["CACHE_DIR"])
    entry = _Entry(_make_folder(folder, settings))
    table = entry.cached("word table", lambda: _checked_words(folder, model.vocab_size),
                         lambda: words.build(model.words), lambda a: _save_all(folder, _word_specs(a)))
    word_table = words.WordTable(table)
    unit_path = folder / UNIT_FILE
    unit_index = entry.cached("unit vectors", lambda: _checked_unit(unit_path, model),
                              lambda: indexes.build_unit(model.input_vectors),
                              lambda index: indexes.write(index, unit_path))
    unit = indexes.unit_view(unit_index)
    index = None
    if plan.kind != "flat":
        path = folder / plan.index_file
        if plan.kind == "hnsw":
            read = lambda: indexes.read_hnsw(path, unit_index, settings["HNSW_M"])  # noqa: E731
            build = lambda: indexes.build_hnsw(unit, settings["HNSW_M"], settings["HNSW_EF_CONSTRUCTION"], threads)  # noqa: E731
        else:
            nlist = indexes.ivf_lists(model.vocab_size, settings["IVF_NLIST"])
            read = lambda: indexes.read_ivf(path, model.vocab_size, model.dim, nlist)  # noqa: E731
            build = lambda: indexes.build_ivf(unit, nlist, threads)  # noqa: E731
        index = entry.cached(f"{plan.kind} index", read, build, lambda built: indexes.write(built, path))
        if plan.kind == "hnsw" and index.storage is None:  # built here and kept in memory
            index.storage, index.own_fields = unit_index, False
    ivf_dial = None
    if plan.kind == "ivf":
        tune = lambda: _tuned_dial(index, unit_index, settings, threads)  # noqa: E731
        # dials tuned on an index this one replaces are of no use: tuned again, unless they all could go
        stale_dials = "ivf index" in entry.built and not _remove_dials(folder, plan, entry)
        ivf_dial = (entry.cached("ivf dial", lambda: _read_dial(folder / plan.dial_file, index, settings), tune,
                                 lambda dial: _write_dial(folder / plan.dial_file, dial))
                    if plan.dial_file and not stale_dials else tune())
    similar = context = None
    if plan.similar_k:
        specs = _similar_specs(plan.similar_k, model.vocab_size)
        similar = entry.cached("similar table", lambda: _checked_table(folder, specs, model.vocab_size),
                               lambda: arrays.build_tables(unit, unit, plan.similar_k, exclude_self=True,
                                                           threads=threads),
                               lambda built: _save_all(folder, dict(zip(specs, built))))
    if plan.context_k:
        specs = _context_specs(plan.context_k, model.vocab_size)
        context = entry.cached("context table", lambda: _checked_table(folder, specs, model.vocab_size),
                               lambda: arrays.build_tables(model.input_vectors, model.output_vectors,
                                                           plan.context_k, with_lse=True, threads=threads),
                               lambda built: _save_all(folder, dict(zip(specs, built))))
    seconds = time.perf_counter() - started
    if entry.writable and entry.complete:
        _write_manifest(folder, model, plan, seconds)
    elif entry.writable:  # a file left as it was (damaged, perhaps): workers prepare for themselves
        try:
            (folder / MANIFEST).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove %s (%s)", folder / MANIFEST, exc)
    return Derived(plan, word_table, unit_index, unit, index, ivf_dial, similar, context, folder, seconds,
                   seconds)


class _Entry:
    """A cache entry being prepared: whether it can be written, and whether every file it needs was."""

    def __init__(self, writable: bool):
        self.writable = writable
        self.complete = True  # no write failed: a manifest may vouch for the entry's files
        self.built: set[str] = set()  # what this preparation built afresh

    def cached(self, what: str, read: Callable, build: Callable, write: Callable):
        """read() the checked file(s); else build(), write() and read back mapped (kept in memory when the
        entry cannot be written)."""
        try:
            return read()
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("%s: unusable (%s): building it again", what, exc)
        started = time.perf_counter()
        built = build()
        self.built.add(what)
        log.info("%s built in %.1f s", what, time.perf_counter() - started)
        if not self.writable:
            return built
        try:
            write(built)
            return read()
        except OSError as exc:
            self.complete = False
            log.warning("cannot keep the %s in the cache (%s): this process keeps its own", what, exc)
            return built


def _make_folder(folder: Path, settings: Mapping) -> bool:
    """Create the entry (and a private cache folder); False, with a warning, when it cannot be written."""
    cache = folder.parent
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(cache)
        folder.mkdir(mode=0o700, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return True
    except OSError as exc:
        log.warning("cannot write the cache entry %s (%s): every worker computes its own data", folder, exc)
        return False


def _check_private(cache: Path) -> None:
    """The default cache folder, under a temporary folder anyone can write, must be this user's alone: a
    folder another user made first could hold planted data. (A folder set by SKIPGRAM_CACHE_DIR is the
    operator's choice.)"""
    try:
        default = settings_module.default_cache_dir()
    except OSError:  # no usable temporary folder (a read-only root file system): the cache is set, not default
        return
    if os.path.abspath(cache) != os.path.abspath(default):
        return
    info = cache.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ModelError(f"{cache}: the default cache folder belongs to another user or is open to "
                         "others; remove it or set SKIPGRAM_CACHE_DIR to a folder of your own")


def _checked_words(folder: Path, size: int) -> dict[str, np.ndarray]:
    table = {name: _load_npy(folder / f"words-{name}.npy") for name in words.NAMES}
    words.WordTable(table).check(size)
    return table


def _checked_unit(path: Path, model: artifact.Model) -> faiss.IndexFlatIP:
    index = indexes.read_unit(path, model.vocab_size, model.dim)
    indexes.check_unit(indexes.unit_view(index))
    return index


def _checked_table(folder: Path, specs: dict, size: int) -> tuple[np.ndarray, ...]:
    """The arrays of a table, checked: dtypes and shapes, ids within the vocabulary, scores finite."""
    loaded = _load_all(folder, specs)
    for name, array in zip(specs, loaded):
        if array.dtype == np.int32 and len(array) and not (0 <= array.min() and array.max() < size):
            raise ValueError(f"{name}: ids outside the vocabulary")
        if array.dtype != np.int32 and not np.isfinite(array).all():
            raise ValueError(f"{name}: values that are not finite")
    return loaded


def _dial_prefix(index_file: str) -> str:
    """What the names of an ivf index's dial files begin with."""
    return f"{index_file.removesuffix('.faiss')}-dial"


def _remove_dials(folder: Path, plan: Plan, entry: _Entry) -> bool:
    """Delete the entry's dial files of plan's ivf index; False when some could not go."""
    if not entry.writable:
        return False
    try:
        for stale in folder.glob(f"{_dial_prefix(plan.index_file)}-*.json"):
            stale.unlink(missing_ok=True)
        return True
    except OSError as exc:
        entry.complete = False
        log.warning("cannot remove the ivf dials of the index replaced (%s): tuning in this process", exc)
        return False


def _tuned_dial(index: faiss.Index, unit_index: faiss.IndexFlatIP, settings: Mapping,
                threads: int) -> indexes.IvfDial:
    dial = indexes.tune_ivf(index, unit_index, settings["IVF_RECALL"], settings["IVF_NPROBE"],
                            settings["IVF_CANDIDATES"], threads=threads)
    if dial.recall is not None and dial.recall < settings["IVF_RECALL"]:
        log.warning("ivf: recall@10 %.3f with %d of %d lists probed and %d candidates, short of IVF_RECALL=%g",
                    dial.recall, dial.nprobe, index.nlist, dial.candidates, settings["IVF_RECALL"])
    return dial


def _read_dial(path: Path, index: faiss.Index, settings: Mapping) -> indexes.IvfDial:
    """The tuned dial, checked: probes within the lists, candidates positive, the settings given kept."""
    body = json.loads(path.read_text(encoding="utf-8"))
    try:
        dial = indexes.IvfDial(body["nprobe"], body["candidates"], body["recall"])
    except (KeyError, TypeError):
        raise ValueError(f"{path}: not an ivf dial") from None
    if (type(dial.nprobe) is not int or not 1 <= dial.nprobe <= index.nlist
            or type(dial.candidates) is not int or dial.candidates < 1
            or not (dial.recall is None or type(dial.recall) is float and 0 <= dial.recall <= 1)
            or settings["IVF_NPROBE"] and min(settings["IVF_NPROBE"], index.nlist) != dial.nprobe
            or settings["IVF_CANDIDATES"] not in (0, dial.candidates)):
        raise ValueError(f"{path}: an ivf dial out of range or of other settings")
    return dial


def _write_dial(path: Path, dial: indexes.IvfDial) -> None:
    body = {"nprobe": dial.nprobe, "candidates": dial.candidates, "recall": dial.recall}
    with artifact.atomic_file(path) as f:
        f.write(json.dumps(body, indent=1).encode())


def _write_manifest(folder: Path, model: artifact.Model, plan: Plan, seconds: float) -> None:
    """Add this plan's files to the manifest (other settings' files stay listed), with the `seconds` this
    preparation took (the service reports it in /metrics)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = dict(manifest["files"]) if manifest.get("model") == model.digest else {}
    except (OSError, ValueError, KeyError, TypeError):
        files = {}
    files.update({name: (folder / name).stat().st_size for name in plan.files()})
    body = json.dumps({"model": model.digest, "files": files, "prepare_seconds": round(seconds, 3)},
                      indent=1, sort_keys=True).encode()
    with artifact.atomic_file(folder / MANIFEST) as f:
        f.write(body)


# -------------------------------------------------------------------------------------------- opening

def open_prepared(model: artifact.Model, settings: Mapping) -> Derived:
    """Map the data prepare() checked for this model and settings (sizes and shapes checked again, not
    values); prepare it in this process, with one thread, when the entry lacks it or does not match."""
    started = time.perf_counter()
    plan = make_plan(model, settings)
    folder = cache_folder(model, settings["CACHE_DIR"])
    try:
        _check_private(folder.parent)
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest["model"] != model.digest:
            raise ValueError("manifest of other contents")
        for name in plan.files():
            if (folder / name).stat().st_size != manifest["files"].get(name):
                raise ValueError(f"{name}: not the size prepared")
        table = words.WordTable({name: _load_npy(folder / f"words-{name}.npy") for name in words.NAMES})
        if len(table) != model.vocab_size:
            raise ValueError("word table of another size")
        unit_index = indexes.read_unit(folder / UNIT_FILE, model.vocab_size, model.dim)
        index = ivf_dial = None
        if plan.kind == "hnsw":
            index = indexes.read_hnsw(folder / plan.index_file, unit_index, settings["HNSW_M"])
        elif plan.kind == "ivf":
            index = indexes.read_ivf(folder / plan.index_file, model.vocab_size, model.dim,
                                     indexes.ivf_lists(model.vocab_size, settings["IVF_NLIST"]))
            ivf_dial = (_read_dial(folder / plan.dial_file, index, settings) if plan.dial_file
                        else _tuned_dial(index, unit_index, settings, threads=1))  # both set: nothing tuned
        similar = (_load_all(folder, _similar_specs(plan.similar_k, model.vocab_size)) if plan.similar_k else None)
        context = (_load_all(folder, _context_specs(plan.context_k, model.vocab_size)) if plan.context_k else None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.info("no prepared data for %s in %s (%s): preparing it in this process", model.path, folder, exc)
        return prepare(model, settings)
    prepared = manifest.get("prepare_seconds")
    return Derived(plan, table, unit_index, indexes.unit_view(unit_index), index, ivf_dial, similar, context, folder,
                   time.perf_counter() - started, prepared if type(prepared) in (int, float) else None)


def preload(model: artifact.Model, settings: Mapping) -> None:
    """In the gunicorn master, before forking: read what workers cannot map (the IVF lists), so that they
    share this process's copy."""
    plan = make_plan(model, settings)
    if plan.kind == "ivf":
        try:
            indexes.preload(cache_folder(model, settings["CACHE_DIR"]) / plan.index_file)
        except (OSError, ValueError) as exc:
            log.warning("IVF index not preloaded (%s): every worker reads its own", exc)


# ------------------------------------------------------------------------------------ .npy files

def _word_specs(table: dict) -> dict[str, np.ndarray]:
    return {f"words-{name}.npy": table[name] for name in words.NAMES}


def _similar_specs(k: int, size: int) -> dict[str, tuple]:
    return {f"similar-top{k}-ids.npy": (np.int32, (size, k)), f"similar-top{k}-scores.npy": (np.float32, (size, k))}


def _context_specs(k: int, size: int) -> dict[str, tuple]:
    return {f"context-top{k}-ids.npy": (np.int32, (size, k)), f"context-top{k}-scores.npy": (np.float32, (size, k)),
            "context-lse.npy": (np.float64, (size,))}


def _load_all(folder: Path, specs: dict) -> tuple[np.ndarray, ...]:
    return tuple(_load_npy(folder / name, *spec) for name, spec in specs.items())


def _load_npy(path: Path, dtype=None, shape=None) -> np.ndarray:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if (dtype is not None and array.dtype != dtype) or (shape is not None and array.shape != shape):
        raise ValueError(f"{path}: expected {np.dtype(dtype)} {shape}, found {array.dtype} {array.shape}")
    return np.asarray(array)  # a plain view of the mapping: np.memmap's indexing costs more per request


def _save_all(folder: Path, named: dict[str, np.ndarray]) -> None:
    for name, array in named.items():
        with artifact.atomic_file(folder / name) as f:
            np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


# ---------------------------------------------------------------------------------- stale entries

def remove_stale(model: artifact.Model, cache_dir: str | os.PathLike) -> list[Path]:
    """Record that the model's cache entry serves this model folder, then delete every other entry built
    for this folder that no folder it served still matches: what earlier contents of a retrained model
    left. An entry still matched by some folder (a copy of the model elsewhere, maybe being served) is
    kept, and so is an entry with no record. Returns the folders deleted."""
    here = os.path.abspath(model.path)  # the path the service was given: a symlink may be repointed
    current = cache_folder(model, cache_dir)
    if not Path(cache_dir).is_dir():  # nothing was ever cached there
        return []
    try:
        if current.is_dir() and here not in _served(current):
            with open(current / MODELS_FILE, "a", encoding="utf-8") as f:  # appends of one line do not mix
                f.write(here + "\n")
        entries = sorted(Path(cache_dir).iterdir())
    except OSError as exc:
        log.warning("cannot tidy the cache in %s (%s)", cache_dir, exc)
        return []
    removed = []
    for entry in entries:
        served = _served(entry)
        if entry != current and here in served and not any(_matches(entry, path) for path in served):
            shutil.rmtree(entry, ignore_errors=True)  # workers that map its files keep reading them
            if not entry.exists():
                log.info("removed %s, derived from earlier contents of %s", entry, here)
                removed.append(entry)
    return removed


def _served(entry: Path) -> set[str]:
    try:
        return set((entry / MODELS_FILE).read_text(encoding="utf-8").split("\n")) - {""}
    except (OSError, UnicodeDecodeError):
        return set()


def _matches(entry: Path, model_dir: str) -> bool:
    """Whether the model folder now holds the contents `entry` was derived from."""
    try:
        return entry.name.endswith("-" + artifact.read_digest(model_dir))
    except (OSError, ModelError):
        return False
