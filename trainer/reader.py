"""Opening and streaming corpus files (plain, text8-style single line, .gz, .bz2) as checked text."""
from __future__ import annotations

import bz2
import gzip
import os
import stat
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

CHUNK_BYTES = 1 << 20  # text is read in binary chunks of this size, cut at the last whitespace
HEAD_BYTES = 1 << 16  # the first bytes checked for NULs and non-text ("looks binary") before anything else
_WHITESPACE = b" \t\n\r\x0b\x0c"  # ASCII bytes never occur inside a UTF-8 multi-byte character
_CONTROL = bytes(b for b in range(32) if b not in _WHITESPACE) + b"\x7f"  # ASCII bytes text does not hold
READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip, bz2 and the file system raise these on bad input


class CorpusError(Exception):
    """A corpus or dump that cannot be used, with a message saying what to do about it."""


def compression(path: Path) -> str:
    """'gzip', 'bzip2' or 'plain', by the file name's suffix."""
    return {".gz": "gzip", ".bz2": "bzip2"}.get(path.suffix.lower(), "plain")


def form_suffix(path: Path) -> str:
    """The suffix that tells text from binary: ".bin" for both vectors.bin and vectors.bin.gz."""
    return Path(path.stem).suffix if compression(path) != "plain" else path.suffix


@contextmanager
def compressing(out: IO[bytes], name: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """`out`, an open binary file, compressed as `name`'s suffix says (.gz, .bz2; the gzip header without
    a name or time, so that equal contents give equal files)."""
    kind = compression(Path(name))
    if kind == "plain":
        yield out
        return
    with (gzip.GzipFile(fileobj=out, mode="wb", filename="", mtime=0) if kind == "gzip"
          else bz2.BZ2File(out, "wb")) as stream:
        yield stream


def open_stream(path: str | os.PathLike[str], what: str = "corpus") -> tuple[Path, IO[bytes], IO[bytes]]:
    """Open a file, decompressing by suffix; returns (path, file on disk, decompressed stream)."""
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise CorpusError(f"{what} is a directory, not a file: {path}")
        raw = open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"{what} not found: {path}") from None
    except PermissionError:
        raise CorpusError(f"{what} is not readable (permission denied): {path}") from None
    except OSError as error:
        raise CorpusError(f"cannot open {what} {path}: {error.strerror or error}") from None
    kind = compression(path)
    stream = gzip.GzipFile(fileobj=raw) if kind == "gzip" else bz2.BZ2File(raw) if kind == "bzip2" else raw
    return path, raw, stream


def read_error(path: Path, error: BaseException) -> CorpusError:
    """The CorpusError to raise for an error met while reading ``path``."""
    kind = compression(path)
    if kind != "plain" and not isinstance(error, FileNotFoundError):
        return CorpusError(f"corrupt or truncated {kind} file {path}: {error}")
    return CorpusError(f"reading {path} failed: {error} (was it moved, cut short or deleted while being read?)")


def check_corpus(path: str | os.PathLike[str]) -> int:
    """Raise CorpusError unless ``path`` is a file that opens, decompresses and starts like text; returns
    its size in bytes. A pipe or a device is refused: the corpus is read twice (this check, then the text)."""
    path, raw, stream = open_stream(path)
    with raw, stream:
        try:
            info = os.fstat(raw.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CorpusError(f"corpus is not a regular file (a pipe or a device?), but it must be read "
                                  f"twice: write it to a file first: {path}")
            head = stream.read(HEAD_BYTES)
        except READ_ERRORS as error:
            raise read_error(path, error) from None
    if b"\0" in head:
        raise CorpusError(f"corpus looks binary (NUL bytes in its first 64 KiB), expected text: {path}")
    text = head.decode("utf-8", errors="replace")
    unusable = text.count("\ufffd") + len(head) - len(head.translate(None, _CONTROL))
    if 4 * unusable > len(text):
        raise CorpusError(f"corpus looks binary or is not UTF-8 ({unusable / len(text):.0%} of the characters "
                          f"in its first 64 KiB are invalid UTF-8 or control characters), expected UTF-8 "
                          f"text: {path}")
    if len(head) < HEAD_BYTES and not head.split():
        raise CorpusError(f"corpus is empty (no tokens): {path}")
    return info.st_size


@contextmanager
def progress_bar(enabled: bool, total: int, desc: str) -> Iterator[Any]:
    """A tqdm bar of bytes on stderr when asked for and stderr is a terminal, else None."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    from tqdm import tqdm
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr) as bar:
        yield bar


def byte_pieces(path: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES,
                progress: bool = False) -> Iterator[bytes]:
    """The (decompressed) bytes in pieces of about ``chunk_bytes`` that end at ASCII whitespace.

    Reads binary chunks and carries the bytes after the last whitespace over to the next chunk, so a
    text8-style file (one line of hundreds of MB) is never held whole. Read errors become CorpusError.
    """
    path, raw, stream = open_stream(path)
    try:
        with raw, stream, progress_bar(progress, os.fstat(raw.fileno()).st_size, path.name) as bar:
            advance = None if bar is None else (lambda _: bar.update(raw.tell() - bar.n))
            yield from _cut_at_whitespace(iter(lambda: stream.read(chunk_bytes), b""), advance)
    except READ_ERRORS as error:
        raise read_error(path, error) from None


def span_pieces(path: Path, start: int, stop: int, chunk_bytes: int = CHUNK_BYTES,
                advance: Callable[[int], object] | None = None) -> Iterator[bytes]:
    """byte_pieces of bytes [start, stop) of a plain file, where start and stop follow whitespace (see
    split_points); ``advance(n)`` is called with the number of bytes of each chunk read."""
    try:
        with open(path, "rb") as file:
            file.seek(start)
            left = stop - start

            def read() -> bytes:
                nonlocal left
                block = file.read(min(chunk_bytes, left))
                left -= len(block)
                return block

            yield from _cut_at_whitespace(iter(read, b""), advance)
    except READ_ERRORS as error:
        raise read_error(path, error) from None


def split_points(path: Path, parts: int) -> list[int]:
    """Offsets 0 = o_0 < o_1 < ... < o_k = size (k <= parts) cutting a plain file into spans of about equal
    size, each cut right after an ASCII whitespace byte, so that no token is split."""
    points = [0]
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            for part in range(1, parts):
                file.seek(max(part * size // parts, points[-1]))
                while block := file.read(1 << 16):
                    cut = min((i for i in map(block.find, _WHITESPACE) if i >= 0), default=-1)
                    if cut >= 0:
                        points.append(file.tell() - len(block) + cut + 1)
                        break
    except READ_ERRORS as error:
        raise read_error(path, error) from None
    return sorted(set(points) - {size}) + [size]


def _cut_at_whitespace(blocks: Iterator[bytes], advance: Callable[[int], object] | None) -> Iterator[bytes]:
    carry: list[bytes] = []  # the bytes after the last whitespace so far: the start of a token
    for block in blocks:
        cut = max(map(block.rfind, _WHITESPACE)) + 1  # 0 when the block holds no whitespace
        if cut:
            yield b"".join([*carry, block[:cut]])
            carry = []
        carry.append(block[cut:])
        if advance is not None:
            advance(len(block))
    yield b"".join(carry)
