"""Data derived once per model and shared by every worker: exact top-k tables and the HNSW index.

An exact answer for a vocabulary word depends on the model only, never on the request, so the service
computes every word's answer once in batched matrix products (far cheaper per word than one query at a
time) and keeps the result in a cache folder named after the model files' checksums. Workers memory-map the
files, so two workers hold one copy. `python -m service.precompute` builds them with every core;
gunicorn.conf.py runs it before the workers start. It then removes the entries left by earlier contents of
the same model folder (a model retrained in place): see remove_stale.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from trainer import artifact
from trainer.artifact import ModelError

log = logging.getLogger(__name__)
# Tables hold an id and a score (8 bytes) per entry: beyond this (e.g. a very large MAX_K) they would cost
# more memory than they save time, and queries are searched instead.
MAX_TABLE_ENTRIES = 50_000_000


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 (V, N) -> (rows scaled to unit length (V, N), norms (V,)); all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1)
    safe = np.where(norms > 0, norms, 1).astype(np.float32)
    return np.asarray(vectors / safe[:, None], dtype=np.float32), norms


# In each cache entry: the model folders (absolute paths, one a line) it was built or used for.
MODELS_FILE = "models.txt"


def cache_folder(model: artifact.Model, cache_dir: str | os.PathLike) -> Path:
    """One folder per model contents: named by the checksums meta.json records for the model's files, on
    which alone the derived data depends (a model saved again unchanged finds its old tables)."""
    return Path(cache_dir) / f"{model.path.name}-{_digest(model.meta['files'])}"


def _digest(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:20]


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
        return set((entry / MODELS_FILE).read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        return set()


def _matches(entry: Path, model_dir: str) -> bool:
    """Whether the model folder now holds the contents `entry` was derived from."""
    try:
        files = json.loads((Path(model_dir) / artifact.META_FILE).read_text(encoding="utf-8"))["files"]
        return entry.name.endswith("-" + _digest(files))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return False


# ------------------------------------------------------------------------------------------ the maths

def log_sum_exp(scores: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 (B, V) -> float64 (B,): log sum_j exp(scores[i, j]), shifted by the row maximum, in float64.
    `out`, a float64 array of at least B * V elements, spares a large allocation per call."""
    top = scores.max(axis=1).astype(np.float64)
    shifted = np.empty(scores.shape, np.float64) if out is None else out.ravel()[:scores.size].reshape(scores.shape)
    np.subtract(scores, top[:, None], out=shifted, dtype=np.float64)
    np.exp(shifted, out=shifted)
    return top + np.log(shifted.sum(axis=1))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, V) -> (columns int32 (B, k), values (B, k)) of each row's k largest values, largest first.

    Exact, without sorting whole rows: split the columns into n >= k interleaved groups; the k-th largest
    group maximum t is a lower bound of the row's k-th largest value, so only the few groups whose
    maximum reaches t can hold the answer."""
    size, width = scores.shape
    k = min(k, width)
    groups = 64 * k  # ~k groups reach the bound; each holds width / (64 k) columns to look at
    members = width // groups
    if members < 2:  # narrow rows: partitioning them outright is cheap
        part = np.argpartition(scores, width - k, axis=1)[:, width - k:]
        return _sorted_rows(np.repeat(np.arange(size), k), part.ravel(), np.take_along_axis(scores, part, 1), k)
    maxima = scores[:, :groups * members].reshape(size, members, groups).max(axis=1)  # group j: j, j+n, ...
    bound = np.partition(maxima, groups - k, axis=1)[:, groups - k]  # float (B,)
    rows, first = np.nonzero(maxima >= bound[:, None])
    cols = (first[:, None] + groups * np.arange(members)).ravel()
    rows = np.repeat(rows, members)
    tail = np.arange(groups * members, width)  # columns outside every group: always candidates
    rows = np.concatenate([rows, np.repeat(np.arange(size), len(tail))])
    cols = np.concatenate([cols, np.tile(tail, size)])
    values = scores[rows, cols]
    keep = values >= bound[rows]
    return _sorted_rows(rows[keep], cols[keep], values[keep], k)


def _sorted_rows(rows, cols, values, k):
    """Candidates (row, col, value), at least k per row -> each row's k best, best first."""
    values = np.ravel(values)
    order = np.lexsort((-values, rows))
    counts = np.bincount(rows, minlength=rows.max(initial=-1) + 1)
    firsts = (np.cumsum(counts) - counts)[:, None] + np.arange(k)  # (B, k) positions in `order`
    picked = order[firsts]
    return cols[picked].astype(np.int32), values[picked]


@contextmanager
def omp_threads(n: int):
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_tables(a: np.ndarray, b: np.ndarray, k: int, *, exclude_self: bool = False,
                 with_lse: bool = False, threads: int = 1, block: int = 64):
    """For every row i of a (V, N): the k largest a_i . b_j over the rows j of b (V2, N), as ids int32
    (V, k) and scores float32 (V, k), best first; j = i left out with exclude_self (a is b); with with_lse
    also log sum_j exp(a_i . b_j) in float64 (V,). Blocks of rows run on `threads` threads (numpy
    releases the GIL in products and ufuncs), each reusing its own scratch arrays."""
    b_t = np.ascontiguousarray(b.T)  # (N, V2): transposed once for every block's product
    ids = np.empty((len(a), k), np.int32)
    scores = np.empty((len(a), k), np.float32)
    lse = np.empty(len(a), np.float64) if with_lse else None
    scratch = threading.local()

    def run(start: int) -> None:
        if not hasattr(scratch, "products"):
            scratch.products = np.empty((block, b_t.shape[1]), np.float32)
            scratch.wide = np.empty(block * b_t.shape[1], np.float64) if with_lse else None
        stop = min(start + block, len(a))
        products = scratch.products[:stop - start]
        np.matmul(np.asarray(a[start:stop]), b_t, out=products)  # float32 (B, V2)
        if with_lse:
            lse[start:stop] = log_sum_exp(products, scratch.wide)
        if exclude_self:
            products[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        ids[start:stop], scores[start:stop] = top_k(products, k)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(0, len(a), block)))
    return (ids, scores, lse) if with_lse else (ids, scores)


def build_hnsw(unit: np.ndarray, m: int, ef_construction: int, threads: int = 1) -> faiss.Index:
    index = faiss.IndexHNSWFlat(unit.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    with omp_threads(threads):
        index.add(unit)
    return index


# ---------------------------------------------------------------------------------- cached on disk

def similar_table(unit: np.ndarray, k: int, folder: Path, threads: int = 1):
    shape = (len(unit), k)
    specs = {f"similar-top{k}-ids.npy": (np.int32, shape), f"similar-top{k}-scores.npy": (np.float32, shape)}
    return _cached(folder, specs, lambda: build_tables(unit, unit, k, exclude_self=True, threads=threads))


def context_table(model: artifact.Model, k: int, folder: Path, threads: int = 1):
    shape = (model.vocab_size, k)
    specs = {f"context-top{k}-ids.npy": (np.int32, shape), f"context-top{k}-scores.npy": (np.float32, shape),
             "context-lse.npy": (np.float64, (model.vocab_size,))}
    return _cached(folder, specs,
                   lambda: build_tables(model.input_vectors, model.output_vectors, k, with_lse=True,
                                        threads=threads))


def hnsw_index(model: artifact.Model, unit: np.ndarray, m: int, ef_construction: int, folder: Path,
               threads: int = 1) -> faiss.Index:
    """A prebuilt index in the model folder if there is one, else the cached one, else a new one."""
    prebuilt = artifact.index_path(model.path, "hnsw")
    if prebuilt.exists():
        return _read_index(prebuilt, model)
    path = folder / f"hnsw-m{m}-efc{ef_construction}.faiss"
    try:
        return _read_index(path, model)
    except ModelError:
        pass  # not built yet, or unusable: build it again
    started = time.perf_counter()
    index = build_hnsw(unit, m, ef_construction, threads)
    log.info("HNSW index over %d words built in %.1f s", len(unit), time.perf_counter() - started)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        log.warning("cannot keep the HNSW index in %s (%s)", folder, exc)
    return index


def _read_index(path: Path, model: artifact.Model) -> faiss.Index:
    try:
        index = faiss.read_index(str(path))  # already of its most derived type, and owning its memory
    except RuntimeError as exc:
        raise ModelError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0]})") from None
    if (not isinstance(index, faiss.IndexHNSWFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT
            or index.ntotal != model.vocab_size or index.d != model.dim):
        raise ModelError(f"{path}: expected an inner-product HNSW index of {model.vocab_size} x {model.dim}")
    return index


def _cached(folder: Path, specs: dict, build) -> tuple[np.ndarray, ...]:
    """Arrays named in `specs` ({file: (dtype, shape)}) memory-mapped from `folder`, built and saved first
    when missing or unusable; kept in memory only when the folder cannot be written."""
    try:
        return tuple(_load_npy(folder / name, *spec) for name, spec in specs.items())
    except (OSError, ValueError):
        pass
    started = time.perf_counter()
    arrays = build()
    log.info("%s built in %.1f s", ", ".join(specs), time.perf_counter() - started)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in zip(specs, arrays):
            _save_npy(folder / name, array)
        return tuple(_load_npy(folder / name, *spec) for name, spec in specs.items())
    except OSError as exc:
        log.warning("cannot keep derived data in %s (%s): every worker computes its own", folder, exc)
        return arrays


def _load_npy(path: Path, dtype, shape) -> np.ndarray:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.dtype != dtype or array.shape != shape:
        raise ValueError(f"{path}: expected {np.dtype(dtype)} {shape}, found {array.dtype} {array.shape}")
    return np.asarray(array)  # a plain view of the mapping: np.memmap's indexing costs more per request


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two workers may race: each renames whole files
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    from service import settings as service_settings
    from service.embeddings import Embeddings

    parser = argparse.ArgumentParser(description="Build the exact tables and the index for a model folder, "
                                                 "with the service's settings (MODEL_DIR, SKIPGRAM_*).")
    parser.add_argument("model", nargs="?", help="model folder (default: the MODEL_DIR setting)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for building (default: every core this process may use)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[precompute] %(message)s", stream=sys.stderr)
    started = time.perf_counter()
    try:
        config = service_settings.load({"MODEL_DIR": args.model} if args.model else None)
        model = artifact.load(config["MODEL_DIR"])
        embeddings = Embeddings(model, config, build_threads=max(1, args.threads))
    except (service_settings.SettingsError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    remove_stale(model, config["CACHE_DIR"])
    log.info("%s ready in %.1f s: %s", model.path, time.perf_counter() - started, embeddings.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
