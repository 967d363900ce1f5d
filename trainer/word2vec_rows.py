"""The rows of word2vec-family vectors files, block by block, gathered into one float32 matrix: the lowest
floor of the reading half of trainer.word2vec_format (trainer.word2vec_read tells the layout and calls it).

Text: a block of whole lines (4 MiB) is split in Python (one bytes.partition per line: the word, then the
numbers) and all its numbers are parsed by numpy's C tokenizer in one np.loadtxt call; a block that fails is
parsed again line by line, only to name the bad line. Binary: a block is read into a reusable buffer and
split by a compiled loop, each vector copied straight into a buffer of the writer of the model's matrix.
Either way the rows go to the model folder block by block, as they are read.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.artifact import ArrayWriter, ModelError, non_finite_rows
from trainer.jit import njit

BLOCK_BYTES = 1 << 22  # read and parsed at a time (text: its lines, words and numbers take about 8x this)
MAX_LINE_BYTES = 1 << 26  # a text line longer than this means another format
MAX_WORD_BYTES = 1 << 16  # likewise a binary word (no space found)
UNSTORABLE = b"\t\r"  # besides "\n" and the empty word, what trainer.artifact refuses in a word

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
    """What a read kept: words[i] is the word of row i handed to the writer, in file order."""

    words: list[str]
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
    buf = np.empty(BLOCK_BYTES + MAX_WORD_BYTES + size + 2, np.uint8)  # reused: a block and the row before it
    names, starts, lengths = np.empty_like(buf), *np.empty((2, len(buf) // (size + 1) + 1), np.int64)
    have, done, got = len(pending), 0, 0
    buf[:have] = np.frombuffer(pending, np.uint8)
    while done < rows:
        got = stream.readinto(memoryview(buf)[have:have + BLOCK_BYTES])
        have += got
        while done < rows:  # as many blocks as the data holds rows (it may hold more than one block)
            out = sink.free()[:rows - done]
            count, end, named, lost = _split_binary(buf, have, size, out.view(np.uint8), names, starts, lengths)
            if lost:
                raise ModelError(f"{sink.place(done + count)}: no space ends the word within {MAX_WORD_BYTES:,} "
                                 "bytes (a damaged file, or not word2vec binary)")
            if count:
                if sys.byteorder == "big":
                    out[:count].byteswap(inplace=True)
                joined, bad = names[:named].tobytes(), {}
                if joined.count(b"\n") != count - 1:  # a "\n" inside a word: a bad row, still one word
                    words = [buf[s:s + n].tobytes() for s, n in zip(starts[:count], lengths[:count])]
                    bad = {i: f"the word {w!r} holds a line break: a model cannot store it"
                           for i, w in enumerate(words) if b"\n" in w}
                    joined = b"\n".join(w.replace(b"\n", b"\r") for w in words)
                yield done, count, joined, None, bad
            done += count
            buf[:have - end] = buf[end:have]
            have -= end
            if count < len(out):
                break
        if not got:
            break
    return done == rows and bool(buf[:have].tobytes().strip() or (got and stream.read(1 << 16).strip()))


@njit(nogil=True, cache=True)
def _split_binary(buf, have, size, out, names, starts, lengths):  # pragma: no cover (compiled)
    """Split complete rows off buf[:have] (uint8), copying each vector (size bytes) into the next row of out
    (uint8 (k, size): the bytes of float32 rows) and each word into names (joined by b"\n"; its start and
    length into starts and lengths). Returns the rows split, where the next row starts, the bytes of names
    used, and whether no space ended a word within MAX_WORD_BYTES. Skips the newlines the C tool writes
    after each vector."""
    pos = row = named = 0
    while row < out.shape[0]:
        while pos < have and buf[pos] == 10:
            pos += 1
        limit, space = min(have, pos + MAX_WORD_BYTES + 1), pos
        while space < limit and buf[space] != 32:
            space += 1
        if space == limit:
            return row, pos, named, have - pos > MAX_WORD_BYTES
        if space + 1 + size > have:
            break
        if row:
            names[named] = 10
            named += 1
        names[named:named + space - pos] = buf[pos:space]
        named += space - pos
        starts[row], lengths[row] = pos, space - pos
        out[row, :] = buf[space + 1:space + 1 + size]
        row, pos = row + 1, space + 1 + size
    return row, pos, named, False


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
    """Takes blocks of rows to an ArrayWriter: decodes the words, refuses bad rows or, when asked, leaves them
    out, and keeps the first row of each word (the later ones are duplicates). Binary rows are read straight
    into the writer's buffers (free()); the matrix is never held whole."""

    def __init__(self, path: Path, layout: Layout, out: ArrayWriter, unicode_errors: str, skip_bad_rows: bool):
        if unicode_errors not in ("strict", "replace", "ignore"):
            raise ValueError(f"unicode_errors must be strict, replace or ignore, not {unicode_errors!r}")
        self.path, self.layout, self.errors, self.skip, self.out = path, layout, unicode_errors, skip_bad_rows, out
        self.result = Vectors([], layout)
        self._seen: set[str] = set()
        self._buffer: np.ndarray | None = None

    def place(self, row: int) -> str:
        """How messages name the 0-based data row: by line for text, by vector for binary files."""
        if self.layout.binary:
            return f"{self.path}: row {row + 1:,}"
        return f"{self.path}: line {row + 1 + (self.layout.rows is not None):,}"

    def free(self) -> np.ndarray:
        """Where the next binary rows are to be read: float32 (k, N), a buffer of the writer."""
        if self._buffer is None:
            self._buffer = self.out.buffer()
        return self._buffer

    def add(self, first: int, count: int, names: bytes, values: np.ndarray | None, bad: dict[int, str]) -> None:
        """Rows first..first+count of the file: their words joined by b"\\n", their values float32 (count, N)
        (None: already read into free()), and the problems found so far, by row of the block."""
        block = self._buffer[:count] if values is None else values
        words = self._decode(names, bad)
        for i in non_finite_rows(block).tolist():
            bad.setdefault(i, "holds NaN or infinite values")
        if bad and not self.skip:
            i = min(bad)
            raise ModelError(f"{self.place(first + i)}: {bad[i]} (--skip-bad-rows leaves such rows out)")
        if bad:
            if not self.result.skipped:
                self.result.first_skipped = f"{self.place(first + min(bad))}: {bad[min(bad)]}"
            self.result.skipped += len(bad)
        keep = self._first_rows(words, bad)
        if keep is not None:
            words, block[:len(keep)] = [words[i] for i in keep], block[keep]
            block = block[:len(keep)]
        if len(block):
            self.out.append(block, known_finite=True)  # checked above
            self._buffer = None if values is None else self._buffer
        self.result.words.extend(words)
        self.result.rows_read = first + count

    def _first_rows(self, words: list[str], bad: dict[int, str]) -> list[int] | None:
        """The rows of a block to keep (not bad, and the first row of their word), or None for all of them:
        what most blocks take, at the cost of two set operations."""
        seen, before = self._seen, len(self._seen)
        if not bad and seen.isdisjoint(words):
            seen.update(words)
            if len(seen) - before == len(words):
                return None
            seen.difference_update(words)  # all were new: only a repeat within the block is to be found
        keep = []
        for i, word in enumerate(words):
            if i not in bad:
                if word in seen:
                    self.result.duplicates += 1
                else:
                    seen.add(word)
                    keep.append(i)
        return keep

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
        """The result: the words of the rows handed to the writer, in order."""
        if not self.result.words:
            raise ModelError(f"{self.path}: no row to import (all {self.result.rows_read:,} rows left out)")
        return self.result
