"""The derived-data cache: a model retrained in place leaves one cache entry, and other models' entries stay."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from service import derived, precompute, settings
from service.embeddings import Embeddings
from trainer import artifact

SIZE, DIM = 60, 8


def train(path, seed: int):
    """A stand-in for `python -m trainer train --out path`: new vectors saved the way the trainer saves."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(SIZE)]
    vectors = rng.standard_normal((2, SIZE, DIM)).astype(np.float32)
    return artifact.save(path, words, np.arange(SIZE, 0, -1), vectors[0], vectors[1],
                         {"objective": "negative-sampling"})


def entries_for(cache, model_dir) -> list[str]:
    """Names of the cache entries recorded as built for `model_dir`."""
    return sorted(entry.name for entry in cache.iterdir()
                  if os.path.abspath(model_dir) in (entry / derived.MODELS_FILE).read_text().splitlines())


def open_worker(model_dir) -> Embeddings:
    """What a worker does: map the prepared data (or prepare it itself), with the environment's settings."""
    model = artifact.load(model_dir)
    config = settings.load({"MODEL_DIR": model_dir})
    return Embeddings(model, derived.open_prepared(model, config), config)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPGRAM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_retraining_leaves_one_entry_and_spares_other_models(tmp_path, cache):
    served = train(tmp_path / "a" / "default", seed=0)
    other = train(tmp_path / "b" / "default", seed=10)  # the same name in another place, served too
    assert precompute.main([str(other)]) == 0
    other_entry = derived.cache_folder(artifact.load(other), cache)
    other_files = sorted(path.name for path in other_entry.iterdir())
    assert precompute.main([str(served)]) == 0
    running = open_worker(served)  # a worker serving the first version
    answer = running.similar("w1", 5)

    for seed in (1, 2):  # retrained twice, precomputed after each
        train(served, seed)
        assert precompute.main([str(served)]) == 0

    assert entries_for(cache, served) == [derived.cache_folder(artifact.load(served), cache).name]
    assert entries_for(cache, other) == [other_entry.name]
    assert sorted(path.name for path in other_entry.iterdir()) == other_files
    assert len(list(cache.iterdir())) == 2
    assert running.similar("w1", 5) == answer  # its mapped tables outlive their deleted files


def test_an_entry_that_a_copy_of_the_model_still_matches_is_kept(tmp_path, cache):
    first = train(tmp_path / "a" / "default", seed=0)
    copy = shutil.copytree(first, tmp_path / "b" / "default")  # same contents: one shared entry
    assert precompute.main([str(first)]) == 0
    assert precompute.main([str(copy)]) == 0
    shared = derived.cache_folder(artifact.load(copy), cache)
    assert [entry.name for entry in cache.iterdir()] == [shared.name]

    train(first, seed=1)
    assert precompute.main([str(first)]) == 0
    assert shared.is_dir()  # the copy still holds the contents it was derived from

    train(copy, seed=2)
    assert precompute.main([str(copy)]) == 0
    assert not shared.exists()
    assert len(list(cache.iterdir())) == 2  # the current entry of each folder


def test_entries_without_a_record_are_left_alone(tmp_path, cache):
    model_dir = train(tmp_path / "default", seed=0)
    unrecorded = open_worker(model_dir)  # built outside the command
    assert unrecorded.describe()["precomputed"]["similar"]
    train(model_dir, seed=1)
    assert precompute.main([str(model_dir)]) == 0
    assert len(list(cache.iterdir())) == 2
