"""Training end to end: planted structure is learnt, seeds reproduce, bad inputs fail cleanly."""
import json

import numpy as np
import pytest

from tests.planted import group_precision, write_planted_corpus
from trainer import artifact
from trainer.cli import main
from trainer.train import TrainConfig, _Schedule, make_jobs, train_vectors

SMALL = ["--dim", "24", "--epochs", "4", "--min-count", "1", "--quiet"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted_corpus(tmp_path_factory.mktemp("corpus") / "planted.txt")


def _train(corpus, out, *extra):
    return main(["train", str(corpus), "--out", str(out), *SMALL, *extra])


@pytest.mark.parametrize("objective", ["negative-sampling", "naive-softmax"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planted_groups_are_nearest_neighbours(planted, tmp_path, objective, seed):
    assert _train(planted, tmp_path / "m", "--objective", objective, "--seed", str(seed)) == 0
    model = artifact.verify(tmp_path / "m")
    assert model.objective == objective
    # Chance level is (MEMBERS-1)/(GROUPS*MEMBERS-1) ~ 0.14.
    assert group_precision(model.words, model.input_vectors) >= 0.9


@pytest.mark.parametrize("objective", ["negative-sampling", "naive-softmax"])
def test_loss_falls(planted, tmp_path, objective):
    assert _train(planted, tmp_path / "m", "--objective", objective, "--epochs", "3") == 0
    losses = artifact.load(tmp_path / "m").meta["training"]["loss_per_epoch"]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_one_worker_and_a_seed_reproduce_bit_for_bit(planted, tmp_path):
    for name in ("a", "b"):
        assert _train(planted, tmp_path / name, "--workers", "1", "--seed", "7") == 0
    a, b = artifact.load(tmp_path / "a"), artifact.load(tmp_path / "b")
    np.testing.assert_array_equal(a.input_vectors, b.input_vectors)
    np.testing.assert_array_equal(a.output_vectors, b.output_vectors)
    assert _train(planted, tmp_path / "c", "--workers", "1", "--seed", "8") == 0
    assert not np.array_equal(a.input_vectors, artifact.load(tmp_path / "c").input_vectors)


def test_meta_records_config_corpus_and_timing(planted, tmp_path):
    assert _train(planted, tmp_path / "m", "--workers", "2") == 0
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["config"]["dim"] == 24 and meta["config"]["workers"] == 2
    assert meta["corpus"]["raw_tokens"] == 3000 * 12
    assert meta["training"]["epochs_done"] == 4 and meta["training"]["interrupted"] is False
    assert meta["training"]["words_per_second"] > 0 and meta["training"]["seconds"] > 0
    counts = artifact.load(tmp_path / "m").counts
    assert counts.sum() == 3000 * 12 and (np.diff(counts) <= 0).all()


def test_initialisation_follows_word2vec(planted):
    from trainer.corpus import encode_corpus
    corpus = encode_corpus(planted, min_count=1)
    config = TrainConfig(dim=16, epochs=1, alpha=1e-12, workers=1)  # a learning rate that changes nothing
    result = train_vectors(corpus, config)
    assert np.abs(result.input_vectors).max() <= 0.5 / 16
    assert np.abs(result.output_vectors).max() < 1e-9


def test_jobs_cover_every_sentence_once():
    # Sentences of 5, 2, 23, 1, 29 words: a boundary at the first sentence starting at or after 0, 10, 20...
    starts = np.array([0, 5, 7, 30, 31, 60], dtype=np.int64)
    np.testing.assert_array_equal(make_jobs(starts, 10), [0, 3, 5])
    rng = np.random.default_rng(0)
    for job_words in (1, 50, 100, 997, 10**6):
        lengths = rng.integers(1, 31, 2000)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        jobs = make_jobs(starts, job_words)
        assert jobs.dtype == np.int64 and jobs[0] == 0 and jobs[-1] == len(lengths) and (np.diff(jobs) > 0).all()
        owner = np.repeat(np.arange(len(jobs) - 1), np.diff(jobs))  # the job of each sentence
        assert len(owner) == len(lengths)  # every sentence in exactly one job
        sizes = np.bincount(owner, weights=lengths).astype(np.int64)
        assert sizes.sum() == lengths.sum()
        # A job's ends lie within one sentence past multiples of job_words: sizes within a sentence of job_words.
        assert (np.abs(sizes[:-1] - job_words) < lengths.max()).all()
        assert 0 < sizes[-1] < job_words + lengths.max()
        assert lengths.sum() / (job_words + lengths.max()) < len(sizes) <= np.ceil(lengths.sum() / job_words)


def _all_tasks(config, job_words, threads=1):
    """Every (epoch, job, alpha_lo, alpha_hi, seed) the shared schedule hands out, taken by `threads` threads."""
    import threading
    schedule = _Schedule(config, len(job_words), np.asarray(job_words), threading.Event())
    tasks, lock = [], threading.Lock()

    def take_all():
        while (task := schedule.take()) is not None:
            with lock:
                tasks.append(task)
    workers = [threading.Thread(target=take_all) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return tasks


@pytest.mark.parametrize("threads", [1, 4])
def test_learning_rate_falls_linearly_over_all_epochs(threads):
    config = TrainConfig(alpha=0.05, epochs=3, workers=threads)
    job_words = [7, 3, 10, 1, 9]  # 30 words an epoch, 90 in all
    tasks = sorted(_all_tasks(config, job_words, threads), key=lambda t: -t[2])  # in the order handed out
    assert [(epoch, job) for epoch, job, *_ in tasks] == [(e, j) for e in range(3) for j in range(5)]
    words = np.concatenate([[0], np.cumsum(np.tile(job_words, 3))])  # words handed out before each job
    expected = 0.05 - (0.05 - 0.05e-4) * words / 90
    np.testing.assert_allclose([t[2] for t in tasks], expected[:-1], rtol=1e-12)
    np.testing.assert_allclose([t[3] for t in tasks], expected[1:], rtol=1e-12)
    assert tasks[0][2] == 0.05 and tasks[-1][3] == pytest.approx(0.05e-4, rel=1e-12)
    assert tasks[5][2] == pytest.approx(0.05 - (0.05 - 0.05e-4) / 3)  # epoch 1 goes on from epoch 0's end


def test_subsampling_is_drawn_afresh_each_epoch():
    from trainer import kernels
    # 400 distinct words, each kept with probability 1/2. A kept word is a context of its kept neighbour,
    # so its row of w_in moves; a dropped one never does: the moved rows are the words kept.
    n, epochs = 400, 4
    tokens, starts = np.arange(n, dtype=np.int32), np.array([0, n], dtype=np.int64)
    keep, accept, alias = np.full(n, 0.5, np.float32), np.ones(n, np.float32), np.arange(n, dtype=np.int32)
    tasks = _all_tasks(TrainConfig(epochs=epochs, seed=3), [n])

    def kept(seed):
        rng = np.random.default_rng(0)
        w_in = rng.normal(size=(n, 8)).astype(np.float32)
        w_out = rng.normal(size=(n, 8)).astype(np.float32)
        before = w_in.copy()
        kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, 1, 2, 0.1, 0.1, seed,
                         np.zeros(1, np.uint8))
        return set(np.flatnonzero(np.any(w_in != before, axis=1)))
    drawn = [kept(seed) for _, _, _, _, seed in tasks]
    assert drawn[0] == kept(tasks[0][4])  # the same seed draws the same words: what differs is the draw
    sd_kept, sd_both = np.sqrt(n * 0.25), np.sqrt(n * 0.25 * 0.75)
    for a in range(epochs):
        assert abs(len(drawn[a]) - n / 2) < 5 * sd_kept
        for b in range(a):  # independent draws share about a quarter of the words, not half
            assert abs(len(drawn[a] & drawn[b]) - n / 4) < 5 * sd_both


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("alpha beta gamma\n", "min"),
])
def test_bad_corpora_fail_without_writing(tmp_path, capsys, content, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text(content)
    assert main(["train", str(corpus), "--out", str(tmp_path / "m"), "--quiet"]) == 1
    assert message in capsys.readouterr().err.lower()
    assert not (tmp_path / "m").exists()


def test_missing_corpus_fails_without_writing(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "m")]) == 1
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_naive_softmax_refuses_a_vocabulary_over_its_limit(planted, tmp_path, capsys):
    code = _train(planted, tmp_path / "m", "--objective", "naive-softmax", "--max-softmax-vocab", "10")
    assert code == 1 and "--max-softmax-vocab 10" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_bad_settings_are_refused(planted, tmp_path, capsys):
    assert _train(planted, tmp_path / "m", "--window", "0") == 1
    assert "window" in capsys.readouterr().err


def test_existing_model_is_replaced_only_by_a_complete_one(planted, tmp_path):
    assert _train(planted, tmp_path / "m", "--seed", "1") == 0
    before = artifact.verify(tmp_path / "m").input_vectors.copy()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", str(empty), "--out", str(tmp_path / "m"), "--quiet"]) == 1
    np.testing.assert_array_equal(artifact.verify(tmp_path / "m").input_vectors, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "m"]  # no temporary leftovers


def test_non_utf8_bytes_and_gzip_train(tmp_path):
    import gzip
    text = write_planted_corpus(tmp_path / "p.txt", sentences=600).read_bytes()
    corpus = tmp_path / "p.txt.gz"
    corpus.write_bytes(gzip.compress(text.replace(b"g0c1", b"g0c1\xff\xfe", 50)))
    assert _train(corpus, tmp_path / "m") == 0
    assert artifact.verify(tmp_path / "m").vocab_size > 30


def test_a_ten_million_token_single_line_trains(tmp_path):
    from tests.planted import write_planted_single_line
    corpus = write_planted_single_line(tmp_path / "line.txt", 10_000_000)
    assert b"\n" not in corpus.read_bytes()
    assert main(["train", str(corpus), "--out", str(tmp_path / "m"), "--dim", "24", "--epochs", "1",
                 "--min-count", "1", "--quiet"]) == 0
    model = artifact.verify(tmp_path / "m")
    assert model.meta["corpus"]["raw_tokens"] == 10_000_000
    assert model.meta["training"]["epochs_done"] == 1
    assert group_precision(model.words, model.input_vectors) >= 0.9


def test_a_workdir_holds_the_token_ids_and_changes_nothing_of_the_model(planted, tmp_path):
    work = tmp_path / "work"
    assert _train(planted, tmp_path / "a", "--workers", "1", "--seed", "7") == 0
    assert _train(planted, tmp_path / "b", "--workers", "1", "--seed", "7", "--workdir", str(work)) == 0
    assert (work / "corpus-tokens.npy").is_file()
    a, b = artifact.load(tmp_path / "a"), artifact.load(tmp_path / "b")
    np.testing.assert_array_equal(a.input_vectors, b.input_vectors)
    assert a.words == b.words
