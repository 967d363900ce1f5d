"""The rows of word2vec-family vectors files, block by block, gathered into one float32 matrix: the lowest
floor of the reading half of trainer.word2vec_format (trainer.word2vec_read tells the layout and calls it).

Text: a block of whole lines (4 MiB) is split in Python (one bytes.partition per line: the word, then the
numbers) and all its numbers are parsed by numpy's C tokenizer in one np.loadtxt call; a block that fails is
parsed again line by line, only to name the bad line. Binary: a block is read into a reusable buffer, each
row's word found with one bytes.find and its vector copied straight into the matrix.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.artifact import ModelError

BLOCK_BYTES = 1 << 22  # read and parsed at a time (text: its lines, words and numbers take about 8x this)
MAX_LINE_BYTES = 1 << 26  # a text line longer than this means another format
MAX_WORD_BYTES = 1 << 16  # likewise a binary word (no space found)
UNSTORABLE = b"\t\r"  # besides "\n" and the empty word, what trainer.artifact refuses in a word
CHECK_ROWS = 1 << 16  # rows moved at a time when duplicates are squeezed out

# first file row of the block, rows, their words joined by b"\n", values (k, N) or None when already in place
Block = tuple[int, int, bytes, "np.ndarray | None", dict[int, str]]


@dataclass(frozen=True)
class Layout:
    """What the first line of a vectors file says about the rest."""

    binary: bool
    dim: int
    rows: int | None  # rows the header announces; None without a header (GloVe)
    header_bytes: int  # length of the header line with its "\n"; 0 without one

    @property
    def name(self) -> str:
        return "word2vec-binary" if self.binary else "word2vec-text" if self.rows is not None else "glove-text"


@dataclass
class Vectors:
    """The rows kept: words[i] is the word of vectors[i], in file order."""

    words: list[str]
    vectors: np.ndarray  # float32 (V, N)
    layout: Layout
    rows_read: int = 0  # file rows looked at (the header's count, or --limit)
    invalid_utf8: int = 0  # words whose bad bytes were replaced or removed
    duplicates: int = 0  # rows left out because their word came earlier
    skipped: int = 0  # bad rows left out (--skip-bad-rows)
    first_skipped: str = ""  # where the first of them is, and what is wrong with it
    trailing: bool = False  # the file goes on after the rows its header announces


def binary_blocks(stream, pending: bytes, rows: int, sink: Sink) -> Iterator[Block]:
    """Blocks of binary rows, their vectors copied straight into sink.free(); returns True when more than
    whitespace follows the last row wanted."""
    size = 4 * sink.layout.dim
    buf = bytearray(BLOCK_BYTES + MAX_WORD_BYTES + size + 2)  # reused: a block and the partial row before it
    view, have, done = memoryview(buf), len(pending), 0
    buf[:have] = pending
    while done < rows:
        got = stream.readinto(view[have:have + BLOCK_BYTES])
        have += got
        out = sink.free()[:rows - done]
        words, end = _split_binary(buf, have, size, memoryview(out).cast("B"))
        if end < 0:
            raise ModelError(f"{sink.place(done + len(words))}: no space ends the word within {MAX_WORD_BYTES:,} "
                             "bytes (a damaged file, or not word2vec binary)")
        if words:
            if sys.byteorder == "big":
                out[:len(words)].byteswap(inplace=True)
            names, bad = b"\n".join(words), {}
            if names.count(b"\n") != len(words) - 1:  # a "\n" inside a word: a bad row, still one word
                bad = {i: f"the word {bytes(w)!r} holds a line break: a model cannot store it"
                       for i, w in enumerate(words) if b"\n" in w}
                names = b"\n".join(w.replace(b"\n", b"\r") for w in words)
            yield done, len(words), names, None, bad
        done += len(words)
        buf[:have - end] = view[end:have]
        have -= end
        if not got:
            break
    return done == rows and bool(buf[:have].strip() or (got and stream.read(1 << 16).strip()))


def _split_binary(buf: bytearray, have: int, size: int, out: memoryview) -> tuple[list[bytearray], int]:
    """Split complete rows off buf[:have], copying each vector (size bytes) into the next row of out (bytes of
    float32 rows; at most as many rows as it holds). Returns the words and where the next row starts, or -1
    for that when no space ends a word within MAX_WORD_BYTES. One bytes.find per row, no loop per byte but
    over the newlines the C tool writes after each vector."""
    words, pos, row, most, find, src = [], 0, 0, len(out) // size, buf.find, memoryview(buf)
    while row < most:
        while pos < have and buf[pos] == 10:
            pos += 1
        space = find(b" ", pos, min(have, pos + MAX_WORD_BYTES + 1))
        if space < 0 and have - pos > MAX_WORD_BYTES:
            return words, -1
        if space < 0 or space + 1 + size > have:
            break
        words.append(buf[pos:space])
        out[row * size:(row + 1) * size] = src[space + 1:space + 1 + size]
        row, pos = row + 1, space + 1 + size
    return words, pos


def text_blocks(stream, pending: bytes, rows: int, sink: Sink) -> Iterator[Block]:
    """Blocks of whole text lines; returns True when more than whitespace follows the last row wanted."""
    carry, done, data, extra = pending, 0, b"", []
    while done < rows:
        data = stream.read(BLOCK_BYTES)
        buf = carry + data if data else (carry.rstrip() + b"\n" if carry.strip() else b"")
        cut = buf.rfind(b"\n") + 1
        lines, carry = buf[:cut].split(b"\n")[:-1], buf[cut:]
        lines, extra = lines[:rows - done], lines[rows - done:]
        if len(carry) > MAX_LINE_BYTES:
            raise ModelError(f"{sink.place(done + len(lines))} is longer than {MAX_LINE_BYTES:,} bytes (not a "
                             "text vectors file? --binary if it is binary)")
        if lines:
            words, values, bad = _text_rows(lines, sink.layout.dim)
            yield done, len(lines), b"\n".join(words), values, bad
        done += len(lines)
        if not data:
            break
    return any(map(bytes.strip, extra)) or bool(data and (carry + stream.read(1 << 16)).strip())


def _text_rows(lines: list[bytes], dim: int) -> tuple[list[bytes], np.ndarray, dict[int, str]]:
    """Words, values (k, dim) and {row: problem} of k lines, the numbers parsed in one call when all is well."""
    parts = [line.partition(b" ") for line in lines]
    words, rests = [p[0] for p in parts], [p[2] for p in parts]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # np.loadtxt warns about input with no data: a bad block
            values = np.loadtxt(rests, dtype=np.float32, comments=None, encoding="latin1", ndmin=2)
        if values.shape == (len(rests), dim):  # loadtxt skips blank lines: the count shows them
            return words, values, {}
    except (ValueError, UserWarning):
        pass
    values, bad = np.zeros((len(rests), dim), np.float32), {}
    for i, rest in enumerate(rests):  # only for a block that holds a bad row: find it
        fields = rest.split()
        if len(fields) != dim:
            bad[i] = "is blank" if not lines[i].strip() else f"has {len(fields):,} values, expected {dim:,}"
            continue
        try:
            values[i] = np.loadtxt([rest], dtype=np.float32, comments=None, encoding="latin1")
        except ValueError:
            culprit = next((f for f in fields if not _is_number(f)), rest[:60])
            bad[i] = f"holds something that is not a number: {culprit!r}"
    return words, values, bad


def _is_number(field: bytes) -> bool:
    try:
        float(field)
        return True
    except ValueError:
        return False


class Sink:
    """Gathers blocks into one preallocated float32 (rows, N) matrix: decodes the words, refuses bad rows or,
    when asked, leaves them out; at the end keeps the first row of each word (the later ones are duplicates)."""

    def __init__(self, path: Path, layout: Layout, rows: int, unicode_errors: str, skip_bad_rows: bool):
        if unicode_errors not in ("strict", "replace", "ignore"):
            raise ValueError(f"unicode_errors must be strict, replace or ignore, not {unicode_errors!r}")
        self.path, self.layout, self.errors, self.skip = path, layout, unicode_errors, skip_bad_rows
        self.array = np.empty((rows, layout.dim), dtype=np.float32)
        self.result = Vectors([], self.array, layout)

    def place(self, row: int) -> str:
        """How messages name the 0-based data row: by line for text, by vector for binary files."""
        if self.layout.binary:
            return f"{self.path}: row {row + 1:,}"
        return f"{self.path}: line {row + 1 + (self.layout.rows is not None):,}"

    def free(self) -> np.ndarray:
        """The rows not yet filled: float32 (rows - kept, N)."""
        return self.array[len(self.result.words):]

    def add(self, first: int, count: int, names: bytes, values: np.ndarray | None, bad: dict[int, str]) -> None:
        """Rows first..first+count of the file: their words joined by b"\\n", their values float32 (count, N)
        (None: already written at free()), and the problems found so far, by row of the block."""
        start = len(self.result.words)
        block = self.array[start:start + count] if values is None else values
        words = self._decode(names, bad)
        with np.errstate(over="ignore", invalid="ignore"):
            suspect = not np.isfinite(block.sum())  # one fast pass; overflow alone only costs the exact check
        for i in np.flatnonzero(~np.isfinite(block).all(axis=1)).tolist() if suspect else ():
            bad.setdefault(i, "holds NaN or infinite values")
        if bad and not self.skip:
            i = min(bad)
            raise ModelError(f"{self.place(first + i)}: {bad[i]} (--skip-bad-rows leaves such rows out)")
        if bad:
            if not self.result.skipped:
                self.result.first_skipped = f"{self.place(first + min(bad))}: {bad[min(bad)]}"
            self.result.skipped += len(bad)
            keep = [i for i in range(count) if i not in bad]
            words, block = [words[i] for i in keep], block[keep]
        if values is not None or bad:
            self.array[start:start + len(words)] = block
        self.result.words.extend(words)
        self.result.rows_read = first + count

    def _decode(self, names: bytes, bad: dict[int, str]) -> list[str]:
        try:
            words = names.decode("utf-8").split("\n")
            if not (b"\t" in names or b"\r" in names or b"\n\n" in names or names.startswith(b"\n")
                    or names.endswith(b"\n") or not names):
                return words
        except UnicodeDecodeError:
            words = [self._decode_one(w, i, bad) for i, w in enumerate(names.split(b"\n"))]
        for i, (word, raw) in enumerate(zip(words, names.split(b"\n"))):
            if not word or any(c in raw for c in UNSTORABLE):
                what = "a tab or a line break" if word else "nothing but invalid UTF-8" if raw else "nothing"
                bad.setdefault(i, f"the word {raw!r} holds {what}: a model cannot store it")
        return words

    def _decode_one(self, word: bytes, row: int, bad: dict[int, str]) -> str:
        try:
            return word.decode("utf-8")
        except UnicodeDecodeError:
            if self.errors == "strict":
                bad[row] = f"the word {word!r} is not valid UTF-8 (--unicode-errors replace or ignore reads it)"
                return "?"
            self.result.invalid_utf8 += 1
            return word.decode("utf-8", self.errors)

    def finish(self) -> Vectors:
        """The result, duplicates squeezed out of the matrix in place (rows only move towards the front)."""
        result, words = self.result, self.result.words
        if not words:
            raise ModelError(f"{self.path}: no row to import (all {result.rows_read:,} rows left out)")
        if len(set(words)) != len(words):
            first: dict[str, int] = {}
            keep = np.asarray([i for i, w in enumerate(words) if first.setdefault(w, i) == i])
            for start in range(0, len(keep), CHECK_ROWS):  # keep[j] >= j: no source is overwritten before use
                chunk = keep[start:start + CHECK_ROWS]
                self.array[start:start + len(chunk)] = self.array[chunk]
            result.duplicates, result.words = len(words) - len(keep), list(first)
        result.vectors = self.array[:len(result.words)]  # a view: leading rows of a C array stay contiguous
        return result
