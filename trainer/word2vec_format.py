"""The word2vec C tool's vectors files, text and binary: export from a model folder, import into one.

Both go through trainer.artifact (load and save), which alone knows the inside of a model folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from trainer.artifact import Model, ModelError, atomic_file, load, reporting_errors, save


def export_word2vec(model: Model, out: str | os.PathLike, *, binary: bool | None = None) -> Path:
    """Write the input vectors in the word2vec C tool's format: a "V N" header line, then one word and its
    N numbers per line (text), or the word, a space and N little-endian float32 (binary). `binary`
    defaults to True for a .bin suffix. Written to a temporary sibling, then renamed into place."""
    out = Path(out)
    binary = out.suffix == ".bin" if binary is None else binary
    with atomic_file(out) as f:
        f.write(f"{model.vocab_size} {model.dim}\n".encode())
        for word, row in zip(model.words, model.input_vectors):
            if binary:
                f.write(word.encode() + b" " + row.astype("<f4").tobytes() + b"\n")
            else:
                f.write((word + " " + " ".join(f"{x:.7g}" for x in row.tolist()) + "\n").encode())
    return out


def import_word2vec(source: str | os.PathLike, model_dir: str | os.PathLike, *,
                    binary: bool | None = None) -> Path:
    """Turn a word2vec text or binary vectors file into a model folder without output vectors.

    Word counts are unknown in such files: they are recorded as 0 and the file's row order (by convention
    most frequent first) is kept."""
    source = Path(source)
    binary = source.suffix == ".bin" if binary is None else binary
    try:
        with open(source, "rb") as f:
            header = f.readline().split()
            if len(header) != 2 or not all(h.isdigit() for h in header) or int(header[0]) < 1:
                raise ModelError(f"{source}: first line must be 'VOCAB_SIZE DIM' (word2vec format)")
            size, dim = int(header[0]), int(header[1])
            read_row = _read_binary_row if binary else _read_text_row
            vectors = np.empty((size, dim), dtype=np.float32)
            words = [read_row(f, dim, vectors[row], source, row) for row in range(size)]
    except OSError as exc:
        raise ModelError(f"{source}: cannot read ({exc.strerror or exc})") from None
    meta = {"objective": None, "source": {"imported_from": str(source),
                                         "format": "word2vec-binary" if binary else "word2vec-text"}}
    return save(model_dir, words, np.zeros(size, dtype=np.int64), vectors, None, meta)


def _read_text_row(f, dim: int, out: np.ndarray, source: Path, row: int) -> str:
    parts = f.readline().rstrip(b"\r\n").split(b" ")
    if len(parts) != dim + 1:
        raise ModelError(f"{source}: row {row + 1} has {len(parts) - 1} numbers, header says {dim}")
    try:
        out[:] = np.asarray(parts[1:], dtype=np.float32)
    except ValueError:
        raise ModelError(f"{source}: row {row + 1} holds something that is not a number") from None
    return _decode_word(parts[0], source, row)


def _read_binary_row(f, dim: int, out: np.ndarray, source: Path, row: int) -> str:
    word = bytearray()
    while (ch := f.read(1)) != b" ":
        if not ch:
            raise ModelError(f"{source}: ends at row {row + 1} of the count its header gives (truncated)")
        if ch != b"\n" or word:
            word += ch
    data = f.read(4 * dim)
    if len(data) != 4 * dim:
        raise ModelError(f"{source}: ends inside row {row + 1} (truncated)")
    out[:] = np.frombuffer(data, dtype="<f4")
    return _decode_word(bytes(word), source, row)


def _decode_word(raw: bytes, source: Path, row: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{source}: row {row + 1}: word is not valid UTF-8") from None


# ------------------------------------------------------------------------------------ command line

def _add_form_options(parser) -> None:
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--binary", dest="binary", action="store_true", default=None, help="force binary")
    form.add_argument("--text", dest="binary", action="store_false", help="force text")


def add_export_arguments(parser) -> None:
    parser.add_argument("model", help="model folder")
    parser.add_argument("out", help="output file: .bin for binary, anything else for text")
    _add_form_options(parser)


def run_export(args) -> int:
    return reporting_errors(lambda: print(f"wrote {export_word2vec(load(args.model), args.out, binary=args.binary)}"))


def add_import_arguments(parser) -> None:
    parser.add_argument("vectors", help="word2vec vectors file (.bin binary, anything else text)")
    parser.add_argument("model", help="model folder to write (replaced atomically if it exists)")
    _add_form_options(parser)


def run_import(args) -> int:
    return reporting_errors(lambda: print(f"wrote {import_word2vec(args.vectors, args.model, binary=args.binary)}"))
