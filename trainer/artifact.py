"""The model folder format: the only code that knows the file names inside a model folder.

A model folder holds
  input_vectors.npy   float32 (V, N): W_input, the centre-word vectors v_w (the embeddings)
  output_vectors.npy  float32 (V, N): W_output, the context-word vectors u_w, same row order (absent for
                      vectors imported from word2vec files, which carry only input vectors)
  vocab.tsv           one "word<TAB>count" line per row, most frequent first
  meta.json           format name and version, shapes, objective, training config, corpus statistics,
                      and the size and SHA-256 of every other file
Saving is atomic: the folder is written as a temporary sibling, fsynced and swapped in with one rename,
so a reader sees the old model or the new one, never a mix. ModelWriter writes the arrays block by block as
they are made (an import never holds its whole matrix); save() writes arrays already in memory through it. Loading memory-maps the arrays (workers of a
server share the pages) and verifies everything but the checksums, which `verify` adds.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

FORMAT_NAME = "skipgram-model"
FORMAT_VERSION = 1
INPUT_FILE = "input_vectors.npy"
OUTPUT_FILE = "output_vectors.npy"
VOCAB_FILE = "vocab.tsv"
META_FILE = "meta.json"
WRITE_BLOCK_BYTES = 1 << 22  # rows of an array written at a time


class ModelError(Exception):
    """A model folder that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class Model:
    """A loaded model folder. Arrays are read-only memory maps unless loaded with mmap=False; the vocabulary
    is read on first use (a server that looks words up in its own shared table never builds these objects)."""

    path: Path
    input_vectors: np.ndarray  # float32 (V, N)
    output_vectors: np.ndarray | None  # float32 (V, N), or None for imported vectors
    meta: dict = field(repr=False)
    held: Mapping[str, int] | None = field(default=None, repr=False)  # read from these (hold()), not from path

    @cached_property
    def _vocab(self) -> tuple[tuple[str, ...], np.ndarray]:
        with _named(self.path, self.held):
            return _read_vocab(_source(self.path, self.held, VOCAB_FILE), self.vocab_size)

    @property
    def words(self) -> tuple[str, ...]:
        return self._vocab[0]

    @property
    def counts(self) -> np.ndarray:
        """int64 (V,)"""
        return self._vocab[1]

    @cached_property
    def index(self) -> dict[str, int]:
        """word -> row."""
        return {word: row for row, word in enumerate(self.words)}

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def dim(self) -> int:
        return int(self.input_vectors.shape[1])

    @property
    def objective(self) -> str | None:
        """'negative-sampling', 'naive-softmax', or None when the vectors were imported."""
        return self.meta.get("objective")

    @property
    def digest(self) -> str:
        """The model's contents in 20 hex digits: a digest of the checksums meta.json records for its files.
        Two folders with the same contents have the same digest; a model saved again unchanged keeps it."""
        return contents_digest(self.meta)


def contents_digest(meta: dict) -> str:
    """Model.digest from a folder's meta.json contents alone."""
    return hashlib.sha256(json.dumps(meta["files"], sort_keys=True).encode()).hexdigest()[:20]


def read_digest(path: str | os.PathLike) -> str:
    """The digest of the model folder at `path`, from its meta.json alone (cheap: no array is opened)."""
    return contents_digest(_read_meta(Path(path)))


# ----------------------------------------------------------------------------------------------- saving

def save(path: str | os.PathLike, words, counts, input_vectors, output_vectors=None,
         meta: dict | None = None) -> Path:
    """Write a model folder atomically, replacing any folder of the same name only when complete.

    words: V distinct strings with no tab or newline; counts: (V,) non-negative integers;
    input_vectors, output_vectors: (V, N) finite arrays, stored as float32. `meta` is merged into meta.json.
    On any failure the temporary folder is removed and an existing model at `path` is untouched; anything
    else at `path` (a folder that is not a model folder, a file) is refused, never replaced.
    """
    arrays = [_checked_array(name, array, len(words)) for name, array in
              ((INPUT_FILE, input_vectors), (OUTPUT_FILE, output_vectors)) if array is not None]
    if len(arrays) == 2 and arrays[1].shape != arrays[0].shape:
        raise ModelError("input and output vectors must have the same shape")
    rows, dim = arrays[0].shape
    with ModelWriter(path, rows, dim, output_vectors=len(arrays) == 2) as out:
        writers = [out.input, out.output][:len(arrays)]
        for start in range(0, rows, out.input.block_rows):
            for writer, array in zip(writers, arrays):
                writer.append(array[start:start + out.input.block_rows])
        return out.finish(words, counts, meta)


class ModelWriter:
    """A model folder being saved, its arrays written block by block as they are made (an import never holds
    the whole matrix), then finish() writes the vocabulary and meta.json and swaps the folder into place.
    A context manager: leaving it without finish() (an error, an interrupt) removes everything written, and
    an existing model at `path` stays as it was."""

    def __init__(self, path: str | os.PathLike, rows: int, dim: int, *, output_vectors: bool = False):
        path = Path(path)
        if path.is_symlink():  # replace the folder the link points to; the link stays
            path = path.resolve()
        check_replaceable(path)
        _check_space(path, (1 + output_vectors) * 4 * rows * dim)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self._done = path, False
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        self.input: ArrayWriter | None = None
        self.output: ArrayWriter | None = None
        try:
            self.input = ArrayWriter(self._tmp / INPUT_FILE, rows, dim)
            self.output = ArrayWriter(self._tmp / OUTPUT_FILE, rows, dim) if output_vectors else None
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> ModelWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            self.abort()

    def finish(self, words, counts, meta: dict | None = None) -> Path:
        """Complete the folder: words[i] and counts[i] name row i of the arrays written; `meta` is merged
        into meta.json. Then the folder replaces any model at `path` in one rename."""
        words, counts = _checked_vocabulary(words, counts)
        files = {}
        for name, writer in ((INPUT_FILE, self.input), (OUTPUT_FILE, self.output)):
            if writer is not None and writer.written != len(words):
                raise ModelError(f"{name}: {writer.written} rows written for {len(words)} words")
            if writer is not None:
                files[name] = writer.finish()
        files[VOCAB_FILE] = _write_bytes(self._tmp / VOCAB_FILE, _vocab_bytes(words, counts))
        full_meta = dict(meta or {})
        full_meta.update(
            format=FORMAT_NAME, format_version=FORMAT_VERSION, vocab_size=len(words), dim=self.input.dim,
            has_output_vectors=self.output is not None,
            saved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), files=files)
        _write_bytes(self._tmp / META_FILE, json.dumps(full_meta, indent=2, sort_keys=True).encode() + b"\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o777 & ~umask)  # mkdtemp's 0700 would lock out a server running as another user
        _fsync_dir(self._tmp)
        _swap_into_place(self._tmp, self.path)
        self._done = True
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary folder."""
        for writer in (self.input, self.output):
            if writer is not None:
                writer.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._done = True


class ArrayWriter:
    """A float32 (rows, N) .npy file written block by block: append() checks each block finite and hands it
    to a writer thread that hashes (SHA-256) and writes it, so that making the next block overlaps writing
    this one, and the kernel writes back to disk meanwhile. Fewer rows than announced rewrite the header (and hash again)."""

    def __init__(self, target: Path, rows: int, dim: int, buffers: int = 3):
        self.target, self.rows, self.dim, self.written = target, rows, dim, 0
        self.block_rows = max(1, WRITE_BLOCK_BYTES // (4 * dim))
        self._header = _npy_header((rows, dim))
        self._digest = hashlib.sha256(self._header)
        self._file = open(target, "wb")
        self._file.write(self._header)
        self._pool = [np.empty((self.block_rows, dim), np.float32) for _ in range(buffers)]
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for buffer in self._pool:
            self._free.put(buffer)
        self._todo: queue.Queue = queue.Queue(maxsize=buffers + 1)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._write_blocks, name=f"write {target.name}", daemon=True)
        self._thread.start()

    def buffer(self) -> np.ndarray:
        """An empty float32 (block_rows, N) block to fill and append (a leading slice of it); waits while
        every block is still being written."""
        return self._free.get()

    def append(self, rows: np.ndarray, *, known_finite: bool = False) -> None:
        """Add float32 (k, N) rows: a leading slice of buffer() (reused once written) or any array that
        stays unchanged until finish(). Each value is checked finite unless the caller has just done so."""
        self._check_failure()
        rows = np.asarray(rows)
        if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ModelError(f"{self.target.name}: expected float32 rows of {self.dim}, got {rows.dtype} "
                             f"{rows.shape}")
        if self.written + len(rows) > self.rows:
            raise ModelError(f"{self.target.name}: more than the {self.rows} rows announced")
        bad = () if known_finite else non_finite_rows(rows)
        if len(bad):
            raise ModelError(f"{self.target.name}: contains NaN or infinite values (first in row "
                             f"{self.written + int(bad[0])})")
        own = next((b for b in self._pool if rows.base is b or rows is b), None)
        self._todo.put((memoryview(np.ascontiguousarray(rows).reshape(-1)).cast("B"), own))
        self.written += len(rows)

    def finish(self) -> dict:
        """Wait for the writes, fix the header if fewer rows came than announced, fsync; the file's record."""
        self._stop()
        self._check_failure()
        if self.written != self.rows:
            self._file.seek(0)
            self._file.write(_npy_header((self.written, self.dim), len(self._header)))
            self._file.truncate(len(self._header) + 4 * self.dim * self.written)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.written != self.rows:
            return _file_record(self.target)
        return {"bytes": self.target.stat().st_size, "sha256": self._digest.hexdigest()}

    def close(self) -> None:
        """Stop writing (after an error): the file is left to be removed with its folder."""
        self._stop()
        self._file.close()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _write_blocks(self) -> None:
        """The writer thread: blocks in order; after a failure the rest are only drained (append reports it)."""
        written = len(self._header)
        while (item := self._todo.get()) is not None:
            data, own = item
            try:
                if self._failure is None:
                    self._digest.update(data)
                    self._file.write(data)
                    self._file.flush()
                    _start_writeback(self._file.fileno(), written, len(data))
                    written += len(data)
            except BaseException as error:  # noqa: BLE001 (handed to the thread that appends)
                self._failure = error
            if own is not None:
                self._free.put(own)


def _npy_header(shape: tuple[int, int], length: int | None = None) -> bytes:
    """The .npy (version 1.0) header of a float32 C array, as numpy writes it; padded with spaces to `length`
    bytes when given (a smaller shape in the space reserved for a larger one: numpy reads it the same)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": shape})
    header = out.getvalue()
    if length is None or len(header) == length:
        return header
    text = header[10:-1] + b" " * (length - len(header))
    return header[:8] + (len(text) + 1).to_bytes(2, "little") + text + b"\n"


_SYNC_FILE_RANGE_WRITE = 2
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (Linux), so that the final fsync has little left."""
    sync_file_range = getattr(_LIBC, "sync_file_range", None)
    if sync_file_range is not None:
        sync_file_range(fd, ctypes.c_int64(offset), ctypes.c_int64(length), _SYNC_FILE_RANGE_WRITE)


def _check_space(path: Path, need: int) -> None:
    """Refuse a folder whose arrays would not fit on its file system, before writing any of it."""
    parent = next((p for p in path.parents if p.exists()), Path("."))
    stat = os.statvfs(parent)
    free = stat.f_bavail * stat.f_frsize
    if need > free:
        raise ModelError(f"{path}: the vectors need {need / 2**30:,.1f} GiB of disk space, the file system "
                         f"there has {free / 2**30:,.1f} GiB free")


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise ModelError if something other than a model folder exists at `path`: saving replaces model
    folders (even damaged ones, as long as meta.json names the format), never other folders or files."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    try:
        is_model = json.loads((path / META_FILE).read_text(encoding="utf-8")).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        is_model = False
    if not is_model:
        raise ModelError(f"{path}: exists and is not a model folder (no {META_FILE} of format {FORMAT_NAME}); "
                         "it is not replaced: remove it or choose another name")


def _checked_vocabulary(words, counts) -> tuple[tuple[str, ...], np.ndarray]:
    words = tuple(map(str, words))
    counts = np.asarray(counts, dtype=np.int64)
    if not words:
        raise ModelError("cannot save an empty vocabulary")
    if counts.shape != (len(words),) or (counts < 0).any():
        raise ModelError(f"counts must be {len(words)} non-negative integers, got shape {counts.shape}")
    # vocab.tsv splits on "\n" and "\t" only, so every other character round-trips (U+2028, U+0085, \x0b...);
    # "\r" is refused too, as editors and universal-newline readers take it for a line end. One pass over all
    # words at C speed first; the per-word search runs only to name the culprit.
    joined = "\n".join(words)
    try:
        joined.encode("utf-8")
        unstorable = "\t" in joined or "\r" in joined or joined.count("\n") != len(words) - 1 or "" in words
    except UnicodeEncodeError:
        unstorable = True
    for word in words if unstorable else ():
        if not word or any(c in "\t\n\r" or "\ud800" <= c <= "\udfff" for c in word):
            raise ModelError(f"word {word!r} cannot be saved: words must be non-empty, valid Unicode (no lone "
                             "surrogates) and free of tabs, newlines (\\n) and carriage returns (\\r)")
    if len(set(words)) != len(words):
        raise ModelError("words must be distinct")
    return words, counts


def _checked_array(name: str, array, rows: int) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != rows or array.shape[1] < 1:
        raise ModelError(f"{name}: expected shape ({rows}, N), got {array.shape}")
    return array


def _vocab_bytes(words, counts) -> bytes:
    if not counts.any():  # imported vectors without counts: one join rather than a string per count
        return ("\t0\n".join(words) + "\t0\n").encode("utf-8")
    return ("\n".join(map("\t".join, zip(words, map(str, counts.tolist())))) + "\n").encode("utf-8")


def _write_bytes(target: Path, data: bytes) -> dict:
    with open(target, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return _file_record(target)


def _file_record(target: Path) -> dict:
    return {"bytes": target.stat().st_size, "sha256": _sha256(target)}


def _sha256(target: Path) -> str:
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Move the finished folder `tmp` to `path`: one rename, or an atomic exchange when `path` exists."""
    if not path.exists():
        os.rename(tmp, path)
    elif _rename_exchange(tmp, path):
        # tmp now holds the previous model; the new one is in place, so failing to tidy is no failure
        shutil.rmtree(tmp, ignore_errors=True)
    else:  # no renameat2: the old folder is parked beside the new one for the instant between renames
        parked = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        try:
            os.rename(path, parked / "model")
            os.rename(tmp, path)
        except BaseException:
            if (parked / "model").exists():
                os.rename(parked / "model", path)  # the previous model goes back where it was
            parked.rmdir()
            raise
        shutil.rmtree(parked, ignore_errors=True)
    _fsync_dir(path.parent)


def _rename_exchange(a: Path, b: Path) -> bool:
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


# ---------------------------------------------------------------------------------------------- loading

def load(path: str | os.PathLike, *, mmap: bool = True, verify_checksums: bool = False,
         check_values: bool = True, held: Mapping[str, int] | None = None) -> Model:
    """Read and check a model folder; raise ModelError naming the file and the problem.

    Checks: every file present with the size meta.json records, known format version, arrays float32 of
    shape (V, dim); with check_values also the vocabulary (well-formed, of the recorded size) and every
    value finite, which reads every page of the arrays: a server checks that once where it prepares the
    model, not in every worker. With verify_checksums also the SHA-256 of every file. With `held` (from
    hold()) the files are read from those descriptors, whatever `path` holds now; `path` still names it.
    """
    path = Path(path)
    if held is None and not path.is_dir():
        raise ModelError(f"{path}: model folder not found")
    with _named(path, held):
        return _load(path, mmap, verify_checksums, check_values, held)


def _load(path: Path, mmap: bool, verify_checksums: bool, check_values: bool, held) -> Model:
    meta = _read_meta(path, held)
    files = meta["files"]
    if held is not None and set(held) != {META_FILE, *files}:
        raise ModelError(f"{path}: the files held are not those its {META_FILE} lists")
    for name, record in files.items():
        _check_file(_source(path, held, name), record, verify_checksums)
    shape = (meta["vocab_size"], meta["dim"])
    input_vectors = _read_array(_source(path, held, INPUT_FILE), shape, mmap)
    output_vectors = _read_array(_source(path, held, OUTPUT_FILE), shape, mmap) if OUTPUT_FILE in files else None
    model = Model(path, input_vectors, output_vectors, meta, held)
    if check_values:
        check_values_of(model)
    return model


def check_values_of(model: Model) -> None:
    """The checks load() leaves out with check_values=False: the vocabulary is read and well-formed, and
    every vector value is finite. Raises ModelError naming the file and the first bad row."""
    model.words  # noqa: B018 (reading it checks it)
    for name, array in ((INPUT_FILE, model.input_vectors), (OUTPUT_FILE, model.output_vectors)):
        bad = non_finite_rows(array) if array is not None else ()
        if len(bad):
            raise ModelError(f"{model.path / name}: row {int(bad[0])} holds NaN or infinite values "
                             f"({len(bad)} such rows)")


def verify(path: str | os.PathLike, *, checksums: bool = True) -> Model:
    """load() with checksums on by default: the full check `python -m trainer verify` runs."""
    return load(path, verify_checksums=checksums)


def hold(path: str | os.PathLike) -> dict[str, int]:
    """Open the model folder's files read-only, all through one descriptor of the folder (so that a folder
    save() swaps in meanwhile is seen whole or not at all), and check they make one model: {name: file
    descriptor}. Whoever holds them, and every process forked from it, can load these contents
    (load(path, held=...)) after the folder was replaced or deleted. Raises ModelError; release() closes."""
    path, held = Path(path), {}
    try:
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            held[META_FILE] = os.open(META_FILE, os.O_RDONLY, dir_fd=folder)
            for name in _read_meta(path, held)["files"]:
                held[name] = os.open(name, os.O_RDONLY, dir_fd=folder)
        finally:
            os.close(folder)
        load(path, held=held, check_values=False)
    except OSError as exc:
        release(held)
        raise ModelError(f"{path}: cannot open the model folder's files ({exc.strerror})") from None
    except BaseException:
        release(held)
        raise
    return held


def release(held: Mapping[str, int]) -> None:
    """Close the descriptors hold() opened."""
    for fd in held.values():
        with contextlib.suppress(OSError):
            os.close(fd)


_FD_FOLDER = Path("/proc/self/fd") if os.path.isdir("/proc/self/fd") else Path("/dev/fd")


def _source(path: Path, held: Mapping[str, int] | None, name: str) -> Path:
    """Where a file of the model is read: the folder, or the descriptor held for it."""
    return path / name if held is None else _FD_FOLDER / str(held[name])


@contextlib.contextmanager
def _named(path: Path, held: Mapping[str, int] | None):
    """Messages about held files name them as the folder's files, not as /proc/self/fd/N."""
    try:
        yield
    except ModelError as exc:
        message = str(exc)
        for name, fd in (held or {}).items():
            message = message.replace(f"{_FD_FOLDER / str(fd)}:", f"{path / name}:")
        if held is None or message == str(exc):
            raise
        raise ModelError(message) from None


def _read_meta(path: Path, held: Mapping[str, int] | None = None) -> dict:
    meta_path = _source(path, held, META_FILE)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{meta_path}: missing (not a model folder, or an incomplete one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{meta_path}: unreadable or not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelError(f"{meta_path}: not a {FORMAT_NAME} meta file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{meta_path}: unknown format version {meta.get('format_version')!r} "
                         f"(this code reads version {FORMAT_VERSION})")
    for key in ("vocab_size", "dim"):
        if not isinstance(meta.get(key), int) or meta[key] < 1:
            raise ModelError(f"{meta_path}: '{key}' must be a positive integer")
    files = meta.get("files")
    expected = {INPUT_FILE, VOCAB_FILE} | ({OUTPUT_FILE} if meta.get("has_output_vectors") else set())
    if not isinstance(files, dict) or not expected <= set(files) or not set(files) <= expected | {OUTPUT_FILE}:
        raise ModelError(f"{meta_path}: 'files' must list {sorted(expected)}")
    return meta


def _check_file(target: Path, record: dict, verify_checksum: bool) -> None:
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"{target}: missing") from None
    if size != record.get("bytes"):
        raise ModelError(f"{target}: {size} bytes, meta.json records {record.get('bytes')} "
                         "(truncated or replaced)")
    if verify_checksum and _sha256(target) != record.get("sha256"):
        raise ModelError(f"{target}: checksum mismatch (file corrupted)")


def _read_vocab(target: Path, vocab_size: int) -> tuple[tuple[str, ...], np.ndarray]:
    try:
        text = target.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{target}: unreadable ({exc})") from None
    # "\n" only: splitlines() (and universal newlines) would also break at U+2028, U+0085, \x0b, \x1c..., which
    # words may hold
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) != vocab_size:
        raise ModelError(f"{target}: {len(lines)} words, meta.json records {vocab_size}")
    words, counts = [], []
    for number, line in enumerate(lines, 1):
        word, tab, count = line.partition("\t")
        if not word or not tab or not (count.isascii() and count.isdigit()):
            raise ModelError(f"{target}: line {number} is not 'word<TAB>count'")
        words.append(word)
        counts.append(int(count))
    if len(set(words)) != len(words):
        raise ModelError(f"{target}: duplicate words")
    return tuple(words), np.asarray(counts, dtype=np.int64)


def _read_array(target: Path, shape: tuple[int, int], mmap: bool) -> np.ndarray:
    try:
        array = np.load(target, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelError(f"{target}: not a readable .npy array ({exc})") from None
    if array.dtype != np.float32 or array.shape != shape:
        raise ModelError(f"{target}: expected float32 {shape}, found {array.dtype} {array.shape}")
    return array


def non_finite_rows(array: np.ndarray, block_bytes: int = 1 << 24) -> np.ndarray:
    """int64 (R,): the rows of a (V, N) array holding NaN or an infinity, checked a block at a time so that
    no temporary grows with the array; a block whose sum is finite is skipped without a boolean temporary."""
    step = max(1, block_bytes // max(1, array.shape[1] * array.itemsize))
    bad = []
    for start in range(0, len(array), step):
        block = array[start:start + step]
        with np.errstate(over="ignore", invalid="ignore"):  # a sum is finite only if its terms are
            if np.isfinite(block.sum()):
                continue
        bad.append(start + np.flatnonzero(~np.isfinite(block).all(axis=1)))
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


@contextlib.contextmanager
def atomic_file(out: str | os.PathLike):
    """Open a binary file whose content appears at `out` only once the block completes: written to a
    temporary sibling, fsynced, then renamed into place; removed instead if the block raises."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
