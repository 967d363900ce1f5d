"""Reading vectors files of the word2vec family into one float32 matrix: the reading half of
trainer.word2vec_format, which alone calls it (so the formats keep one owner).

Layouts read:
  word2vec C text     "V N" header line, then rows "word v1 ... vN" (the C tool and fastText's .vec end each
                      row with a space; "\\r\\n" line ends are accepted); GloVe is the same without the header
  word2vec C binary   the header line, then per row: word, b" ", N little-endian float32, then b"\\n" (the C
                      tool) or nothing (gensim)
Any of them may be compressed (.gz, .bz2: opened by trainer.reader). Text or binary is told by the suffix
(.bin; .txt, .vec) or else by the bytes after the first word; a header by the first line being two integers.
Sizes are checked before anything is written; the rows themselves are parsed by trainer.word2vec_rows.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from trainer.artifact import ArrayWriter, ModelError
from trainer.reader import READ_ERRORS, CorpusError, compression, form_suffix, open_stream, progress_bar, read_error
from trainer.word2vec_rows import BLOCK_BYTES, Block, Layout, Sink, Vectors, binary_blocks, text_blocks

HEAD_BYTES = 1 << 16  # looked at to tell the layout
_NUMBER_BYTES = frozenset(b"0123456789+-.eE \t\rnaNAifINFtyTY")  # what the numbers of a text row are made of
_MAGIC = {(793712314).to_bytes(4, "little"): "is a fastText model, not a vectors file: import its .vec instead",
          b"\x1f\x8b": "is gzip-compressed: its name must end in .gz",
          b"BZh": "is bzip2-compressed: its name must end in .bz2"}


class VectorsFile:
    """An open vectors file whose layout and number of rows are known and checked against its size: what
    a model folder for it needs (rows, dim) before read_into() sends the rows to the folder's writer.
    Raises ModelError naming the file; a context manager that closes it."""

    def __init__(self, path: str | os.PathLike, *, binary: bool | None = None, header: bool | None = None,
                 limit: int | None = None):
        self.path, self._raw, self._stream = open_vectors(path)
        try:
            self._head = self._stream.read(HEAD_BYTES)
            self.layout = sniff_layout(self.path, self._head, binary, header)
            wanted = self.layout.rows if self.layout.rows is not None else _count_lines(self.path, self._head, limit)
            self.rows = min(wanted, limit or wanted)  # rows to read: at most this many are kept
            self._size = os.fstat(self._raw.fileno()).st_size
            check_sizes(self.path, self.layout, self.rows,
                        self._size if compression(self.path) == "plain" else None)
        except BaseException as error:
            self.close()
            if isinstance(error, READ_ERRORS):
                raise ModelError(str(read_error(self.path, error))) from None
            raise

    def __enter__(self) -> VectorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()
        self._raw.close()

    def read_into(self, out: ArrayWriter, *, unicode_errors: str = "replace", skip_bad_rows: bool = False,
                  progress: bool = False) -> Vectors:
        """Send the rows kept to `out`, in file order; raises ModelError naming the file and, for a bad row,
        the row. The words kept and what was left out are in the result."""
        layout, wanted = self.layout, self.rows
        sink = Sink(self.path, layout, out, unicode_errors, skip_bad_rows)
        try:
            blocks = (binary_blocks if layout.binary else text_blocks)(self._stream, self._head[layout.header_bytes:],
                                                                       wanted, sink)
            with progress_bar(progress, self._size, self.path.name) as bar:
                trailing = _drain(blocks, sink, bar, self._raw)
        except READ_ERRORS as error:
            raise ModelError(str(read_error(self.path, error))) from None
        if sink.result.rows_read < wanted and layout.rows is not None:
            raise ModelError(f"{self.path}: ends after row {sink.result.rows_read:,} of the {layout.rows:,} its "
                             "header announces (truncated, or a header that does not match the rows)")
        sink.result.trailing = bool(trailing) and wanted == layout.rows
        return sink.finish()


def open_vectors(path, what: str = "vectors file") -> tuple[Path, IO[bytes], IO[bytes]]:
    """trainer.reader's opener (decompressing by suffix), with its errors as ModelError."""
    try:
        return open_stream(path, what)
    except CorpusError as error:
        raise ModelError(str(error)) from None


def _drain(blocks: Iterator[Block], sink: Sink, bar, raw: IO[bytes]) -> bool:
    """Feed every block to the sink; returns the blocks' own return value (data after the last row)."""
    while True:
        try:
            sink.add(*next(blocks))
        except StopIteration as stop:
            return stop.value
        if bar is not None:
            bar.update(raw.tell() - bar.n)


def sniff_layout(path: Path, head: bytes, binary: bool | None, header: bool | None) -> Layout:
    """The layout of a file from its first HEAD_BYTES (decompressed) and what the caller forces."""
    first = _first_line(path, head)
    fields = first.split()
    sizes = len(fields) == 2 and all(f.lstrip(b"+-").isdigit() for f in fields)
    if binary is None:
        binary = {".bin": True, ".txt": False, ".vec": False}.get(form_suffix(path))
    if header is False or (header is None and not sizes):
        if binary:
            raise ModelError(f"{path}: a binary vectors file starts with a 'VOCAB_SIZE DIM' line, this one does "
                             f"not ({_show(first)})")
        if len(fields) < 2:
            raise ModelError(f"{path}: line 1 is neither a 'VOCAB_SIZE DIM' header nor a row 'word value ...' "
                             f"({_show(first)})")
        return Layout(False, len(fields) - 1, None, 0)
    if not sizes or len(first) == len(head):
        found = "nothing after it" if sizes else _show(first)
        raise ModelError(f"{path}: first line must be 'VOCAB_SIZE DIM' (word2vec format), then the rows; "
                         f"found {found}")
    rows, dim = int(fields[0]), int(fields[1])
    if rows < 1 or dim < 1:
        raise ModelError(f"{path}: header announces {rows} rows of {dim} values: both must be at least 1")
    start = len(first) + 1
    return Layout(_looks_binary(head, start, dim) if binary is None else binary, dim, rows, start)


def _first_line(path: Path, head: bytes) -> bytes:
    """The first line of a file that looks like a vectors file (ModelError for what clearly is not one)."""
    problem = next((what for magic, what in _MAGIC.items() if head.startswith(magic)), None)
    end = head.find(b"\n")
    if not head.strip():
        problem = "is empty"
    elif end < 0 and len(head) == HEAD_BYTES:
        problem = f"has a first line longer than {HEAD_BYTES:,} bytes: not a vectors file"
    if problem:
        raise ModelError(f"{path}: {problem}")
    return head[:end] if end >= 0 else head


def _looks_binary(head: bytes, start: int, dim: int) -> bool:
    """Text unless the bytes after the first word are something other than `dim` numbers up to a newline."""
    space = head.find(b" ", start)
    if space < 0:
        return False
    end = head.find(b"\n", space)
    numbers = head[space + 1:end if end >= 0 else len(head)]
    whole_row = end >= 0 or len(head) < HEAD_BYTES
    return not (set(numbers) <= _NUMBER_BYTES and (len(numbers.split()) == dim or not whole_row))


def _show(line: bytes) -> str:
    return repr(line[:60]) + (" ..." if len(line) > 60 else "")


def _count_lines(path: Path, head: bytes, limit: int | None) -> int:
    """Rows of a file without a header, counted in a first pass (as gensim does): its lines up to the last one
    that holds more than whitespace, or `limit` when it has at least that many."""
    lines = rows = 0
    for block in _blocks(path) if len(head) == HEAD_BYTES else [head]:
        body = block.rstrip()
        rows = lines + body.count(b"\n") + 1 if body else rows
        lines += block.count(b"\n")
        if limit and rows >= limit:
            return limit
    return rows


def _blocks(path: Path) -> Iterator[bytes]:
    _, raw, stream = open_vectors(path)
    with raw, stream:
        yield from iter(lambda: stream.read(BLOCK_BYTES), b"")


def check_sizes(path: Path, layout: Layout, rows: int, file_bytes: int | None) -> None:
    """Refuse a row count the file cannot hold (`file_bytes`: its size when not compressed) before anything
    is written for it (the model folder's writer checks the disk space)."""
    dim = layout.dim
    least = layout.header_bytes + (rows * (4 * dim + 2) if layout.binary else rows * (2 * dim + 2) - 1)
    if file_bytes is not None and layout.rows is not None and least > file_bytes:
        raise ModelError(f"{path}: the header announces {layout.rows:,} rows of {dim:,} values: {rows:,} rows "
                         f"need at least {least:,} bytes, the file holds {file_bytes:,} (truncated, or a wrong "
                         "header)")
