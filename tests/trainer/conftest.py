"""A small model folder shared by the trainer's tests."""
import numpy as np
import pytest

from trainer import artifact

WORDS = ["the", "cat", "sat", "on", "mat", "ünïcode"]


@pytest.fixture
def model_dir(tmp_path):
    rng = np.random.default_rng(0)
    w_in = rng.normal(size=(len(WORDS), 4)).astype(np.float32)
    return artifact.save(tmp_path / "m", WORDS, [9, 5, 4, 3, 2, 1], w_in, w_in[::-1] * 2,
                         {"objective": "negative-sampling"})
