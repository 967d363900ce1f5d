"""Slow, obvious twins of the trainer's fast paths, in plain Python: counting words, building a vocabulary,
reading sentences, joining phrases. The tests compare the fast code against these."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from trainer.phrase_table import PhraseTable
from trainer.reader import CHUNK_BYTES, CorpusError, byte_pieces, check_corpus
from trainer.vocab import Vocabulary, too_rare


class WordCounter:
    """Counts word types in bounded memory, pruning rare types the way word2vec's ReduceVocab does (and
    encode_corpus's first pass, in each thread).

    Whenever a new type comes while ``max_types`` are held, every type seen at most ``min_reduce`` times
    is forgotten and ``min_reduce`` grows by one (again until fewer are held), so a long tail of rare
    words cannot exhaust memory; a forgotten word that reappears is counted again from zero.
    """

    def __init__(self, max_types: int = 10_000_000) -> None:
        if max_types < 1:
            raise ValueError(f"max_types must be at least 1, got {max_types}")
        self.counts: Counter[str] = Counter()
        self.max_types = max_types
        self.min_reduce = 1
        self.total_tokens = 0
        self.pruned_types = 0
        self.prunings = 0

    def add(self, tokens: Iterable[str]) -> None:
        """Count tokens, one by one."""
        for token in tokens:
            if token not in self.counts:
                while len(self.counts) >= self.max_types:
                    self._prune()
            self.counts[token] += 1
            self.total_tokens += 1

    def _prune(self) -> None:
        doomed = [word for word, count in self.counts.items() if count <= self.min_reduce]
        for word in doomed:
            del self.counts[word]
        self.pruned_types += len(doomed)
        self.prunings += 1
        self.min_reduce += 1

    def __len__(self) -> int:
        return len(self.counts)

    def stats(self) -> dict[str, int]:
        """Plain-int statistics (JSON-serialisable)."""
        return {"total_tokens": self.total_tokens, "types": len(self.counts),
                "pruned_types": self.pruned_types, "prunings": self.prunings}


def build_vocabulary(counter_or_mapping: WordCounter | Mapping[str, int], min_count: int = 5,
                     max_vocab: int | None = None) -> Vocabulary:
    """Keep words counted at least ``min_count`` times, most frequent first, at most ``max_vocab`` of them."""
    mapping = counter_or_mapping.counts if isinstance(counter_or_mapping, WordCounter) else counter_or_mapping
    words = list(mapping.keys())
    counts = np.fromiter(mapping.values(), dtype=np.int64, count=len(words))
    return rank_vocabulary(words, counts, min_count, max_vocab)[0]


def rank_vocabulary(words: Sequence[str], counts: np.ndarray, min_count: int = 5,
                    max_vocab: int | None = None) -> tuple[Vocabulary, np.ndarray]:
    """Vocabulary of the words counted at least ``min_count`` times, and where its words sit in the input.

    ``words`` (n,) and ``counts`` (n,) are parallel; returns the Vocabulary and ``positions`` int64 (V,),
    with ``vocab.words[i] == words[positions[i]]``. Raises VocabularyError when no word survives.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) != len(words):
        raise ValueError(f"{len(words)} words but {len(counts)} counts")
    if max_vocab is not None and max_vocab < 1:
        raise ValueError(f"max_vocab must be at least 1 (or None for no limit), got {max_vocab}")
    candidates = np.flatnonzero(counts >= max(min_count, 1))
    if len(candidates) == 0:
        raise too_rare(min_count, len(counts), int(counts.max()) if len(counts) else 0)
    # Two stable sorts make the order (count descending, then word): first by word, then by count.
    by_word = np.array(sorted(candidates.tolist(), key=words.__getitem__), dtype=np.int64)
    positions = by_word[np.argsort(-counts[by_word], kind="stable")]
    if max_vocab is not None:
        positions = positions[:max_vocab]
    vocab = Vocabulary(words=tuple([words[i] for i in positions.tolist()]), counts=counts[positions])
    return vocab, positions


def iter_sentences(path: str | os.PathLike[str], max_sentence_length: int = 10_000,
                   chunk_bytes: int = CHUNK_BYTES) -> Iterator[list[str]]:
    """Sentences (lists of tokens) of a corpus: one per line, lines cut every ``max_sentence_length`` tokens.

    The file is checked (CorpusError) when this is called, not when iteration starts.
    """
    if max_sentence_length < 1:
        raise ValueError(f"max_sentence_length must be at least 1, got {max_sentence_length}")
    check_corpus(path)
    return _sentences(path, text_pieces(path, chunk_bytes), max_sentence_length)


def _sentences(path: str | os.PathLike[str], pieces: Iterator[str], limit: int) -> Iterator[list[str]]:
    current: list[str] = []
    empty = True
    for text in pieces:
        empty = empty and not text.split()
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            current.extend(line.split())
            while len(current) >= limit:
                yield current[:limit]
                del current[:limit]
            if number < len(lines) and current:  # the line ended inside this piece
                yield current
                current = []
    if current:
        yield current
    if empty:  # only whitespace, beyond what check_corpus looked at
        raise CorpusError(f"corpus is empty (no tokens): {path}")


def join_phrases(table: PhraseTable, tokens: Iterable[str]) -> list[str]:
    """One sentence's tokens with the table's phrases joined, pass by pass, left to right as word2phrase
    joins them: a token that ended a phrase does not begin the next one."""
    tokens = list(tokens)
    for pass_number in range(1, table.passes + 1):
        pairs = set(table.pairs(pass_number))
        joined, i = [], 0
        while i < len(tokens):
            if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) in pairs:
                joined.append(tokens[i] + table.delimiter + tokens[i + 1])
                i += 2
            else:
                joined.append(tokens[i])
                i += 1
        tokens = joined
    return tokens


def text_pieces(path: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES,
                progress: bool = False) -> Iterator[str]:
    """Decoded text in pieces of about ``chunk_bytes`` that end at whitespace, so no token is ever split."""
    for piece in byte_pieces(path, chunk_bytes, progress):
        yield piece.decode("utf-8", errors="replace")
