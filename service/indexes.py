"""The FAISS structures over a model's unit vectors: building them, writing them, and mapping them back.

One copy of the unit vectors serves every search: `unit.faiss`, an IndexFlatIP that each worker maps with
IO_FLAG_MMAP_IFC (pages shared, never written). The exact scan searches it; the approximate indexes use it
as well rather than holding vectors of their own:
  hnsw  IndexHNSWFlat written without its storage (the graph only); the mapped unit index is attached as
        its storage when it is read.
  ivf   IndexIVFPQFastScan: a coarse k-means quantizer, 4-bit PQ codes of 2 dimensions each (N/2 bytes a
        vector) of each vector's residual from its list's centroid, scanned with SIMD; its best
        `candidates` are re-ranked by exact cosine on the unit vectors. How many lists a query probes and
        how many candidates it re-ranks is tuned per model (tune_ivf): the cheapest pair whose recall@10
        on a sample of the model's own words reaches a target.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from service import arrays

KINDS = ("flat", "hnsw", "ivf")
# IVF fast-scan lists cannot be memory-mapped (FAISS reads them into memory): the gunicorn master reads
# the index once before forking (preload) and the workers share its pages, copy-on-write, never written.
# Keyed by the file's path and identity, so that a file rewritten since is read afresh.
_preloaded: dict[tuple, faiss.Index] = {}


# tune_ivf's ladders (nprobe: each step about 1.4 times the last, up to nlist) and the words it samples
PROBE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
CANDIDATE_STEPS = (50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600)
TUNE_SAMPLE = 500
TUNE_K = 10
# A candidate's exact re-rank costs about as much, per dimension, as scanning 12 of its 4-bit PQ parts: at
# 1,000,000 x 300, 200 random rows re-ranked took about 50 us and 8,000 codes of 150 parts about 80 us.
RERANK_WEIGHT = 12
# FAISS's fast-scan search with a reservoir (rather than a heap) for its hundreds of candidates: the same
# candidates, in 70-75 % of the time at 1,000,000 x 300 (implementation 10 of IndexIVFFastScan, reservoir).
RESERVOIR_IMPLEM = 11


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


@dataclass(frozen=True)
class IvfDial:
    """How an IVF index is searched: lists probed, PQ candidates re-ranked exactly, and the recall@10 these
    gave on the tuning sample (None: both were set, nothing was measured)."""

    nprobe: int
    candidates: int
    recall: float | None


def refined(ivf: faiss.Index, unit_index: faiss.IndexFlatIP, nprobe: int) -> faiss.IndexRefine:
    """`ivf` probing `nprobe` lists, its candidates re-ranked in C++ by exact inner products on the unit
    vectors; set_candidates() says how many."""
    ivf.nprobe = nprobe
    ivf.implem = RESERVOIR_IMPLEM
    return faiss.IndexRefine(ivf, unit_index)


def set_candidates(searched: faiss.IndexRefine, candidates: int, wanted: int) -> None:
    """Re-rank `candidates` PQ candidates in the next searches for `wanted` results, the dial being tuned
    for TUNE_K + 1 of them: for more, as many times more (at k = 100, 9x), so that deeper lists keep the
    headroom the tuning measured, and never fewer than `wanted`."""
    searched.k_factor = max(1.0, candidates / min(wanted, TUNE_K + 1))


def query_cost(nprobe: int, candidates: int, ivf: faiss.Index) -> float:
    """The relative cost of one query: PQ parts scanned plus rows re-ranked (weighted by RERANK_WEIGHT)."""
    list_words = ivf.ntotal / ivf.nlist
    return nprobe * list_words * ivf.pq.M + RERANK_WEIGHT * candidates * ivf.d


def tune_ivf(ivf: faiss.Index, unit_index: faiss.IndexFlatIP, target: float, nprobe: int = 0,
             candidates: int = 0, sample: int = TUNE_SAMPLE, threads: int = 1) -> IvfDial:
    """The cheapest (query_cost) nprobe and candidates, each from its ladder unless given, whose recall@10
    against the exact search reaches `target` on `sample` of the model's words (seeded; zero vectors left
    out). Recall grows with both, so the walk along the frontier measures few pairs. When no pair reaches
    the target, the largest: recall then says how far it fell short."""
    nprobe = min(nprobe, ivf.nlist)  # FAISS probes at most every list
    probes = [nprobe] if nprobe else [p for p in PROBE_STEPS if p < ivf.nlist] + [ivf.nlist]
    ladder = [candidates] if candidates else list(CANDIDATE_STEPS)
    if nprobe and candidates:
        return IvfDial(nprobe, candidates, None)
    unit = unit_view(unit_index)
    rows = (np.arange(len(unit)) if len(unit) <= sample
            else np.sort(np.random.default_rng(0).choice(len(unit), sample, replace=False)))
    rows = rows[np.abs(unit[rows]).max(axis=1) > 0]
    if len(rows) == 0:  # every vector zero: any dial finds nothing better
        return IvfDial(probes[0], ladder[0], None)
    queries = np.ascontiguousarray(unit[rows])
    wanted = min(TUNE_K + 1, len(unit))
    with omp_threads(threads):
        _, exact = unit_index.search(queries, wanted)
    truth = [set(_others(ids, row)) for ids, row in zip(exact, rows.tolist())]
    searched = refined(ivf, unit_index, probes[0])

    def recall(p: int, c: int) -> float:
        ivf.nprobe = p
        set_candidates(searched, c, wanted)
        with omp_threads(threads):
            _, found = searched.search(queries, wanted)
        hits = sum(len(t & set(_others(ids, row))) for t, ids, row in zip(truth, found, rows.tolist()))
        return hits / max(1, sum(len(t) for t in truth))

    best, c = None, len(ladder) - 1
    for p in probes:
        if best and query_cost(p, ladder[0], ivf) >= query_cost(best.nprobe, best.candidates, ivf):
            break  # more probes cost more than the best found, however few candidates
        reached = recall(p, ladder[c])
        if reached < target:
            if p == probes[-1] and best is None:
                best = IvfDial(p, ladder[c], reached)
            continue
        while c > 0 and (fewer := recall(p, ladder[c - 1])) >= target:
            c, reached = c - 1, fewer
        if best is None or query_cost(p, ladder[c], ivf) < query_cost(best.nprobe, best.candidates, ivf):
            best = IvfDial(p, ladder[c], reached)
    return best


def _others(ids: np.ndarray, row: int) -> list[int]:
    """The first TUNE_K found ids other than the query's own row (and the -1 of missing results)."""
    return [i for i in ids.tolist() if i != row and i >= 0][:TUNE_K]


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
