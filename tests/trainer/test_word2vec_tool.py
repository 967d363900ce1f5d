"""The original word2vec C tool, really run: its text and binary outputs and its vocabulary file import to
the same model, and its `distance` program reads our binary export and finds the neighbours we compute.

The tool is built once from the C source in the `word2vec` sdist on PyPI, as `make bench-train` does, and
kept in .cache/bin (a few seconds the first time; a failed build fails these tests)."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.planted import group_precision, member, write_planted_corpus
from trainer import artifact
from trainer.cli import main

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
SDIST = "word2vec-0.11.1"
FLAGS = ["-lm", "-pthread", "-Ofast", "-march=native", "-funroll-loops", "-Wno-unused-result"]  # the Makefile's


def _built(program: str) -> Path:
    """.cache/bin/PROGRAM, compiled from the sdist's PROGRAM.c unless already there."""
    binary = CACHE / "bin" / program
    if binary.exists():
        return binary
    tarball = CACHE / "sdist" / f"{SDIST}.tar.gz"
    if not tarball.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
                        "--dest", str(tarball.parent), "word2vec==0.11.1"], check=True)
    member_name = f"{SDIST}/word2vec/includes/{program}.c"
    with tarfile.open(tarball) as archive:
        archive.extract(member_name, CACHE / "sdist", filter="data")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".{program}.{os.getpid()}")  # renamed into place: a parallel build is harmless
    subprocess.run(["gcc", str(CACHE / "sdist" / member_name), "-o", str(partial), *FLAGS], check=True)
    os.replace(partial, binary)
    return binary


@pytest.fixture(scope="module")
def word2vec_c() -> Path:
    return _built("word2vec")


@pytest.fixture(scope="module")
def distance_c() -> Path:
    return _built("distance")


@pytest.fixture(scope="module")
def c_outputs(word2vec_c, tmp_path_factory):
    """The tool trained once on the planted corpus: its text vectors, binary vectors and vocabulary."""
    folder = tmp_path_factory.mktemp("word2vec-c")
    corpus = write_planted_corpus(folder / "corpus.txt")
    outputs = {}
    for binary in (0, 1):
        out = folder / ("vectors.bin" if binary else "vectors.txt")
        subprocess.run([str(word2vec_c), "-train", str(corpus), "-output", str(out), "-cbow", "0", "-size", "16",
                        "-window", "4", "-negative", "5", "-hs", "0", "-sample", "0", "-min-count", "1",
                        "-threads", "1", "-iter", "5", "-binary", str(binary),
                        "-save-vocab", str(folder / "vocab.txt")],
                       check=True, stdout=subprocess.DEVNULL)
        outputs[binary] = out
    return outputs[0], outputs[1], folder / "vocab.txt"


def test_both_outputs_of_the_c_tool_import_to_the_same_model(c_outputs, tmp_path):
    text, binary, vocab = c_outputs
    assert text.read_bytes().split(b"\n")[1].endswith(b" ")  # the tool's own layout: a space ends each row
    for source in (text, binary):
        assert main(["import", str(source), str(tmp_path / source.suffix[1:]), "--counts", str(vocab)]) == 0
    from_text, from_binary = artifact.verify(tmp_path / "txt"), artifact.verify(tmp_path / "bin")
    listed = [line.rsplit(" ", 1) for line in vocab.read_text().splitlines()]
    assert from_text.words == from_binary.words == tuple(w for w, _ in listed)
    assert from_text.words[0] == "</s>" and from_text.counts.tolist() == [int(c) for _, c in listed]
    np.testing.assert_array_equal(from_binary.counts, from_text.counts)
    np.testing.assert_allclose(from_text.input_vectors, from_binary.input_vectors, atol=5e-7)  # "%lf": 6 decimals
    assert group_precision(from_binary.words, from_binary.input_vectors) > 0.9  # trained, not noise


def test_distance_reads_our_binary_export_and_finds_our_neighbours(c_outputs, distance_c, tmp_path):
    _, binary, vocab = c_outputs
    assert main(["import", str(binary), str(tmp_path / "m"), "--counts", str(vocab)]) == 0
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "ours.bin")]) == 0
    model = artifact.load(tmp_path / "m")
    word = member(0, 0)
    shown = subprocess.run([str(distance_c), str(tmp_path / "ours.bin")], input=f"{word}\nEXIT\n",
                           capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in shown.split("-" * 72)[1].splitlines() if line.strip()]
    units = model.input_vectors / np.linalg.norm(model.input_vectors, axis=1, keepdims=True)
    cosines = units @ units[model.index[word]]
    cosines[model.index[word]] = -np.inf
    best = np.argsort(-cosines)[:5]
    assert [r[0] for r in rows[:5]] == [model.words[i] for i in best]
    np.testing.assert_allclose([float(r[1]) for r in rows[:5]], cosines[best], atol=2e-6)
