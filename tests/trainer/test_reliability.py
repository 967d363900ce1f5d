"""Reliability of `python -m trainer train`: signals stop it at a safe point, a failed write leaves the
previous model as it was, and bad corpora are refused with a clear message before anything is written."""
from __future__ import annotations

import builtins
import errno
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.planted import CONTEXTS, GROUPS, MEMBERS, write_planted_corpus, write_planted_single_line
from tests.trainer.test_corpus import ERROR_CASES, make_case
from trainer import artifact
from trainer.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 2.0  # seconds from a signal to the end of the process: the requirement
EPOCHS = 40  # on the long corpus, far more than the seconds a test waits
LONG = ["--dim", "24", "--epochs", str(EPOCHS), "--min-count", "1", "--workers", "2"]
SMALL = ["--dim", "24", "--epochs", "1", "--min-count", "1", "--quiet"]


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    """2M tokens on one line: the first epoch ends within seconds, all EPOCHS of them take far longer."""
    return write_planted_single_line(tmp_path_factory.mktemp("long") / "line.txt", 2_000_000)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted_corpus(tmp_path_factory.mktemp("planted") / "planted.txt")


def previous_model(path: Path) -> dict[str, bytes]:
    """Save a small model folder at `path` (the one a run must not damage); returns snapshot(path)."""
    rng = np.random.default_rng(0)
    artifact.save(path, ["old", "model"], [2, 1], rng.normal(size=(2, 3)), rng.normal(size=(2, 3)),
                  {"objective": "negative-sampling"})
    return snapshot(path)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------ signals

class Run:
    """A trainer process, its merged stdout and stderr collected line by line as they come."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        """Return once a line holding `needle` was printed; fail if the process ends or stays silent."""
        deadline = time.monotonic() + timeout
        try:
            while (line := self.lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
                self.seen.append(line)
                if needle in line:
                    return
        except queue.Empty:
            pytest.fail(f"{needle!r} not printed within {timeout} s:\n{''.join(self.seen)}")
        pytest.fail(f"ended with {self.proc.wait()} before printing {needle!r}:\n{self.output()}")

    def signal(self, *signums: int) -> int:
        """Send the signals back to back; the exit status, which must come within DEADLINE."""
        for signum in signums:
            self.proc.send_signal(signum)
        sent = time.monotonic()
        try:
            status = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {DEADLINE} s after {[signal.Signals(s).name for s in signums]}")
        assert time.monotonic() - sent <= DEADLINE
        return status

    def output(self) -> str:
        self.reader.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get() or "")
        return "".join(self.seen)


@pytest.fixture
def start():
    """start(argv) -> Run; processes still running at the end of the test are killed."""
    runs: list[Run] = []

    def start(argv: list[str]) -> Run:
        runs.append(Run(argv))
        return runs[-1]
    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
        run.proc.wait()
        run.reader.join()
        run.proc.stdout.close()


def train_argv(corpus: Path, out: Path, *options: str) -> list[str]:
    return ["-m", "trainer", "train", str(corpus), "--out", str(out), *options]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_and_the_model_is_saved_marked_interrupted(tmp_path, long_corpus, start,
                                                                           signum):
    out = tmp_path / "m"
    previous_model(out)
    run = start(train_argv(long_corpus, out, *LONG))
    run.wait_for("epoch 1/")  # not on a terminal: one line per epoch
    assert run.signal(signum) == 128 + signum
    model = artifact.verify(out)  # the new model, complete, in place of the previous one
    assert model.vocab_size == GROUPS * (MEMBERS + CONTEXTS) and model.dim == 24
    training = model.meta["training"]
    assert training["interrupted"] is True
    assert 1 <= training["epochs_done"] < EPOCHS
    assert len(training["loss_per_epoch"]) == int(training["epochs_done"])
    output = run.output()
    assert f"{signal.Signals(signum).name}: stopping at the next safe point" in output
    assert f"saved {out}: INTERRUPTED after " in output
    assert names(tmp_path) == ["m"]  # no temporary folder left beside it


@pytest.mark.slow
def test_a_second_signal_ends_the_process_at_once_and_saves_nothing(tmp_path, long_corpus, start):
    out = tmp_path / "m"
    before = previous_model(out)
    run = start(train_argv(long_corpus, out, *LONG))
    run.wait_for("epoch 1/")
    # Back to back: SIGINT's handler runs first (signal number order) and SIGTERM's finds it done.
    assert run.signal(signal.SIGINT, signal.SIGTERM) == -signal.SIGTERM
    assert snapshot(out) == before
    artifact.verify(out)
    assert names(tmp_path) == ["m"]
    assert f"saved {out}" not in run.output()


# Two signals arrive while the model folder is being written (at its first fsync), after training ended.
SIGNALS_WHILE_SAVING = """
import os, signal, sys
from trainer.cli import main
fsync = os.fsync
def fsync_then_two_signals(fd):
    fsync(fd)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
os.fsync = fsync_then_two_signals
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_second_signal_while_saving_removes_the_unfinished_folder(tmp_path, planted, start):
    out = tmp_path / "m"
    before = previous_model(out)
    run = start(["-c", SIGNALS_WHILE_SAVING, "train", str(planted), "--out", str(out), *SMALL])
    assert run.proc.wait(timeout=120) in (-signal.SIGINT, -signal.SIGTERM), run.output()  # ended by the second
    assert snapshot(out) == before
    assert names(tmp_path) == ["m"]


# ------------------------------------------------------------------------------------------ failed writes

def failing(monkeypatch, owner, name: str, error: type[OSError], code: int, when) -> None:
    """Make owner.name raise error(code) on the calls for which when(*args) is true."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if when(*args, **kwargs):
            raise error(code, os.strerror(code))
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, wrapper)


def disk_full_writing_output_vectors(monkeypatch):
    # raised on the thread that writes the array's blocks, reported by the one that saves
    failing(monkeypatch, artifact, "_start_writeback", OSError, errno.ENOSPC,
            lambda fd, *_: os.readlink(f"/proc/self/fd/{fd}").endswith(artifact.OUTPUT_FILE))


def disk_full_reported_by_fsync(monkeypatch):
    failing(monkeypatch, os, "fsync", OSError, errno.ENOSPC,
            lambda fd: os.readlink(f"/proc/self/fd/{fd}").endswith(artifact.META_FILE))


def permission_denied_creating_vocab(monkeypatch):
    failing(monkeypatch, builtins, "open", PermissionError, errno.EACCES,
            lambda file, mode="r", *_, **__: str(file).endswith(artifact.VOCAB_FILE) and "w" in mode)


def permission_denied_renaming_into_place(monkeypatch):
    monkeypatch.setattr(artifact, "_rename_exchange", lambda a, b: False)  # a file system without it
    failing(monkeypatch, os, "rename", PermissionError, errno.EACCES,
            lambda source, target: Path(source).name.startswith(".m.tmp-"))


@pytest.mark.parametrize("fail, problem", [
    (disk_full_writing_output_vectors, "No space left on device"),
    (disk_full_reported_by_fsync, "No space left on device"),
    (permission_denied_creating_vocab, "Permission denied"),
    (permission_denied_renaming_into_place, "Permission denied"),
], ids=lambda case: getattr(case, "__name__", None))
def test_a_failed_write_leaves_the_previous_model_as_it_was(tmp_path, planted, capsys, monkeypatch, fail,
                                                            problem):
    out = tmp_path / "m"
    before = previous_model(out)
    fail(monkeypatch)
    code = main(["train", str(planted), "--out", str(out), *SMALL])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: could not write {out}: " in err and problem in err
    assert snapshot(out) == before
    artifact.verify(out)
    assert names(tmp_path) == ["m"]


@pytest.mark.parametrize("make", [lambda d: d.mkdir() or (d / "notes.txt").write_text("mine"),
                                  lambda d: d.write_text("mine")], ids=["folder", "file"])
def test_what_is_not_a_model_folder_is_never_replaced(tmp_path, planted, capsys, make):
    out = tmp_path / "notes"
    make(out)
    before = sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert main(["train", str(planted), "--out", str(out), *SMALL]) == 1
    assert f"{out}: exists and is not a model folder" in capsys.readouterr().err
    with pytest.raises(artifact.ModelError, match="not a model folder"):
        artifact.save(out, ["a"], [1], np.ones((1, 2)))
    assert sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()) == before
    assert names(tmp_path) == ["notes"]


# ------------------------------------------------------------------------------------------- bad corpora

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
NOISE = np.random.default_rng(0).integers(1, 256, 100_000, dtype=np.uint8).tobytes()  # no NUL byte at all
MORE_CASES = {  # name: (file name, content, what the message says)
    "png": ("image.png", PNG_HEAD + NOISE, "looks binary (NUL bytes"),
    "random-bytes-without-nul": ("noise.txt", NOISE, "invalid UTF-8 or control characters"),
    "cp1251-text": ("ru.txt", "съешь же ещё этих мягких булок\n".encode("cp1251") * 500, "is not UTF-8"),
}


def bad_corpus(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A corpus of test_corpus.ERROR_CASES or MORE_CASES in tmp_path, and what the message says."""
    if case in ERROR_CASES:
        return make_case(tmp_path, case)
    name, content, message = MORE_CASES[case]
    (tmp_path / name).write_bytes(content)
    return tmp_path / name, message


@pytest.mark.parametrize("case", [*ERROR_CASES, *MORE_CASES])
def test_bad_corpora_are_refused_before_anything_is_written(tmp_path, capsys, case):
    corpus, message = bad_corpus(tmp_path, case)
    before = names(tmp_path)
    assert main(["train", str(corpus), "--out", str(tmp_path / "m"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err and str(corpus) in captured.err
    assert captured.out == ""
    assert names(tmp_path) == before


def test_a_pipe_is_refused_rather_than_read_in_part(tmp_path, capsys):
    read, write = os.pipe()
    os.write(write, b"the cat sat on the mat\n" * 1000)  # less than a pipe holds
    os.close(write)
    try:
        assert main(["train", f"/dev/fd/{read}", "--out", str(tmp_path / "m"), "--quiet"]) == 1
    finally:
        os.close(read)
    assert "not a regular file" in capsys.readouterr().err
    assert names(tmp_path) == []
