"""The one pass behind encode_corpus: text -> provisional ids and counts, then final ids by array lookup."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from itertools import compress
from pathlib import Path
from typing import IO

import numpy as np

from trainer.reader import split_lines
from trainer.vocab import Vocabulary, rank_vocabulary


def cut_lines(starts: np.ndarray, ends: np.ndarray, limit: int) -> np.ndarray:
    """Ends int64 (P,) of the pieces of at most ``limit`` tokens that lines [starts, ends) are cut into."""
    pieces = -(-(ends - starts) // limit)  # ceiling division; empty lines give no piece
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    within = np.arange(int(pieces.sum()), dtype=np.int64) - first
    return np.minimum(np.repeat(starts, pieces) + (within + 1) * limit, np.repeat(ends, pieces))


class IdMap(dict):
    """word -> provisional id; a new word takes the next id, and ids are never reused after pruning."""

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 0

    def __missing__(self, word: str) -> int:
        self[word] = new = self.next_id
        self.next_id += 1
        return new


class IdSink:
    """Provisional int32 ids, chunk by chunk: in RAM, or in a raw file once large or when a workdir is given."""

    def __init__(self, workdir: Path | None, spill_at: int) -> None:
        self.workdir, self.spill_at, self.chunks, self.size = workdir, spill_at, [], 0
        self.file: IO[bytes] | None = None
        self.path: Path | None = None
        if workdir is not None:
            self._spill()

    def append(self, ids: np.ndarray) -> None:
        """Keep int32 (n,) ids after those already held."""
        self.size += len(ids)
        if self.file is None and self.size > self.spill_at:
            self._spill()
        if self.file is None:
            self.chunks.append(ids)
        else:
            self.file.write(memoryview(ids))

    def _spill(self) -> None:
        if self.workdir is None:
            self.file = tempfile.TemporaryFile(prefix="skipgram-ids-")
        else:
            handle, name = tempfile.mkstemp(prefix=".provisional-ids-", suffix=".i32", dir=self.workdir)
            self.path, self.file = Path(name), os.fdopen(handle, "w+b")
        for chunk in self.chunks:
            self.file.write(memoryview(chunk))
        self.chunks = []

    def blocks(self, block: int = 1 << 22) -> Iterator[np.ndarray]:
        """The ids in corpus order, as int32 arrays."""
        if self.file is None:
            yield from self.chunks
            return
        self.file.flush()
        ids = np.memmap(self.file, dtype=np.int32, mode="r", shape=(self.size,))
        for start in range(0, self.size, block):
            yield ids[start:start + block]

    def close(self) -> None:
        """Release the ids (and delete their file)."""
        if self.file is not None:
            self.file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class FirstPass:
    """The one pass over the text: provisional ids into a sink, counts per id, sentence ends, bounded types."""

    def __init__(self, sink: IdSink, limit: int, max_types: int) -> None:
        self.sink, self.limit, self.max_types = sink, limit, max_types
        self.ids = IdMap()
        self.counts = np.zeros(1 << 16, dtype=np.int64)  # (next_id,) occurrences per provisional id
        self.uncounted: list[np.ndarray] = []
        self.uncounted_size = 0
        self.ends: list[np.ndarray] = []  # int64 raw positions where sentences end (lines, after cutting)
        self.position = self.line_start = 0
        self.min_reduce, self.pruned_types, self.prunings = 1, 0, 0

    def feed(self, text: str) -> None:
        """Take a piece of text that ends at whitespace (the last line may continue in the next piece)."""
        tokens, lengths = split_lines(text)
        ids = np.array(list(map(self.ids.__getitem__, tokens)), dtype=np.int32)
        self.sink.append(ids)
        self.uncounted.append(ids)
        self.uncounted_size += len(ids)
        self._close_lines(self.position + np.cumsum(lengths[:-1], dtype=np.int64))
        self.position += len(ids)
        if self.uncounted_size >= max(self.ids.next_id, 1 << 22):  # amortises bincount's O(next_id)
            self._count()
        if len(self.ids) > self.max_types:
            self._count()
            while len(self.ids) > self.max_types:
                self._prune()

    def finish(self) -> None:
        """Close the last line and bring the counts up to date."""
        self._close_lines(np.array([self.position], dtype=np.int64))
        self._count()

    def _close_lines(self, ends: np.ndarray) -> None:
        if len(ends):
            starts = np.concatenate(([self.line_start], ends[:-1]))
            self.ends.append(cut_lines(starts, ends, self.limit))
            self.line_start = int(ends[-1])

    def _count(self) -> None:
        if not self.uncounted:
            return
        counted = np.bincount(np.concatenate(self.uncounted), minlength=self.ids.next_id)
        if len(self.counts) < len(counted):
            grown = np.zeros(max(len(counted), 2 * len(self.counts)), dtype=np.int64)
            grown[:len(self.counts)] = self.counts
            self.counts = grown
        self.counts[:len(counted)] += counted
        self.uncounted, self.uncounted_size = [], 0

    def _prune(self) -> None:
        """word2vec's ReduceVocab: forget types seen at most min_reduce times; their ids map to 'dropped'."""
        words = list(self.ids)
        provisional = np.fromiter(self.ids.values(), dtype=np.int64, count=len(words))
        doomed = self.counts[provisional] <= self.min_reduce
        for word in compress(words, doomed.tolist()):
            del self.ids[word]
        self.pruned_types += int(doomed.sum())
        self.prunings += 1
        self.min_reduce += 1

    def vocabulary(self, min_count: int, max_vocab: int | None) -> tuple[Vocabulary, np.ndarray]:
        """The vocabulary, and ``lookup`` int32 (next_id,): provisional id -> final id, -1 when dropped."""
        words = list(self.ids)
        provisional = np.fromiter(self.ids.values(), dtype=np.int64, count=len(words))
        vocab, positions = rank_vocabulary(words, self.counts[provisional], min_count, max_vocab)
        lookup = np.full(self.ids.next_id, -1, dtype=np.int32)
        lookup[provisional[positions]] = np.arange(len(vocab), dtype=np.int32)
        return vocab, lookup


def remap(blocks: Iterator[np.ndarray], lookup: np.ndarray, ends: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Final ids of the kept tokens into ``out`` int32 (T,); returns sentence_starts int64 (S+1,).

    ``ends`` int64 (R,) are the increasing raw positions where sentences end; sentences left empty vanish.
    """
    kept_at = np.empty(len(ends), dtype=np.int64)  # kept tokens before each raw sentence end
    start = written = done = 0
    for block in blocks:
        final = lookup[block]
        keep = final >= 0
        kept = final[keep]
        out[written:written + len(kept)] = kept
        stop = start + len(block)
        upto = int(np.searchsorted(ends, stop, side="right"))  # ends in (start, stop]
        if upto > done:
            kept_at[done:upto] = written + np.cumsum(keep, dtype=np.int64)[ends[done:upto] - start - 1]
        written, start, done = written + len(kept), stop, upto
    lengths = np.diff(kept_at, prepend=0)
    return np.concatenate(([0], np.cumsum(lengths[lengths > 0]))).astype(np.int64)


def allocate_tokens(size: int, file: Path | None, large: bool) -> np.ndarray:
    """int32 (size,) for the final ids: a .npy memmap at ``file``, an anonymous memmap if large, or RAM."""
    if file is not None:
        return np.lib.format.open_memmap(file, mode="w+", dtype=np.int32, shape=(size,))
    if large:
        with tempfile.TemporaryFile(prefix="skipgram-tokens-") as file:  # the mapping outlives the file
            return np.memmap(file, dtype=np.int32, mode="w+", shape=(size,))
    return np.empty(size, dtype=np.int32)
