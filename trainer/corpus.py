"""Corpora -> integer-encoded arrays (ids of in-vocabulary tokens, sentence offsets)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.encoding import FirstPass, IdSink, allocate_tokens, remap
from trainer.reader import CHUNK_BYTES, CorpusError, check_corpus, text_pieces
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


def encode_corpus(path: str | os.PathLike[str], min_count: int = 5, max_vocab: int | None = None,
                  max_sentence_length: int = 10_000, max_types: int = 10_000_000,
                  workdir: str | os.PathLike[str] | None = None, progress: bool = False,
                  chunk_bytes: int = CHUNK_BYTES) -> EncodedCorpus:
    """Read a corpus once and return it as vocabulary ids with sentence offsets.

    Each token gets a provisional id as it is read (counted per chunk); once the vocabulary is known a
    lookup array turns provisional ids into final ones and drops the rest. Lines are sentences, cut every
    ``max_sentence_length`` raw tokens. With ``workdir`` (or beyond SPILL_TOKENS tokens) the id arrays are
    memory-mapped files instead of RAM; ``workdir`` then holds TOKENS_FILE. Raises CorpusError.
    """
    if max_sentence_length < 1:
        raise ValueError(f"max_sentence_length must be at least 1, got {max_sentence_length}")
    size = check_corpus(path)
    with _workspace(workdir) as folder:
        first = FirstPass(IdSink(folder, SPILL_TOKENS), max_sentence_length, max_types)
        vocab, tokens, starts = _encode(path, first, min_count, max_vocab, folder, progress, chunk_bytes)
    stats = {"raw_tokens": first.position, "kept_tokens": len(tokens), "sentences": len(starts) - 1,
             "types_seen": len(first.ids), "pruned_types": first.pruned_types, "prunings": first.prunings,
             "vocab_size": len(vocab), "input_bytes": size}
    return EncodedCorpus(vocab, tokens, starts, first.position, stats)


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


def _encode(path: str | os.PathLike[str], first: FirstPass, min_count: int, max_vocab: int | None,
            folder: Path | None, progress: bool, chunk_bytes: int) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """The pass over the text, then the vocabulary, then the final ids: (vocab, tokens, sentence_starts)."""
    target = None if folder is None else folder / TOKENS_FILE
    try:
        for text in text_pieces(path, chunk_bytes, progress):
            first.feed(text)
        first.finish()
        if first.position == 0:
            raise CorpusError(f"corpus is empty (no tokens): {path}")
        try:
            vocab, lookup = first.vocabulary(min_count, max_vocab)
        except VocabularyError as error:
            raise CorpusError(f"{path}: {error}") from None
        tokens = allocate_tokens(int(vocab.counts.sum()), target, first.sink.file is not None)
        try:
            starts = remap(first.sink.blocks(), lookup, np.concatenate(first.ends), tokens)
        except BaseException:
            if target is not None:
                target.unlink(missing_ok=True)
            raise
    finally:
        first.sink.close()
    if target is not None:
        tokens.flush()
        tokens = np.load(target, mmap_mode="r")
    return vocab, tokens, starts
