"""The vocabulary as flat arrays that every worker memory-maps: word -> row by hash, row -> word by offset,
prefix -> rows by byte order.

A million Python strings and a dict over them cost each worker about 150 MB of private memory; these arrays
cost one shared copy of the words' UTF-8 bytes plus 20 bytes a word, and a lookup touches a few pages.
  blob     uint8 (B,)     the words' UTF-8 bytes, row after row
  offsets  int64 (V+1,)   row r's word is blob[offsets[r]:offsets[r+1]]
  hashes   uint32 (V,)    CRC-32 of every word, sorted
  rows     int32 (V,)     the row of each hash, in the same order (equal hashes: try each)
  sorted   int32 (V,)     the rows in the byte order of their words: the words of a prefix are one range
"""
from __future__ import annotations

import bisect
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

NAMES = ("blob", "offsets", "hashes", "rows", "sorted")


class WordTableError(ValueError):
    """Arrays that do not form a consistent word table (a damaged cache entry)."""


def build(words: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of the table of `words` (row order kept)."""
    encoded = [w.encode("utf-8") for w in words]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    hashes = np.fromiter((zlib.crc32(b) for b in encoded), np.uint32, len(encoded))
    order = np.argsort(hashes, kind="stable")
    by_bytes = np.array(sorted(range(len(encoded)), key=encoded.__getitem__), np.int32).reshape(-1)
    return {"blob": np.frombuffer(b"".join(encoded), np.uint8), "offsets": offsets,
            "hashes": hashes[order], "rows": order.astype(np.int32), "sorted": by_bytes}


class WordTable:
    """Lookups over the arrays of build() (in memory or memory-mapped; never written)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self._blob, self._offsets = arrays["blob"], arrays["offsets"]
        self._hashes, self._rows = arrays["hashes"], arrays["rows"]
        self._sorted = arrays["sorted"]

    def __len__(self) -> int:
        return len(self._rows)

    def row(self, word: str) -> int | None:
        """The row of `word`, or None when it is not in the vocabulary."""
        try:
            raw = word.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no vocabulary word holds one
            return None
        h = np.uint32(zlib.crc32(raw))  # of the array's dtype: a Python int would convert the whole array
        at = int(self._hashes.searchsorted(h))
        while at < len(self._hashes) and self._hashes[at] == h:
            row = int(self._rows[at])
            if self._bytes(row) == raw:
                return row
            at += 1
        return None

    def with_prefix(self, prefix: str, limit: int) -> list[int]:
        """The rows (most frequent first: the lowest rows) of at most `limit` words that start with `prefix`;
        the empty prefix: the first `limit` rows. A binary search for the prefix's range of the byte order,
        then its `limit` lowest rows, without sorting the range when it is large."""
        if not prefix:
            return list(range(min(limit, len(self))))
        try:
            raw = prefix.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate begins no vocabulary word
            return []
        key = lambda at: self._bytes(int(self._sorted[at]))  # noqa: E731
        lo = bisect.bisect_left(range(len(self)), raw, key=key)
        # UTF-8 holds no byte 0xff: the words that start with raw are those from raw up to raw + b"\xff"
        hi = bisect.bisect_left(range(len(self)), raw + b"\xff", lo=lo, key=key)
        rows = np.array(self._sorted[lo:hi])
        if len(rows) > limit:
            rows = np.partition(rows, limit - 1)[:limit]
        return np.sort(rows).tolist()

    def word(self, row: int) -> str:
        return self._bytes(row).decode("utf-8")

    def words(self, rows: Sequence[int]) -> list[str]:
        return [self._bytes(r).decode("utf-8") for r in rows]

    def _bytes(self, row: int) -> bytes:
        return self._blob[self._offsets[row]:self._offsets[row + 1]].tobytes()

    def check(self, vocab_size: int) -> None:
        """Raise WordTableError unless the arrays are consistent for `vocab_size` words: offsets rising from
        0 to the blob's end, hashes sorted, rows and the byte order permutations of 0..V-1, and a sample of
        words that their hashes find and that the byte order keeps in order. Reads every array once."""
        offsets, rows = self._offsets, self._rows
        if (len(offsets) != vocab_size + 1 or len(rows) != vocab_size or len(self._hashes) != vocab_size
                or offsets[0] != 0 or offsets[-1] != len(self._blob)):
            raise WordTableError(f"word table does not hold {vocab_size} words")
        if (np.diff(offsets) <= 0).any() or (np.diff(self._hashes.astype(np.int64)) < 0).any():
            raise WordTableError("word table offsets or hashes out of order")
        if not _is_permutation(rows, vocab_size):
            raise WordTableError("word table rows are not a permutation of the vocabulary")
        sorted_rows = self._sorted
        if not _is_permutation(sorted_rows, vocab_size):
            raise WordTableError("word table byte order is not a permutation of the vocabulary")
        sample = np.linspace(0, vocab_size - 1, min(vocab_size, 1000)).astype(np.int64)
        if any(self.row(self.word(int(r))) != r for r in sample):  # hashes that match their words
            raise WordTableError("word table hashes do not match its words")
        pairs = np.unique(np.minimum(sample, vocab_size - 2)) if vocab_size > 1 else []
        if any(self._bytes(int(sorted_rows[at])) > self._bytes(int(sorted_rows[at + 1])) for at in pairs):
            raise WordTableError("word table byte order is out of order")


def _is_permutation(rows: np.ndarray, size: int) -> bool:
    """Whether `rows` holds each of 0..size-1 exactly once."""
    return (len(rows) == size and (size == 0 or (rows.min() >= 0 and rows.max() < size))
            and np.bincount(rows, minlength=size).max(initial=0) <= 1)
