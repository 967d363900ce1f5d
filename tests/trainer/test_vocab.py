"""Vocabulary building, bounded counting, subsampling probabilities and the alias noise table."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trainer.reference import WordCounter, build_vocabulary
from tests.trainer.reference import rank_vocabulary
from trainer.vocab import Vocabulary, VocabularyError, keep_probabilities, noise_alias_table, noise_probabilities


@pytest.fixture
def counts() -> dict[str, int]:
    return {"the": 10, "cat": 3, "bat": 3, "sat": 3, "mat": 1, "a": 10, "on": 5}


def implied_distribution(accept: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """What the draw ``i if u < accept[i] else alias[i]`` yields, exactly: float64 (V,)."""
    accept = accept.astype(np.float64)
    return (accept + np.bincount(alias, weights=1.0 - accept, minlength=len(accept))) / len(accept)


def draw(accept: np.ndarray, alias: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The kernel's O(1) draw, emulated in numpy: int64 (n,) word ids."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(accept), n)
    return np.where(rng.random(n) < accept[i], i, alias[i])


def test_words_sorted_by_count_then_word(counts):
    vocab = build_vocabulary(counts, min_count=1)
    assert vocab.words == ("a", "the", "on", "bat", "cat", "sat", "mat")
    assert vocab.counts.tolist() == [10, 10, 5, 3, 3, 3, 1]
    assert vocab.counts.dtype == np.int64 and vocab.counts.shape == (7,)
    assert vocab.index == {word: i for i, word in enumerate(vocab.words)}
    assert len(vocab) == 7


def test_order_does_not_depend_on_insertion_order(counts):
    reversed_counts = dict(reversed(list(counts.items())))
    assert build_vocabulary(counts, min_count=1) == build_vocabulary(reversed_counts, min_count=1)


def test_min_count_and_max_vocab(counts):
    assert build_vocabulary(counts, min_count=5).words == ("a", "the", "on")
    assert build_vocabulary(counts, min_count=3, max_vocab=4).words == ("a", "the", "on", "bat")
    assert build_vocabulary(counts, min_count=1, max_vocab=None).words[-1] == "mat"
    with pytest.raises(ValueError, match="max_vocab"):
        build_vocabulary(counts, max_vocab=0)


def test_counter_and_mapping_give_the_same_vocabulary(counts):
    counter = WordCounter()
    for word, count in counts.items():
        counter.add([word] * count)
    assert build_vocabulary(counter, min_count=2) == build_vocabulary(Counter(counts), min_count=2)
    assert counter.total_tokens == sum(counts.values())


def test_rank_vocabulary_reports_positions(counts):
    words = list(counts)
    vocab, positions = rank_vocabulary(words, np.array(list(counts.values())), min_count=3)
    assert [words[i] for i in positions] == list(vocab.words)
    assert positions.dtype == np.int64


def test_nothing_surviving_raises_a_clear_error(counts):
    with pytest.raises(VocabularyError) as caught:
        build_vocabulary(counts, min_count=50)
    message = str(caught.value)
    assert "min_count=50" in message and "7 types" in message and "occurs 10 times" in message
    with pytest.raises(VocabularyError, match="0 types"):
        build_vocabulary({}, min_count=1)


def test_vocabulary_is_immutable(counts):
    vocab = build_vocabulary(counts, min_count=1)
    with pytest.raises(ValueError):
        vocab.counts[0] = 99
    with pytest.raises(AttributeError):
        vocab.words = ()  # type: ignore[misc]
    with pytest.raises(ValueError, match="2 words but 1 counts"):
        Vocabulary(words=("a", "b"), counts=np.array([1]))


def test_pruning_bounds_types_and_keeps_frequent_words():
    counter = WordCounter(max_types=100)
    frequent = [f"w{i}" for i in range(10)]
    batches, rare_per_batch = 200, 50
    for batch in range(batches):
        counter.add(frequent * 5 + [f"rare{batch}_{j}" for j in range(rare_per_batch)])
        assert len(counter) <= 100
    assert all(counter.counts[word] == 5 * batches for word in frequent)
    assert counter.total_tokens == batches * (50 + rare_per_batch)
    assert counter.prunings > 0 and counter.min_reduce == counter.prunings + 1
    # every rare type was seen once, so all of them except those still held have been pruned
    assert counter.pruned_types == batches * rare_per_batch - (len(counter) - len(frequent))
    assert counter.stats()["types"] == len(counter)


def test_keep_probabilities_match_a_hand_computation():
    keep = keep_probabilities(np.array([100, 10, 1]), sample=0.01)
    # total 111, t = 1.11: keep(f) = (sqrt(f / 1.11) + 1) * 1.11 / f
    expected = [(math.sqrt(100 / 1.11) + 1) * 1.11 / 100, (math.sqrt(10 / 1.11) + 1) * 1.11 / 10, 1.0]
    assert keep.dtype == np.float32 and keep.shape == (3,)
    np.testing.assert_allclose(keep, expected, rtol=1e-6)
    np.testing.assert_allclose(keep[:2], [0.1164565, 0.4441667], atol=1e-6)


@pytest.mark.parametrize("sample", [0.0, -1.0])
def test_no_subsampling_keeps_everything(sample):
    keep = keep_probabilities(np.array([1000, 3, 0]), sample)
    assert keep.dtype == np.float32 and keep.tolist() == [1.0, 1.0, 1.0]


def test_alias_draws_follow_the_noise_distribution():
    counts = np.array([500, 200, 90, 60, 40, 20, 10, 5, 3, 1, 1, 0, 70])
    accept, alias = noise_alias_table(counts)
    assert accept.dtype == np.float32 and alias.dtype == np.int32 and accept.shape == alias.shape == (13,)
    n = 200_000
    observed = np.bincount(draw(accept, alias, n), minlength=len(counts)) / n
    expected = noise_probabilities(counts, 0.75)
    tolerance = 5 * np.sqrt(expected * (1 - expected) / n) + 1e-9
    assert np.all(np.abs(observed - expected) <= tolerance)
    assert observed[11] == 0  # a word never counted is never drawn


def test_exponent_changes_the_distribution():
    counts = np.array([1000, 100, 10, 1])
    p75, p1 = noise_probabilities(counts, 0.75), noise_probabilities(counts, 1.0)
    assert p1 == pytest.approx(counts / counts.sum())
    assert p75[-1] > p1[-1] and p75[0] < p1[0]  # 0.75 flattens: rare words drawn more often
    np.testing.assert_allclose(implied_distribution(*noise_alias_table(counts, 0.75)), p75, atol=1e-7)
    np.testing.assert_allclose(implied_distribution(*noise_alias_table(counts, 1.0)), p1, atol=1e-7)
    assert noise_probabilities(counts, 0.75).dtype == np.float64


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=300).filter(any),
       st.sampled_from([0.0, 0.5, 0.75, 1.0]))
def test_alias_table_is_exact(counts, exponent):
    counts = np.array(counts)
    accept, alias = noise_alias_table(counts, exponent)
    assert np.all((accept >= 0) & (accept <= 1)) and np.all((alias >= 0) & (alias < len(counts)))
    np.testing.assert_allclose(implied_distribution(accept, alias), noise_probabilities(counts, exponent),
                               rtol=1e-5, atol=1e-7)


def test_alias_table_of_a_large_vocabulary():
    counts = np.random.default_rng(1).zipf(1.2, 300_000).clip(max=10**8)
    accept, alias = noise_alias_table(counts)
    np.testing.assert_allclose(implied_distribution(accept, alias), noise_probabilities(counts), rtol=1e-5)


def test_noise_needs_a_positive_count():
    with pytest.raises(ValueError, match="positive count"):
        noise_probabilities(np.zeros(3))
