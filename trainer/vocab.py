"""Word counts -> vocabulary, subsampling keep-probabilities and the negative-sampling noise table."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


class VocabularyError(ValueError):
    """No usable vocabulary can be built from the counts given."""


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Words by descending count (ties by the word itself); ``counts`` is int64 (V,) in the same order."""

    words: tuple[str, ...]
    counts: np.ndarray

    def __post_init__(self) -> None:
        counts = np.array(self.counts, dtype=np.int64).reshape(-1)
        if len(counts) != len(self.words):
            raise ValueError(f"{len(self.words)} words but {len(counts)} counts")
        counts.setflags(write=False)
        object.__setattr__(self, "words", tuple(self.words))
        object.__setattr__(self, "counts", counts)

    @cached_property
    def index(self) -> dict[str, int]:
        """word -> row id."""
        return {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.words == other.words and np.array_equal(self.counts, other.counts)

    __hash__ = None  # type: ignore[assignment]


def too_rare(min_count: int, types: int, most: int) -> VocabularyError:
    """The error for a corpus whose words all occur fewer than min_count times."""
    return VocabularyError(f"no word occurs at least min_count={min_count} times ({types} types seen, the "
                           f"most frequent occurs {most} times); lower min_count")


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's subsampling: float32 (V,) probability of keeping each occurrence of word i.

    With t = sample * counts.sum(), keep = (sqrt(f/t) + 1) * t / f clipped to 1; ``sample <= 0`` keeps all.
    """
    f = np.asarray(counts, dtype=np.float64)
    if sample <= 0 or len(f) == 0:
        return np.ones(len(f), dtype=np.float32)
    t = sample * f.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(f / t) + 1.0) * t / f
    keep[~(f > 0)] = 1.0
    return np.minimum(keep, 1.0).astype(np.float32)


def noise_probabilities(counts: np.ndarray, exponent: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution counts**exponent, normalised: float64 (V,)."""
    weights = np.asarray(counts, dtype=np.float64) ** exponent
    total = weights.sum()
    if not len(weights) or not total > 0:
        raise ValueError("the noise distribution needs at least one positive count")
    return weights / total


def noise_alias_table(counts: np.ndarray, exponent: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table for drawing from ``noise_probabilities(counts, exponent)`` in O(1).

    Returns ``accept`` float32 (V,) and ``alias`` int32 (V,); a draw is
    ``i = uniform_int(V); word = i if uniform01 < accept[i] else alias[i]``.

    Built without a Python loop by the sweep variant of Vose's method: small cells (scaled mass q < 1)
    are filled in order from the large cells in order; a large cell that falls below 1 is itself filled
    from the next large cell. Which large cell serves which small one follows from cumulative sums.
    """
    q = noise_probabilities(counts, exponent) * len(counts)
    small, large = np.flatnonzero(q < 1.0), np.flatnonzero(q >= 1.0)
    accept = np.ones(len(q), dtype=np.float64)
    alias = np.arange(len(q), dtype=np.int64)
    if len(small) and len(large):  # (no large cell: all q are 1 up to rounding)
        demand = np.cumsum(1.0 - q[small])  # mass the small cells need, cumulatively
        supply = np.cumsum(q[large] - 1.0)  # spare mass of the large cells, cumulatively
        before = np.concatenate(([0.0], demand[:-1]))
        serving = np.minimum(np.searchsorted(supply, before, side="left"), len(large) - 1)
        accept[small], alias[small] = q[small], large[serving]
        # Large cell k runs dry at the first small cell whose cumulative demand passes supply[k];
        # what it then lacks is taken from the next large cell.
        dry = np.searchsorted(demand, supply[:-1], side="right")
        emptied = np.flatnonzero(dry < len(small))
        accept[large[emptied]] = 1.0 - (demand[dry[emptied]] - supply[emptied])
        alias[large[emptied]] = large[emptied + 1]
    return np.clip(accept, 0.0, 1.0).astype(np.float32), alias.astype(np.int32)
