"""The FAISS structures over a model's unit vectors: building them, writing them, and mapping them back.

One copy of the unit vectors serves every search: `unit.faiss`, an IndexFlatIP that each worker maps with
IO_FLAG_MMAP_IFC (pages shared, never written). The exact scan searches it; the approximate indexes use it
as well rather than holding vectors of their own:
  hnsw  IndexHNSWFlat written without its storage (the graph only); the mapped unit index is attached as
        its storage when it is read.
  ivf   IndexIVFPQFastScan: a coarse k-means quantizer, 4-bit PQ codes of 2 dimensions each (N/2 bytes a
        vector) of each vector's residual from its list's centroid, scanned with SIMD; its best
        `candidates` are re-ranked by exact cosine on the unit vectors.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from service import arrays

KINDS = ("flat", "hnsw", "ivf")
# IVF fast-scan lists cannot be memory-mapped (FAISS reads them into memory): the gunicorn master reads
# the index once before forking (preload) and the workers share its pages, copy-on-write, never written.
# Keyed by the file's path and identity, so that a file rewritten since is read afresh.
_preloaded: dict[tuple, faiss.Index] = {}


class IndexFileError(ValueError):
    """A FAISS file that is unreadable or does not fit the model (a damaged cache entry)."""


@contextmanager
def omp_threads(n: int):
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# ------------------------------------------------------------------------------------------ building

def build_unit(vectors: np.ndarray) -> faiss.IndexFlatIP:
    """The unit rows of float32 (V, N) `vectors` in an IndexFlatIP, normalised a block at a time."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    for rows in arrays.row_blocks(*vectors.shape):
        index.add(arrays.unit_rows(np.asarray(vectors[rows])))
    return index


def unit_view(index: faiss.IndexFlatIP) -> np.ndarray:
    """float32 (V, N), read-only: the vectors inside a flat index (mapped or not), without a copy. The
    index must outlive the view."""
    flat = faiss.downcast_index(index)
    view = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
    view.flags.writeable = False
    return view


def build_hnsw(unit: np.ndarray, m: int, ef_construction: int, threads: int) -> faiss.IndexHNSWFlat:
    """An HNSW graph over the unit rows, storage detached (write it with write(), attach with attach())."""
    index = faiss.IndexHNSWFlat(unit.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    with omp_threads(threads):
        index.add(unit)
    storage = index.storage
    index.storage = None  # written without vectors: the unit index is the storage
    del storage  # freed with the Python wrapper that owns it now
    return index


def ivf_lists(vocab_size: int, setting: int) -> int:
    """nlist: the setting, or about sqrt(V) (each list ~sqrt(V) words), with at least 39 training words a list."""
    wanted = setting or round(math.sqrt(vocab_size))
    return max(1, min(wanted, vocab_size // 39 or 1))


def pq_parts(dim: int) -> int:
    """PQ sub-vectors: 2 dimensions each when N is even, else 1."""
    return dim // 2 if dim % 2 == 0 else dim


def build_ivf(unit: np.ndarray, nlist: int, threads: int, seed: int = 0) -> faiss.Index:
    """IVF with 4-bit PQ fast-scan codes of the unit rows' residuals from their list's centroid: k-means on
    a sample of 64 words a list. Coding residuals rather than the rows themselves ranks neighbours better
    (on models/default, recall@10 with 200 candidates 0.96 rather than 0.92), so fewer candidates are
    re-ranked for the same recall."""
    size, dim = unit.shape
    index = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, nlist, pq_parts(dim), 4,
                                     faiss.METRIC_INNER_PRODUCT)
    index.by_residual = True
    index.cp.niter = 10  # the coarse lists only route queries; exact re-ranking fixes the order
    sample = np.sort(np.random.default_rng(seed).choice(size, min(size, 64 * nlist), replace=False))
    with omp_threads(threads):
        index.train(np.ascontiguousarray(unit[sample]))
        for rows in arrays.row_blocks(size, dim):
            index.add(np.ascontiguousarray(unit[rows]))
    return index


# ------------------------------------------------------------------------------------ files

def write(index: faiss.Index, path: Path) -> None:
    """Write to a temporary sibling, then rename: a reader sees the whole file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:  # how FAISS reports a failed write (a full disk)
            raise OSError(f"{tmp}: cannot write ({str(exc).splitlines()[0][-200:]})") from None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_unit(path: Path, size: int, dim: int) -> faiss.IndexFlatIP:
    """The mapped unit index; its shape is checked here, its values by check_unit."""
    index = _read(path, faiss.IO_FLAG_MMAP_IFC)
    if not isinstance(index, faiss.IndexFlatIP) or index.ntotal != size or index.d != dim:
        raise IndexFileError(f"{path}: expected an inner-product flat index of {size} x {dim}")
    return index


def check_unit(unit: np.ndarray, tolerance: float = 1e-3) -> None:
    """Every row of unit length (or all zero, for a zero vector): reads the whole matrix once."""
    for rows in arrays.row_blocks(*unit.shape):
        norms = np.linalg.norm(unit[rows], axis=1)
        if not (np.isfinite(norms) & ((np.abs(norms - 1) <= tolerance) | (norms == 0))).all():
            raise IndexFileError("unit vectors are not of unit length")


def read_hnsw(path: Path, unit_index: faiss.IndexFlatIP, m: int) -> faiss.IndexHNSWFlat:
    """The mapped HNSW graph with `unit_index` attached as its storage (which must outlive it)."""
    index = _read(path, faiss.IO_FLAG_MMAP_IFC)
    if (not isinstance(index, faiss.IndexHNSWFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT
            or index.ntotal != unit_index.ntotal or index.d != unit_index.d or index.storage is not None
            or index.hnsw.nb_neighbors(1) != m):
        raise IndexFileError(f"{path}: expected an inner-product HNSW graph (M={m}) of "
                          f"{unit_index.ntotal} x {unit_index.d} without storage")
    index.storage = unit_index
    index.own_fields = False
    return index


def preload(path: Path) -> None:
    """Read the IVF index at `path` into this process, for read_ivf in processes forked from it; any
    index preloaded before is dropped (the processes that use it keep their pages)."""
    key = _identity(path)
    index = _preloaded.get(key)
    if index is None:
        index = _read(path, 0)
    _preloaded.clear()
    _preloaded[key] = index


def read_ivf(path: Path, size: int, dim: int, nlist: int) -> faiss.Index:
    """The IVF index: the one preloaded by the parent process when it is this file, else read."""
    index = _preloaded.get(_identity(path))
    if index is None:
        index = _read(path, 0)
    if (not isinstance(index, faiss.IndexIVFPQFastScan) or index.metric_type != faiss.METRIC_INNER_PRODUCT
            or index.ntotal != size or index.d != dim or index.nlist != nlist or not index.by_residual):
        raise IndexFileError(f"{path}: expected an inner-product IVF-PQ fast-scan index of residuals, "
                             f"{size} x {dim}, with {nlist} lists")
    return index


def _identity(path: Path) -> tuple:
    try:
        info = path.stat()
    except FileNotFoundError:
        return (str(path),)
    return str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _read(path: Path, flags: int) -> faiss.Index:
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        return faiss.read_index(str(path), flags)  # already of its most derived type
    except RuntimeError as exc:
        raise IndexFileError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0][:200]})") from None
