"""Array maths of the service: unit rows, top-k, log-sum-exp and the batched top-k tables; numpy only, no I/O."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BLOCK_BYTES = 1 << 25  # rows handled at once by the blockwise functions: bounded temporaries at any V


def row_blocks(rows: int, width: int, itemsize: int = 4) -> Iterator[slice]:
    """Slices of at most BLOCK_BYTES worth of rows of a (rows, width) array."""
    step = max(1, BLOCK_BYTES // max(1, width * itemsize))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 (B, N) -> the rows scaled to unit length, float32 (B, N); all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1)
    return np.asarray(vectors / np.where(norms > 0, norms, 1)[:, None], dtype=np.float32)


LSE_CHUNK = 1 << 18  # scores exponentiated at a time: a scratch that stays in the CPU's cache
LSE_TINY = 1e-30  # a sum of exponentials below this lost precision in float32 (its terms were subnormal)


def log_sum_exp(scores: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """float32 (B, V) -> float64 (B,): log sum_j exp(scores[i, j]), in float32 as the scores are (about 1e-7
    relative error). A few rows at a time are exponentiated into a small scratch and summed there, so the
    scores are read once; a row whose sum left float32's range (a score beyond about +-87) is done again,
    shifted by its maximum. `scratch`, float32 of at least LSE_CHUNK elements, spares an allocation."""
    rows, width = scores.shape
    step = max(1, LSE_CHUNK // max(1, width))
    if scratch is None or scratch.size < step * width:
        scratch = np.empty(step * width, np.float32)
    sums = np.empty(rows, np.float64)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        for start in range(0, rows, step):
            chunk = scores[start:start + step]
            terms = scratch[:chunk.size].reshape(chunk.shape)
            np.exp(chunk, out=terms)
            sums[start:start + step] = terms.sum(axis=1)
        result = np.log(sums)
    for i in np.flatnonzero(~(np.isfinite(sums) & (sums > LSE_TINY))).tolist():
        top, terms = scores[i].max(), scratch[:width]
        np.subtract(scores[i], top, out=terms)
        np.exp(terms, out=terms)
        result[i] = float(top) + np.log(terms.sum(dtype=np.float64))
    return result


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


def best_of(ids: np.ndarray, scores: np.ndarray, k: int, exclude=frozenset()) -> list[tuple[int, float]]:
    """Candidates ids (C,) with scores (C,) -> the k best (id, score) pairs, best first, `exclude` left out."""
    order = np.argsort(-scores, kind="stable")[:k + len(exclude)]
    pairs = [(i, s) for i, s in zip(ids[order].tolist(), scores[order].tolist()) if i not in exclude]
    return pairs[:k]


def build_tables(a: np.ndarray, b: np.ndarray, k: int, *, exclude_self: bool = False,
                 with_lse: bool = False, threads: int = 1, block: int = 256):
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
            scratch.terms = np.empty(max(LSE_CHUNK, b_t.shape[1]), np.float32) if with_lse else None
        stop = min(start + block, len(a))
        products = scratch.products[:stop - start]
        np.matmul(np.asarray(a[start:stop]), b_t, out=products)  # float32 (B, V2)
        if with_lse:
            lse[start:stop] = log_sum_exp(products, scratch.terms)
        if exclude_self:
            products[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        ids[start:stop], scores[start:stop] = top_k(products, k)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(0, len(a), block)))
    return (ids, scores, lse) if with_lse else (ids, scores)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float (B, N) -> (coordinates float64 (B, 2), share of the variance on each axis float64 (2,)): the rows
    projected on the first two principal axes of the centred matrix (its SVD). Each axis points where its
    largest coordinate is positive, so that the answer does not depend on the SVD's signs; axes the data
    lacks (B < 3, N < 2, repeated rows) are zeros."""
    centred = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)  # u (B, R), s (R,), R = min(B, N)
    if len(s):  # rounding's singular values (an axis the points lack) are none
        s = np.where(s > s[0] * max(centred.shape) * np.finfo(np.float64).eps, s, 0.0)
    coords = np.zeros((len(centred), 2))
    axes = min(2, len(s))
    coords[:, :axes] = u[:, :axes] * s[:axes]
    flip = np.sign(coords[np.abs(coords).argmax(axis=0), [0, 1]])
    coords *= np.where(flip == 0, 1, flip)
    total = float(np.square(s).sum())
    share = np.zeros(2)
    if total > 0:
        share[:axes] = np.square(s[:axes]) / total
    return coords, share
