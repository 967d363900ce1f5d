"""Vectors files in other tools' exact byte layouts, written by the tests themselves, and the float32 values
each layout's numbers stand for (the float32 nearest to the decimals written)."""
from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import numpy as np


def c_text(words: list[bytes], vectors: np.ndarray) -> bytes:
    """word2vec.c with -binary 0: fprintf "%lld %lld\\n", then per row "%s " and N times "%lf ", then "\\n"."""
    rows = [w + b" " + b"".join(b"%f " % v for v in row) + b"\n" for w, row in zip(words, vectors.tolist())]
    return b"%d %d\n" % vectors.shape + b"".join(rows)


def c_binary(words: list[bytes], vectors: np.ndarray) -> bytes:
    """word2vec.c with -binary 1: the header, then per row "%s ", N float32 (fwrite), "\\n"."""
    rows = [w + b" " + row.astype("<f4").tobytes() + b"\n" for w, row in zip(words, vectors)]
    return b"%d %d\n" % vectors.shape + b"".join(rows)


def fasttext_vec(words: list[bytes], vectors: np.ndarray) -> bytes:
    """fastText's .vec: the header, then per row word, " ", each value at setprecision(5) followed by " "."""
    rows = [w + b" " + b"".join(b"%.5g " % v for v in row) + b"\n" for w, row in zip(words, vectors.tolist())]
    return b"%d %d\n" % vectors.shape + b"".join(rows)


def glove(words: list[bytes], vectors: np.ndarray) -> bytes:
    """GloVe's vectors.txt: no header; per row "%s", then N times " %lf", then "\\n"."""
    return b"".join(w + b"".join(b" %f" % v for v in row) + b"\n" for w, row in zip(words, vectors.tolist()))


# layout -> (writer, decimals format or None for exact float32, has a header)
LAYOUTS = {"c-text": (c_text, "%f", True), "c-binary": (c_binary, None, True),
           "fasttext-vec": (fasttext_vec, "%.5g", True), "glove": (glove, "%f", False)}


def stands_for(vectors: np.ndarray, decimals: str | None) -> np.ndarray:
    """The float32 values a file of this layout holds for `vectors`."""
    if decimals is None:
        return vectors.astype(np.float32)
    return np.array([[float(decimals % v) for v in row] for row in vectors.tolist()], dtype=np.float32)


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def write(path: Path, data: bytes) -> Path:
    """Write data, compressed when the name ends in .gz or .bz2."""
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    with opener(path, "wb") as f:
        f.write(data)
    return path
