"""Other tools' vectors files: word2vec C text and binary, fastText .vec, GloVe, and the word2vec tool's
vocabulary file with counts (`-save-vocab`): export from a model folder, import into one.

Both go through trainer.artifact (load and save), which alone knows the inside of a model folder; the rows
of a vectors file are parsed by trainer.word2vec_read, this module's reading half.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trainer.artifact import Model, ModelError, ModelWriter, atomic_file, check_replaceable
from trainer.reader import READ_ERRORS, compressing, form_suffix, read_error

EXPORT_ROWS = 4096  # rows formatted at a time


def export_word2vec(model: Model, out: str | os.PathLike, *, binary: bool | None = None) -> Path:
    """Write the input vectors in the word2vec C tool's format: a "V N" header line, then per row the word,
    a space and N numbers ("%.9g": float32 values round-trip exactly) and "\\n" (text), or the word, a space,
    N little-endian float32 and "\\n" (binary, as the C tool writes it). `binary` defaults to True for a .bin
    suffix (also .bin.gz); a .gz or .bz2 suffix compresses. Written to a temporary sibling, then renamed."""
    out = Path(out)
    binary = form_suffix(out) == ".bin" if binary is None else binary
    _check_exportable(model.words, out)
    fmt = " ".join(["%.9g"] * model.dim)
    with _compressed(out) as f:
        f.write(f"{model.vocab_size} {model.dim}\n".encode())
        for start in range(0, model.vocab_size, EXPORT_ROWS):
            words = model.words[start:start + EXPORT_ROWS]
            block = np.asarray(model.input_vectors[start:start + EXPORT_ROWS])
            if binary:
                data, size = block.astype("<f4").tobytes(), 4 * model.dim
                f.write(b"".join(b"%s %s\n" % (w.encode(), data[i * size:(i + 1) * size])
                                 for i, w in enumerate(words)))
            else:
                f.write("".join(f"{w} {fmt % tuple(row)}\n" for w, row in zip(words, block.tolist())).encode())
    return out


def export_counts(model: Model, out: str | os.PathLike) -> Path:
    """Write the vocabulary with counts as the word2vec C tool's `-save-vocab` does: "word count" lines, in
    the model's row order (gensim's `fvocab`, and `import --counts`, read it back)."""
    out = Path(out)
    _check_exportable(model.words, out)
    with _compressed(out) as f:
        f.write("".join(f"{w} {c}\n" for w, c in zip(model.words, model.counts.tolist())).encode())
    return out


def read_counts(path: str | os.PathLike, unicode_errors: str = "replace") -> dict[str, int]:
    """word -> count from a `-save-vocab` file ("word count" lines; the first of a repeated word counts)."""
    from trainer.word2vec_read import open_vectors  # here: it compiles the row parsers, which export never needs

    path, raw, stream = open_vectors(path, "counts file")
    with raw, stream:
        try:
            data = stream.read()
        except READ_ERRORS as error:
            raise ModelError(str(read_error(path, error))) from None
    counts: dict[str, int] = {}
    for number, line in enumerate(data.split(b"\n"), 1):
        word, space, count = line.rstrip(b"\r").rpartition(b" ")
        if not (word or count):
            continue
        if not (space and word and count.isdigit()):
            raise ModelError(f"{path}: line {number} is not 'WORD COUNT' (the word2vec tool's -save-vocab layout)")
        try:
            counts.setdefault(word.decode("utf-8", unicode_errors), int(count))
        except UnicodeDecodeError:
            raise ModelError(f"{path}: line {number}: the word {word!r} is not valid UTF-8 "
                             "(--unicode-errors replace or ignore reads it)") from None
    return counts


def import_word2vec(source: str | os.PathLike, model_dir: str | os.PathLike, *, binary: bool | None = None,
                    header: bool | None = None, limit: int | None = None, unicode_errors: str = "replace",
                    skip_bad_rows: bool = False, counts: str | os.PathLike | None = None,
                    progress: bool = False, notes: Callable[[str], None] | None = None) -> Path:
    """Turn a vectors file (word2vec C text or binary, fastText .vec, GloVe; .gz/.bz2) into a model folder
    without output vectors, keeping the file's row order (by convention most frequent first).

    `limit` keeps the first rows only; a repeated word keeps its first row. Words come from UTF-8 with bad
    bytes replaced (`unicode_errors` as for bytes.decode). A bad row (wrong number of values, not finite
    numbers, a word a model cannot store) raises ModelError naming it, unless `skip_bad_rows`. Word counts
    come from `counts` (a -save-vocab file) when given, else are recorded as 0. `notes` receives one line per
    thing worth telling (invalid UTF-8, duplicates, rows skipped). Nothing is written unless all succeeds."""
    from trainer.word2vec_read import VectorsFile  # here: it compiles the row parsers, which export never needs

    check_replaceable(model_dir)  # before minutes of reading, not after
    known = None if counts is None else read_counts(counts, unicode_errors)
    with VectorsFile(source, binary=binary, header=header, limit=limit) as vectors, \
            ModelWriter(model_dir, vectors.rows, vectors.layout.dim) as out:
        read = vectors.read_into(out.input, unicode_errors=unicode_errors, skip_bad_rows=skip_bad_rows,
                                 progress=progress)
        lines = [f"read {read.rows_read:,} rows ({read.layout.name}): {len(read.words):,} words x "
                 f"{read.layout.dim} dimensions", *_summary(read, unicode_errors)]
        word_counts = np.zeros(len(read.words), dtype=np.int64)
        if known is not None:
            word_counts[:] = [known.get(w, 0) for w in read.words]
            missing = sum(w not in known for w in read.words)
            lines += [f"{missing:,} words have no count in {counts}: recorded as 0"] if missing else []
        meta = {"objective": None, "source": {
            "imported_from": str(source), "format": read.layout.name, "rows_read": read.rows_read,
            "limit": limit, "duplicates_dropped": read.duplicates, "invalid_utf8_words": read.invalid_utf8,
            "bad_rows_skipped": read.skipped, "counts_from": None if counts is None else str(counts)}}
        path = out.finish(read.words, word_counts, meta)
    for line in lines if notes else ():
        notes(line)
    return path


def _summary(read, unicode_errors: str) -> list[str]:
    """What is worth telling about a read, one line each."""
    lines = []
    if read.invalid_utf8:
        done = "replaced invalid UTF-8 in" if unicode_errors == "replace" else "removed invalid UTF-8 bytes from"
        lines.append(f"{done} {read.invalid_utf8:,} words")
    if read.duplicates:
        lines.append(f"dropped {read.duplicates:,} duplicated words (the first row of each word is kept)")
    if read.skipped:
        lines.append(f"skipped {read.skipped:,} bad rows; the first: {read.first_skipped}")
    if read.trailing:
        lines.append(f"ignored what follows the {read.layout.rows:,} rows the header announces")
    return lines


@contextlib.contextmanager
def _compressed(out: Path):
    """atomic_file, compressing by suffix (.gz, .bz2)."""
    with atomic_file(out) as f, compressing(f, out) as packed:
        yield packed


def _check_exportable(words, out: Path) -> None:
    if any(" " in w for w in words):
        row, word = next((i, w) for i, w in enumerate(words) if " " in w)
        raise ModelError(f"{out}: the word {word!r} (row {row + 1:,}) holds a space, which ends a word in "
                         "word2vec files: it cannot be exported")
