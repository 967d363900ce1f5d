"""word2phrase's collocations over encoded ids: the corpus is read once into word ids (compiled), then
each pass counts words and word pairs, scores the pairs and joins those above the threshold in place.

Pass k counts over the output of pass k - 1, so that pass 2 can join a pass-1 phrase with a word
(new_york + city) and find trigrams and 4-grams, as running word2phrase again on its output does.
"""
from __future__ import annotations

import math
import os
from typing import IO

import numpy as np

from trainer import phrase_kernels as kernels
from trainer.encoding import IdSink, WordTable, tokenizable
from trainer.phrase_table import (DEFAULT_MAX_PAIRS, Phrase, PhraseConfig, PhraseTable, passes_threshold,
                                  score_pairs)
from trainer.reader import CHUNK_BYTES, CorpusError, byte_pieces, check_corpus, compressing

SPILL_TOKENS = 50_000_000  # beyond this many ids the corpus moves from RAM to a memory-mapped file


def capacity_for(pairs: int) -> int:
    """The smallest power-of-two table that holds ``pairs`` pairs at a load of at most 3/4."""
    return 1 << max(4, math.ceil(math.log2(pairs * 4 / 3)))


class PairCounter:
    """Counts of the words and consecutive word pairs of one pass, with at most ``max_pairs`` pairs held.

    When a new pair would make the table hold more, every pair counted at most ``min_reduce`` times is
    forgotten and ``min_reduce`` grows by one: word2phrase's ReduceVocab (which it runs on its one table
    of words and pairs beyond 350M entries; here word counts stay exact). A forgotten pair that comes back
    is counted again from zero.
    """

    def __init__(self, n_words: int, max_pairs: int = DEFAULT_MAX_PAIRS, initial_capacity: int = 1 << 16):
        self.max_pairs, self.max_capacity = max_pairs, capacity_for(max_pairs + 1)
        capacity = min(initial_capacity, self.max_capacity)
        self.keys = np.full(capacity, kernels.EMPTY, dtype=np.int64)  # (C,) pair keys a << 32 | b
        self.counts = np.zeros(capacity, dtype=np.int64)  # (C,) their counts
        self.unigrams = np.zeros(n_words, dtype=np.int64)  # (W,) count of each word
        self.size = self.prunings = self.pruned_pairs = 0
        self.min_reduce, self.peak_capacity = 1, capacity

    def count(self, ids: np.ndarray) -> None:
        """Count the words and pairs of ids int32 (T,) (NEWLINE entries are skipped, not a break)."""
        pos, previous = 0, -1
        while pos < len(ids):
            grow_at = len(self.keys) // 2 if len(self.keys) < self.max_capacity else len(self.keys) * 7 // 8
            pos, previous, self.size = kernels.count_pairs(ids, pos, previous, self.unigrams, self.keys,
                                                           self.counts, self.size, min(self.max_pairs + 1, grow_at))
            if self.size > self.max_pairs:
                self._prune()
            elif self.size >= grow_at:  # (beyond max_capacity only if pruning keeps failing to free pairs)
                self._resize(2 * len(self.keys))

    def _resize(self, capacity: int) -> None:
        keys, counts = np.full(capacity, kernels.EMPTY, dtype=np.int64), np.zeros(capacity, dtype=np.int64)
        kernels.rehash(self.keys, self.counts, keys, counts)
        self.keys, self.counts, self.peak_capacity = keys, counts, max(self.peak_capacity, capacity)

    def _prune(self) -> None:
        before = self.size
        survivors = kernels.surviving(self.keys, self.counts, self.min_reduce)
        self.keys.fill(kernels.EMPTY)
        self.counts.fill(0)
        self.size = kernels.rehash(*survivors, self.keys, self.counts)
        self.pruned_pairs += before - self.size
        self.prunings += 1
        self.min_reduce += 1

    def scored(self, scoring: str, min_count: int, threshold: float):
        """The pairs scoring above threshold: left, right ids, scores, counts (each (P,)). Pairs and words
        counted fewer than min_count times never are: word2phrase drops them before scoring."""
        slots = kernels.frequent_slots(self.keys, self.counts, self.unigrams, min_count)
        keys, pair_counts = self.keys[slots], self.counts[slots]
        left, right = keys >> 32, keys & 0xFFFFFFFF
        scores = score_pairs(scoring, pair_counts, self.unigrams[left], self.unigrams[right],
                             int(self.unigrams.sum()), min_count)
        above = passes_threshold(scoring, scores, threshold)
        return left[above], right[above], scores[above], pair_counts[above]

    def stats(self) -> dict[str, int]:
        return {"tokens": int(self.unigrams.sum()), "words": int(np.count_nonzero(self.unigrams)),
                "pairs": self.size, "prunings": self.prunings, "pruned_pairs": self.pruned_pairs,
                "table_bytes": 16 * self.peak_capacity}


class EncodedText:
    """A corpus as int32 word ids with NEWLINE for each line break, read once; phrasing rewrites the ids
    in place (in RAM, or in a memory-mapped temporary file beyond SPILL_TOKENS ids)."""

    def __init__(self, path: str | os.PathLike[str], progress: bool = False, chunk_bytes: int = CHUNK_BYTES,
                 spill_at: int = SPILL_TOKENS) -> None:
        check_corpus(path)
        self.words = WordTable()
        sink = IdSink(None, spill_at)
        out = np.empty(0, dtype=np.int32)
        for piece in byte_pieces(path, chunk_bytes, progress):
            if len(out) < len(piece) + 1:
                out = np.empty(len(piece) + 1, dtype=np.int32)
            written = self.words.encode(tokenizable(piece), out)[1]
            sink.append(out[:written].copy())
        if sink.file is None:
            self.ids = np.concatenate(sink.chunks) if sink.chunks else np.zeros(0, dtype=np.int32)
        else:
            sink.file.flush()
            self.ids = np.memmap(sink.file, dtype=np.int32, mode="r+", shape=(sink.size,))
        sink.close()  # (a mapping holds its own handle on the unlinked file)
        if len(self.words) == 0:
            raise CorpusError(f"corpus is empty (no tokens): {path}")

    def learn(self, config: PhraseConfig) -> tuple[PhraseTable, list[dict]]:
        """Find and join the phrases, pass by pass; returns the table and per pass: the counts held, the
        prunings, the threshold, the phrases found and how many times they were joined."""
        found: list[Phrase] = []
        report = []
        for number in range(1, config.passes + 1):
            counter = PairCounter(len(self.words), config.max_pairs)
            counter.count(self.ids)
            threshold = config.threshold_of(number)
            left, right, scores, counts = counter.scored(config.scoring, config.min_count, threshold)
            lefts, rights = self.words.bytes_of(left), self.words.bytes_of(right)
            found += [Phrase(a.decode(errors="replace"), b.decode(errors="replace"), s, n, number) for a, b, s, n
                      in zip(lefts, rights, scores.tolist(), counts.tolist())]
            joins = self._join(left, right, config.delimiter.encode())
            report.append({"pass": number, "threshold": threshold, "phrases": len(left), "joins": joins,
                           **counter.stats()})
        return PhraseTable(config.delimiter, tuple(found)), report

    def apply(self, table: PhraseTable) -> list[int]:
        """Join a table's phrases, pass by pass; returns how many times each pass joined a pair."""
        joins = []
        for number in range(1, table.passes + 1):
            pairs = table.pairs(number)
            left = self.words.add([a.encode() for a, _ in pairs])
            right = self.words.add([b.encode() for _, b in pairs])
            joins.append(self._join(left, right, table.delimiter.encode()))
        return joins

    def _join(self, left: np.ndarray, right: np.ndarray, delimiter: bytes) -> int:
        """Join the pairs (left[i], right[i]) int64 (P,) into their phrases; returns how many were joined."""
        if not len(left):
            return 0
        phrases = [a + delimiter + b for a, b in zip(self.words.bytes_of(left), self.words.bytes_of(right))]
        keys = np.full(capacity_for(2 * len(left)), kernels.EMPTY, dtype=np.int64)
        joined = np.zeros(len(keys), dtype=np.int64)
        kernels.rehash((left << 32) | right, self.words.add(phrases), keys, joined)
        before = len(self.ids)
        self.ids = self.ids[:kernels.join_pairs(self.ids, keys, joined)]
        return before - len(self.ids)

    def tokens(self) -> int:
        return int(np.count_nonzero(self.ids >= 0))

    def write(self, out: IO[bytes], name: str | os.PathLike[str] = "", block_bytes: int = 1 << 22) -> None:
        """The text into a binary file, compressed when ``name`` ends in .gz or .bz2: lines stay lines,
        and the tokens of a line are separated by one space."""
        buffer = np.empty(block_bytes, dtype=np.uint8)
        pos, line_start = 0, True
        with compressing(out, name) as sink:
            while pos < len(self.ids):
                pos, written, line_start = kernels.render(self.ids, pos, self.words.arena, self.words.offsets,
                                                          buffer, line_start)
                sink.write(memoryview(buffer[:written]))
                if written == 0:  # one word longer than the buffer
                    w = int(self.ids[pos])
                    buffer = np.empty(2 * int(self.words.offsets[w + 1] - self.words.offsets[w]) + 2, np.uint8)


def learn_phrases(path: str | os.PathLike[str], config: PhraseConfig, progress: bool = False,
                  chunk_bytes: int = CHUNK_BYTES) -> tuple[PhraseTable, list[dict]]:
    """The phrase table of a corpus, and the report of each pass (see EncodedText.learn)."""
    return EncodedText(path, progress, chunk_bytes).learn(config)
