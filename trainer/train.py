"""Training orchestration: TrainConfig, jobs, worker threads, learning-rate schedule, progress, saving."""
from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer import artifact, available_cores

OBJECTIVES = ("negative-sampling", "naive-softmax")



def _flag(default, help_text, **argparse_options):
    return field(default=default, metadata={"help": help_text, **argparse_options})


class TrainConfigError(ValueError):
    """A training setting that cannot be used, alone or with this corpus; the message names it."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; saved whole into the model's meta.json."""

    objective: str = _flag("negative-sampling", "training objective", choices=OBJECTIVES)
    dim: int = _flag(100, "dimension N of the word vectors")
    window: int = _flag(5, "maximal window; each centre word draws its window uniformly from 1..WINDOW")
    negative: int = _flag(5, "negative samples K per centre word, shared by its window")
    ns_exponent: float = _flag(0.75, "negatives are drawn from count**NS_EXPONENT")
    sample: float = _flag(1e-3, "subsampling threshold of frequent words (word2vec's formula; 0 = off)")
    min_count: int = _flag(5, "ignore words seen fewer times")
    max_vocab: int | None = _flag(None, "keep at most this many most frequent words (default: no limit)")
    alpha: float = _flag(0.025, "initial learning rate; decays linearly to ALPHA * 1e-4 over all epochs")
    epochs: int = _flag(5, "passes over the corpus")
    workers: int = _flag(available_cores(), "training threads (lock-free Hogwild updates)")
    seed: int = _flag(1, "random seed; with --workers 1 a seed reproduces a run bit for bit")
    max_softmax_vocab: int = _flag(20_000, "largest vocabulary the naive-softmax objective accepts")
    max_sentence_length: int = _flag(10_000, "longer lines are cut into pieces of this many tokens")
    job_words: int = _flag(20_000, "words per unit of work handed to a thread")

    def __post_init__(self):
        checks = {
            "objective": self.objective in OBJECTIVES, "dim": self.dim >= 1, "window": self.window >= 1,
            "negative": self.negative >= 1, "ns_exponent": np.isfinite(self.ns_exponent),
            "sample": self.sample >= 0, "min_count": self.min_count >= 1,
            "max_vocab": self.max_vocab is None or self.max_vocab >= 1,
            "alpha": 0 < self.alpha < 10, "epochs": self.epochs >= 1, "workers": self.workers >= 1,
            "max_softmax_vocab": self.max_softmax_vocab >= 1, "max_sentence_length": self.max_sentence_length >= 2,
            "job_words": self.job_words >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TrainConfigError(f"invalid setting {bad[0]}={getattr(self, bad[0])!r}")

    @property
    def min_alpha(self) -> float:
        return self.alpha * 1e-4


@dataclass
class TrainResult:
    """What a run produced: the two matrices and the record that goes into meta.json."""

    input_vectors: np.ndarray  # float32 (V, N)
    output_vectors: np.ndarray  # float32 (V, N)
    epochs_done: float
    loss_per_epoch: list[float]  # mean loss per centre-context pair of each finished epoch
    loss_history: list[list[float]]  # [words processed, mean loss per pair since the previous point]
    seconds: float
    words_per_second: float
    interrupted: bool


def initial_vectors(vocab_size: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """word2vec's start: W_in uniform in (-0.5/N, 0.5/N), W_out zeros; both float32 (V, N)."""
    rng = np.random.default_rng(seed)
    w_in = rng.random((vocab_size, dim), dtype=np.float32)
    w_in -= 0.5  # in place: no full-size temporary (3 of them were 11 GB at 3,000,000 x 300)
    w_in /= dim
    return w_in, np.zeros((vocab_size, dim), dtype=np.float32)


def make_jobs(sentence_starts: np.ndarray, job_words: int) -> np.ndarray:
    """Group whole sentences into jobs of about job_words words: int64 (J+1,) sentence boundaries."""
    total = int(sentence_starts[-1])
    marks = np.searchsorted(sentence_starts, np.arange(0, total, job_words), side="left")
    return np.unique(np.concatenate([marks, [len(sentence_starts) - 1]])).astype(np.int64)


class _Schedule:
    """The progress counter shared by the threads: hands out jobs in order, each with its slice of the
    linear learning-rate decay, and gathers their losses. Jobs of epoch e+1 may start while the last
    jobs of epoch e finish (no barrier), as in word2vec."""

    def __init__(self, config: TrainConfig, n_jobs: int, job_words: np.ndarray, stop: threading.Event):
        self.config, self.n_jobs, self.job_words, self.stop = config, n_jobs, job_words, stop
        self.stop_flag = np.zeros(1, dtype=np.uint8)  # `stop` as the kernels read it, at every centre word
        self.total_words = int(job_words.sum()) * config.epochs
        self.lock = threading.Lock()
        self.next = 0
        self.words_started = self.words_done = 0
        self.epoch_loss = np.zeros(config.epochs)
        self.epoch_pairs = np.zeros(config.epochs, dtype=np.int64)
        self.epoch_jobs_left = np.full(config.epochs, n_jobs)
        self.recent_loss, self.recent_pairs = 0.0, 0
        self.error: BaseException | None = None

    def alpha_at(self, words: int) -> float:
        c = self.config
        return c.alpha - (c.alpha - c.min_alpha) * min(1.0, words / self.total_words)

    def take(self):
        """The next (epoch, job, alpha_lo, alpha_hi, seed), or None when done or told to stop."""
        with self.lock:
            if self.stop.is_set() or self.next >= self.n_jobs * self.config.epochs:
                return None
            epoch, job = divmod(self.next, self.n_jobs)
            self.next += 1
            lo = self.words_started
            self.words_started += int(self.job_words[job])
        seed = (self.config.seed * 0x9E3779B1 + epoch * 1_000_003 + job) % (1 << 63)
        return epoch, job, self.alpha_at(lo), self.alpha_at(self.words_started), seed

    def finish(self, epoch: int, job: int, loss: float, pairs: int, words: int) -> None:
        """Record a job's result; `words` is less than the job's words when it was stopped part-way."""
        with self.lock:
            self.words_done += int(words)
            self.epoch_loss[epoch] += loss
            self.epoch_pairs[epoch] += pairs
            if int(words) == int(self.job_words[job]):
                self.epoch_jobs_left[epoch] -= 1
            self.recent_loss += loss
            self.recent_pairs += pairs

    def take_recent_loss(self) -> float:
        """Mean loss per pair since the last call (nan if nothing was trained since)."""
        with self.lock:
            loss, pairs = self.recent_loss, self.recent_pairs
            self.recent_loss, self.recent_pairs = 0.0, 0
        return loss / pairs if pairs else float("nan")


def _job_runner(corpus, config: TrainConfig, w_in, w_out, stop_flag):
    """A function (job boundaries, alphas, seed) -> (loss, pairs, words) calling the objective's kernel."""
    from trainer import kernels
    from trainer.vocab import keep_probabilities, noise_alias_table

    keep = keep_probabilities(corpus.vocab.counts, config.sample)
    starts, tokens = corpus.sentence_starts, corpus.tokens
    if config.objective == "naive-softmax":
        def kernel(job_tokens, job_starts, alpha_lo, alpha_hi, seed):
            return kernels.naive_softmax_job(job_tokens, job_starts, w_in, w_out, keep, config.window,
                                             alpha_lo, alpha_hi, seed, stop_flag)
    else:
        accept, alias = noise_alias_table(corpus.vocab.counts, config.ns_exponent)

        def kernel(job_tokens, job_starts, alpha_lo, alpha_hi, seed):
            return kernels.sgns_job(job_tokens, job_starts, w_in, w_out, keep, accept, alias,
                                    config.window, config.negative, alpha_lo, alpha_hi, seed, stop_flag)

    def run(first_sentence: int, end_sentence: int, alpha_lo: float, alpha_hi: float, seed: int):
        lo, hi = int(starts[first_sentence]), int(starts[end_sentence])
        job_starts = np.asarray(starts[first_sentence:end_sentence + 1], dtype=np.int64) - lo
        return kernel(np.asarray(tokens[lo:hi]), job_starts, alpha_lo, alpha_hi, seed)
    return run


def _worker(schedule: _Schedule, jobs: np.ndarray, run) -> None:
    try:
        while (task := schedule.take()) is not None:
            epoch, job, alpha_lo, alpha_hi, seed = task
            loss, pairs, words = run(int(jobs[job]), int(jobs[job + 1]), alpha_lo, alpha_hi, seed)
            schedule.finish(epoch, job, loss, pairs, words)
    except BaseException as exc:  # surfaced by the main thread
        schedule.error = exc
        schedule.stop.set()


def train_vectors(corpus, config: TrainConfig, progress=None, stop: threading.Event | None = None) -> TrainResult:
    """Train W_in and W_out on an encoded corpus (trainer.corpus.EncodedCorpus) with config.workers
    threads. Setting `stop` ends the run within a fraction of a second: the kernels stop before the next
    centre word, keeping the sentences they finished."""
    from trainer.progress import Progress

    stop = stop or threading.Event()
    w_in, w_out = initial_vectors(len(corpus.vocab), config.dim, config.seed)
    jobs = make_jobs(corpus.sentence_starts, config.job_words)
    job_words = np.diff(np.asarray(corpus.sentence_starts)[jobs])
    schedule = _Schedule(config, len(jobs) - 1, job_words, stop)
    progress = progress or Progress(schedule.total_words, config.epochs, "quiet")
    run = _job_runner(corpus, config, w_in, w_out, schedule.stop_flag)
    started = time.perf_counter()
    threads = [threading.Thread(target=_worker, args=(schedule, jobs, run), daemon=True, name=f"train-{i}")
               for i in range(config.workers)]
    for thread in threads:
        thread.start()
    history, reported = _monitor(threads, schedule, progress)
    seconds = time.perf_counter() - started
    progress.close()
    if schedule.error is not None:
        raise schedule.error
    finished = [e for e in range(config.epochs) if schedule.epoch_jobs_left[e] == 0]
    loss_per_epoch = [float(schedule.epoch_loss[e] / max(1, schedule.epoch_pairs[e])) for e in finished]
    return TrainResult(w_in, w_out, schedule.words_done / max(1, int(job_words.sum())), loss_per_epoch,
                       history, seconds, schedule.words_done / max(seconds, 1e-9),
                       schedule.words_done < schedule.total_words)


def _monitor(threads, schedule: _Schedule, progress) -> tuple[list, int]:
    """Runs in the main thread until the workers end: progress, per-epoch lines, loss history points."""
    history, reported, next_mark = [], 0, 0
    step = max(1, schedule.total_words // 100)
    while alive := [t for t in threads if t.is_alive()]:
        alive[0].join(0.1)  # returns as soon as the last worker ends, so the timing is not rounded up
        if schedule.stop.is_set():
            schedule.stop_flag[0] = 1
        done = schedule.words_done
        if done >= next_mark:
            loss = schedule.take_recent_loss()
            if not np.isnan(loss):
                history.append([done, loss])
            next_mark = done + step
            progress.update(done, loss, schedule.alpha_at(done))
        reported = _report_epochs(schedule, progress, reported)
    loss = schedule.take_recent_loss()
    if not np.isnan(loss):
        history.append([schedule.words_done, loss])
    progress.update(schedule.words_done, loss, schedule.alpha_at(schedule.words_done))
    return history, _report_epochs(schedule, progress, reported)


def _report_epochs(schedule: _Schedule, progress, reported: int) -> int:
    while reported < schedule.config.epochs and schedule.epoch_jobs_left[reported] == 0:
        progress.epoch_done(reported, schedule.epoch_loss[reported] / max(1, schedule.epoch_pairs[reported]))
        reported += 1
    return reported


# ------------------------------------------------------------------------------------ before and after

def check_vocabulary_size(config: TrainConfig, vocab_size: int) -> None:
    """Raise TrainConfigError when the objective cannot train a vocabulary of `vocab_size` words."""
    if config.objective == "naive-softmax" and vocab_size > config.max_softmax_vocab:
        raise TrainConfigError(f"the naive-softmax objective costs O(V) per word: vocabulary of {vocab_size} "
                               f"words exceeds --max-softmax-vocab {config.max_softmax_vocab} (raise the limit, "
                               "raise --min-count, set --max-vocab, or use negative sampling)")


def check_writable(out: str | os.PathLike) -> None:
    """Fail before hours of training, not after, when the model cannot be written at `out`: ModelError when
    `out` is something other than a model folder, OSError when its folder cannot be written."""
    out = Path(out)
    artifact.check_replaceable(out)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.probe-", dir=parent):
        pass


def save_model(out: str | os.PathLike, config: TrainConfig, corpus, corpus_path, result: TrainResult) -> Path:
    """Write the trained model folder at `out` through trainer.artifact (atomically: a previous model stays
    whole if this fails), with config, corpus statistics and training record in meta.json."""
    return artifact.save(out, corpus.vocab.words, corpus.vocab.counts, result.input_vectors,
                         result.output_vectors, _meta(config, corpus, corpus_path, result))


def _meta(config: TrainConfig, corpus, corpus_path, result: TrainResult) -> dict:
    from trainer.phrase_table import describe

    return {
        "objective": config.objective,
        "config": dataclasses.asdict(config),
        # phrases: the table found beside the corpus (CORPUS.phrases.tsv, as `corpus phrases` writes it), or None
        "corpus": {"path": str(corpus_path), **corpus.stats, "read_seconds": round(corpus.seconds, 3),
                   "phrases": describe(corpus_path)},
        "training": {"epochs_done": round(result.epochs_done, 4), "interrupted": result.interrupted,
                     "seconds": round(result.seconds, 3), "words_per_second": round(result.words_per_second),
                     "loss_per_epoch": result.loss_per_epoch, "loss_history": result.loss_history},
    }
