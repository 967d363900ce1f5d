"""Corpora -> integer-encoded arrays (ids of in-vocabulary tokens, sentence offsets)."""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer import available_cores
from trainer.encoding import (IdSink, allocate_tokens, merge_segments, read_segments, remap, sentence_ends,
                              vocabulary)
from trainer.reader import CHUNK_BYTES, CorpusError, check_corpus
from trainer.vocab import Vocabulary, VocabularyError
from trainer.wikitext import clean_wiki_dump

__all__ = ["CorpusError", "EncodedCorpus", "clean_wiki_dump", "encode_corpus"]

SPILL_TOKENS = 50_000_000  # beyond this many tokens the id arrays move from RAM to memory-mapped files
TOKENS_FILE = "corpus-tokens.npy"  # the final ids inside a workdir


@dataclass(frozen=True, eq=False)
class EncodedCorpus:
    """A corpus as integer ids: sentence s is ``tokens[sentence_starts[s]:sentence_starts[s + 1]]``.

    ``tokens`` int32 (T,) holds vocabulary ids of the in-vocabulary tokens in corpus order (others dropped);
    ``sentence_starts`` int64 (S+1,) starts at 0 and ends at T, with no empty sentence;
    ``raw_tokens`` counts every token read; ``stats`` holds plain ints (JSON-serialisable).
    """

    vocab: Vocabulary
    tokens: np.ndarray
    sentence_starts: np.ndarray
    raw_tokens: int
    stats: dict[str, int]
    seconds: float = 0.0  # the time the first pass took


def encode_corpus(path: str | os.PathLike[str], min_count: int = 5, max_vocab: int | None = None,
                  max_sentence_length: int = 10_000, max_types: int = 10_000_000,
                  workdir: str | os.PathLike[str] | None = None, progress: bool = False,
                  chunk_bytes: int = CHUNK_BYTES, workers: int | None = None) -> EncodedCorpus:
    """Read a corpus once and return it as vocabulary ids with sentence offsets.

    Each token gets a provisional id and is counted as it is read, by compiled code: a plain file is cut
    into ``workers`` spans (default: the cores available) read by as many threads, whose word tables are
    then merged. Once the vocabulary is known a lookup array turns provisional ids into final ones and
    drops the rest. Lines are sentences, cut every ``max_sentence_length`` raw tokens. At most
    ``max_types`` word types are held per thread (word2vec's ReduceVocab beyond). With ``workdir`` (or beyond SPILL_TOKENS tokens) the id arrays are
    memory-mapped files instead of RAM; ``workdir`` then holds TOKENS_FILE. Raises CorpusError.
    """
    if max_sentence_length < 1:
        raise ValueError(f"max_sentence_length must be at least 1, got {max_sentence_length}")
    if max_vocab is not None and max_vocab < 1:
        raise ValueError(f"max_vocab must be at least 1 (or None for no limit), got {max_vocab}")
    started = time.perf_counter()
    size = check_corpus(path)
    with _workspace(workdir) as folder:
        encoded = _encode(Path(path), size, min_count, max_vocab, max_sentence_length, max_types, folder,
                          workers or available_cores(), progress, chunk_bytes)
    return dataclasses.replace(encoded, seconds=time.perf_counter() - started)


@contextmanager
def _workspace(workdir: str | os.PathLike[str] | None) -> Iterator[Path | None]:
    """The workdir as a Path (created if need be, and removed again if it was created for a failed run)."""
    if workdir is None:
        yield None
        return
    folder = Path(workdir)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CorpusError(f"cannot create workdir {folder}: {error.strerror or error}") from None
    try:
        yield folder
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _encode(path: Path, size: int, min_count: int, max_vocab: int | None, limit: int, max_types: int,
            folder: Path | None, workers: int, progress: bool, chunk_bytes: int) -> EncodedCorpus:
    """The pass over the text, then the vocabulary, then the final ids."""
    target = None if folder is None else folder / TOKENS_FILE
    sinks: list[IdSink] = []  # one per segment, each spilling to a file of its own

    def make_sink() -> IdSink:
        sinks.append(IdSink(folder, SPILL_TOKENS // workers))
        return sinks[-1]

    try:
        segments = read_segments(path, make_sink, limit, max_types, workers, chunk_bytes, progress)
        raw_tokens = sum(segment.tokens for segment in segments)
        if raw_tokens == 0:
            raise CorpusError(f"corpus is empty (no tokens): {path}")
        table, maps, own_counts, pruning = merge_segments(segments)
        try:
            vocab, lookup, types = vocabulary(table, min_count, max_vocab)
        except VocabularyError as error:
            raise CorpusError(f"{path}: {error}") from None
        large = any(sink.file is not None for sink in sinks)
        tokens = allocate_tokens(int(vocab.counts.sum()), target, large)
        finals = [lookup[mapping] for mapping in maps]  # each segment's ids -> vocabulary ids
        try:
            starts = remap(segments, finals, own_counts, sentence_ends(segments), tokens)
        except BaseException:
            if target is not None:
                target.unlink(missing_ok=True)
            raise
    finally:
        for sink in sinks:
            sink.close()
    if target is not None:
        tokens.flush()
        tokens = np.load(target, mmap_mode="r")
    stats = {"raw_tokens": raw_tokens, "kept_tokens": len(tokens), "sentences": len(starts) - 1,
             "types_seen": types, **pruning, "vocab_size": len(vocab), "input_bytes": size}
    return EncodedCorpus(vocab, tokens, starts, raw_tokens, stats)
