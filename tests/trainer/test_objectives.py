"""Tests of trainer.objectives: loss values against direct formulas, gradients against finite differences."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer import cli
from trainer.objectives import (
    GradientCheckError,
    gradcheck,
    naive_softmax_loss_and_gradient,
    neg_sampling_loss_and_gradient,
    sigmoid,
    skipgram,
)

naive = naive_softmax_loss_and_gradient
neg = neg_sampling_loss_and_gradient
FAST = settings(deadline=None, max_examples=25, database=None)


def keep(result, i):
    """(loss, grad_1, grad_2) -> (loss, grad_i), the shape gradcheck wants."""
    return result[0], result[i]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny():
    """V=3, N=2: small enough to compute every loss by hand."""
    U = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]])
    v_c = np.array([0.5, -1.0])  # logits U v_c = [0.5, -2.0, -1.5]
    return v_c, U


@pytest.fixture
def problem(rng):
    """V=9, N=4, K=5 random vectors; negatives with word 3 drawn twice; contexts with word 2 repeated."""
    V, N = 9, 4
    return dict(
        U=rng.normal(scale=0.7, size=(V, N)), V_in=rng.normal(scale=0.7, size=(V, N)),
        v_c=rng.normal(size=N), o=2, center=4, contexts=[2, 7, 2],
        negatives=np.array([3, 0, 3, 8, 6]),
    )


# --- sigmoid --------------------------------------------------------------------------------------------------

def test_sigmoid_values_and_symmetry():
    x = np.linspace(-30, 30, 121)
    np.testing.assert_allclose(sigmoid(x), 1.0 / (1.0 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(sigmoid(-x), 1.0 - sigmoid(x), atol=1e-15)
    assert sigmoid(0) == 0.5 and isinstance(sigmoid(0.0), float)


def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([-1e4, -1e3, -800.0, 800.0, 1e3, 1e4, 1e308, -1e308])
    s = sigmoid(x)  # warnings are errors: any overflow would fail here
    assert s.shape == x.shape and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, [0, 0, 0, 1, 1, 1, 1, 0])
    assert sigmoid(1e4) == 1.0 and sigmoid(-1e4) == 0.0


def test_sigmoid_derivative_gradcheck(rng):
    def f(x):
        s = sigmoid(x)
        return s.sum(), s * (1 - s)

    assert gradcheck(f, rng.normal(scale=4.0, size=(3, 5))) < 1e-8
    assert gradcheck(f, np.array([-1e3, -50.0, 50.0, 1e4])) < 1e-8


# --- naive softmax --------------------------------------------------------------------------------------------

def test_naive_softmax_loss_by_hand(tiny):
    v_c, U = tiny
    logits = [0.5, -2.0, -1.5]
    log_z = math.log(sum(math.exp(z) for z in logits))
    for o in range(3):
        loss, _, _ = naive(v_c, o, U)
        assert loss == pytest.approx(log_z - logits[o], rel=1e-14)


def test_naive_softmax_gradients_by_hand(tiny):
    v_c, U = tiny
    logits = U @ v_c
    y_hat = np.exp(logits) / np.exp(logits).sum()
    _, grad_v_c, grad_U = naive(v_c, 1, U)
    delta = y_hat - np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(grad_v_c, U.T @ delta, rtol=1e-13)
    np.testing.assert_allclose(grad_U, np.outer(delta, v_c), rtol=1e-13)


def test_naive_softmax_gradcheck(problem):
    v_c, o, U = problem["v_c"], problem["o"], problem["U"]
    assert gradcheck(lambda x: keep(naive(x, o, U), 1), v_c.copy()) < 1e-8
    assert gradcheck(lambda x: keep(naive(v_c, o, x), 2), U.copy()) < 1e-8


def test_naive_softmax_large_logits():
    U = np.array([[1e3, 0.0], [0.0, 1e3], [-1e3, 0.0]])
    v_c = np.array([10.0, 0.0])  # logits [1e4, 0, -1e4]: e^1e4 would overflow
    for o, expected in [(0, 0.0), (1, 1e4), (2, 2e4)]:
        loss, grad_v_c, grad_U = naive(v_c, o, U)
        assert loss == pytest.approx(expected, abs=1e-9)
        assert np.all(np.isfinite(grad_v_c)) and np.all(np.isfinite(grad_U))
    # y_hat is one-hot on word 0, so dJ/dv_c = u_0 - u_o and dJ/dU = (e_0 - e_o) v_c^T.
    _, grad_v_c, grad_U = naive(v_c, 1, U)
    np.testing.assert_allclose(grad_v_c, [1e3, -1e3])
    np.testing.assert_allclose(grad_U, [[10.0, 0.0], [-10.0, 0.0], [0.0, 0.0]])
    gradcheck(lambda x: keep(naive(x, 1, U), 1), v_c.copy())
    gradcheck(lambda x: keep(naive(v_c, 1, x), 2), U.copy())


def test_naive_softmax_rejects_out_of_range_word(tiny):
    v_c, U = tiny
    with pytest.raises(IndexError):
        naive(v_c, 3, U)
    with pytest.raises(IndexError):
        naive(v_c, -1, U)


# --- negative sampling ----------------------------------------------------------------------------------------

def log_s(x):
    return math.log(1.0 / (1.0 + math.exp(-x)))


def test_neg_sampling_loss_by_hand(tiny):
    v_c, U = tiny
    logits = [0.5, -2.0, -1.5]
    loss, _, _ = neg(v_c, 0, U, np.array([1, 2]))
    assert loss == pytest.approx(-log_s(logits[0]) - log_s(2.0) - log_s(1.5), rel=1e-14)


def test_neg_sampling_gradients_by_hand(tiny):
    v_c, U = tiny
    _, grad_v_c, grad_U = neg(v_c, 0, U, np.array([2]))
    s_o, s_k = sigmoid(0.5), sigmoid(-1.5)
    np.testing.assert_allclose(grad_v_c, (s_o - 1) * U[0] + s_k * U[2], rtol=1e-13)
    np.testing.assert_allclose(grad_U, [(s_o - 1) * v_c, [0.0, 0.0], s_k * v_c], rtol=1e-13)


def test_neg_sampling_gradcheck(problem):
    v_c, o, U, negatives = problem["v_c"], problem["o"], problem["U"], problem["negatives"]
    assert gradcheck(lambda x: keep(neg(x, o, U, negatives), 1), v_c.copy()) < 1e-8
    assert gradcheck(lambda x: keep(neg(v_c, o, x, negatives), 2), U.copy()) < 1e-8


def test_neg_sampling_duplicate_negative_counts_twice(problem):
    v_c, o, U = problem["v_c"], problem["o"], problem["U"]
    twice = neg(v_c, o, U, np.array([5, 5]))
    once = neg(v_c, o, U, np.array([5]))
    positive_only = neg(v_c, o, U, np.array([], dtype=np.int64))
    # J([5, 5]) = J([5]) + (J([5]) - J([])): the second draw adds the negative term once more.
    for a, b, c in zip(twice, once, positive_only):
        np.testing.assert_allclose(a, 2 * np.asarray(b) - c, rtol=1e-12, atol=1e-14)
    # Row 5 of grad_U is exactly twice the single-draw row.
    np.testing.assert_allclose(twice[2][5], 2 * once[2][5], rtol=1e-14)


def test_neg_sampling_negative_equal_to_o_contributes_both_terms(tiny):
    v_c, U = tiny
    loss, _, grad_U = neg(v_c, 1, U, np.array([1]))
    z = -2.0
    assert loss == pytest.approx(-log_s(z) - log_s(-z), rel=1e-14)
    np.testing.assert_allclose(grad_U[1], (sigmoid(z) - 1 + sigmoid(z)) * v_c, rtol=1e-13)
    gradcheck(lambda x: keep(neg(v_c, 1, x, np.array([1, 1, 0])), 2), U.copy())


def test_neg_sampling_large_scores():
    U = np.array([[1e3, 0.0], [-1e3, 0.0], [0.0, 1e3]])
    v_c = np.array([-10.0, 0.0])  # u_0 . v_c = -1e4 (a terrible positive), u_1 . v_c = 1e4 (a terrible negative)
    loss, grad_v_c, grad_U = neg(v_c, 0, U, np.array([1, 2]))
    # -log s(-1e4) - log s(-1e4) - log s(0) = 1e4 + 1e4 + log 2
    assert loss == pytest.approx(2e4 + math.log(2.0), rel=1e-14)
    np.testing.assert_allclose(grad_v_c, -U[0] + U[1] + 0.5 * U[2])
    assert np.all(np.isfinite(grad_U))
    loss, _, _ = neg(-v_c, 0, U, np.array([1]))  # both terms saturated the right way: loss ~ 0
    assert 0.0 <= loss < 1e-300
    gradcheck(lambda x: keep(neg(x, 0, U, np.array([1, 2])), 1), v_c.copy())
    gradcheck(lambda x: keep(neg(v_c, 0, x, np.array([1, 2])), 2), U.copy())


@pytest.mark.parametrize("bad", [np.array([[1, 2]]), np.array([0.5, 1.0]), np.array([0, 3]), np.array([-1])])
def test_neg_sampling_rejects_bad_negatives(tiny, bad):
    v_c, U = tiny
    with pytest.raises((ValueError, IndexError)):
        neg(v_c, 0, U, bad)


# --- skipgram window ------------------------------------------------------------------------------------------

def test_skipgram_sums_over_contexts_with_repeats(problem):
    V_in, U, c = problem["V_in"], problem["U"], problem["center"]
    loss, grad_V_in, grad_U = skipgram(c, [2, 7, 2], V_in, U)
    parts = [naive(V_in[c], o, U) for o in [2, 7, 2]]
    assert loss == pytest.approx(sum(p[0] for p in parts), rel=1e-14)
    np.testing.assert_allclose(grad_V_in[c], sum(p[1] for p in parts), rtol=1e-13)
    np.testing.assert_array_equal(np.delete(grad_V_in, c, axis=0), 0.0)
    np.testing.assert_allclose(grad_U, sum(p[2] for p in parts), rtol=1e-13)
    assert grad_V_in.shape == V_in.shape and grad_U.shape == U.shape


def test_skipgram_window_of_one_equals_the_objective(problem):
    V_in, U, c, negatives = problem["V_in"], problem["U"], problem["center"], problem["negatives"]
    loss, grad_V_in, grad_U = skipgram(c, [7], V_in, U, neg, negatives)
    expected = neg(V_in[c], 7, U, negatives)
    assert loss == expected[0]
    np.testing.assert_array_equal(grad_V_in[c], expected[1])
    np.testing.assert_array_equal(grad_U, expected[2])
    assert gradcheck(lambda x: keep(skipgram(c, [7], x, U), 1), V_in.copy()) < 1e-8
    assert gradcheck(lambda x: keep(skipgram(c, [7], V_in, x, neg, negatives), 2), U.copy()) < 1e-8


def test_skipgram_shared_negatives_equal_tiled_rows(problem):
    V_in, U, c, contexts, negatives = (problem[k] for k in ["V_in", "U", "center", "contexts", "negatives"])
    shared = skipgram(c, contexts, V_in, U, neg, negatives)
    tiled = skipgram(c, contexts, V_in, U, neg, np.tile(negatives, (len(contexts), 1)))
    for a, b in zip(shared, tiled):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("objective", [naive, neg])
def test_skipgram_gradcheck(problem, rng, objective):
    V_in, U, c, contexts = problem["V_in"], problem["U"], problem["center"], problem["contexts"]
    negatives = None
    if objective is neg:
        negatives = rng.integers(0, U.shape[0], size=(len(contexts), 4))
        negatives[:, 1] = negatives[:, 0]  # a duplicate in every row
    assert gradcheck(lambda x: keep(skipgram(c, contexts, x, U, objective, negatives), 1), V_in.copy()) < 1e-8
    assert gradcheck(lambda x: keep(skipgram(c, contexts, V_in, x, objective, negatives), 2), U.copy()) < 1e-8


def test_skipgram_rejects_mismatched_negatives(problem):
    V_in, U, c, negatives = problem["V_in"], problem["U"], problem["center"], problem["negatives"]
    with pytest.raises(ValueError):
        skipgram(c, [1, 2], V_in, U, neg)
    with pytest.raises(ValueError):
        skipgram(c, [1, 2], V_in, U, naive, negatives)
    with pytest.raises(ValueError):
        skipgram(c, [1, 2], V_in, U, neg, np.zeros((3, 4), dtype=np.int64))


# --- gradcheck itself -----------------------------------------------------------------------------------------

def test_gradcheck_catches_a_wrong_gradient(rng):
    def wrong(x):
        return float(np.sum(x ** 3)), 3 * x ** 2 + np.where(np.arange(x.size) == 2, 0.1, 0.0)

    x = rng.normal(size=5)
    before = x.copy()
    with pytest.raises(GradientCheckError, match=r"index \(2,\)") as caught:
        gradcheck(wrong, x)
    assert isinstance(caught.value, AssertionError)
    assert "numerical" in str(caught.value) and "analytical" in str(caught.value)
    np.testing.assert_array_equal(x, before)  # restored


def test_gradcheck_catches_a_wrong_objective_gradient(problem):
    v_c, o, U = problem["v_c"], problem["o"], problem["U"]
    with pytest.raises(GradientCheckError):  # the sign of (y_hat - y) flipped
        gradcheck(lambda x: (naive(x, o, U)[0], -naive(x, o, U)[1]), v_c.copy())


def test_gradcheck_restores_x_and_returns_the_error(rng):
    x = rng.normal(size=(2, 3))
    before = x.copy()
    error = gradcheck(lambda y: (float(np.sum(np.sin(y))), np.cos(y)), x)
    assert 0.0 <= error < 1e-8
    np.testing.assert_array_equal(x, before)


def _nan_loss_left_of_zero(x):
    """sum x^2 with a loss that is NaN once x[0] < 0: the numerical gradient at x[0] = 0 is NaN."""
    return float(np.sum(x ** 2)) + (math.nan if x[0] < 0 else 0.0), 2 * x


@pytest.mark.parametrize("where", [0, 3])  # index 0 first: a later finite error must not replace it
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_gradcheck_fails_on_a_non_finite_analytical_gradient(rng, where, bad):
    def f(x):
        grad = 2 * x
        grad[where] = bad
        return float(np.sum(x ** 2)), grad

    with pytest.raises(GradientCheckError, match=rf"index \({where},\)"):
        gradcheck(f, rng.normal(size=5))
    assert gradcheck(f, rng.normal(size=5), tolerance=math.inf) == math.inf  # as the gradcheck command sees it


def test_gradcheck_fails_on_a_non_finite_numerical_gradient(rng):
    x = rng.normal(size=4)
    x[0] = 0.0
    with pytest.raises(GradientCheckError, match=r"index \(0,\)"):
        gradcheck(_nan_loss_left_of_zero, x)


def test_gradcheck_wants_float64_arrays():
    with pytest.raises(TypeError):
        gradcheck(lambda y: (float(np.sum(y)), np.ones_like(y)), np.ones(3, dtype=np.float32))


# --- properties over random shapes ----------------------------------------------------------------------------

@st.composite
def problems(draw):
    """Random (V 2..30, N 1..16, K 1..10) problem; values drawn by numpy from a hypothesis-chosen seed."""
    V, N, K = draw(st.integers(2, 30)), draw(st.integers(1, 16)), draw(st.integers(1, 10))
    scale = draw(st.floats(0.05, 2.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_contexts = draw(st.integers(1, 4))
    return dict(
        U=rng.normal(scale=scale, size=(V, N)), V_in=rng.normal(scale=scale, size=(V, N)),
        v_c=rng.normal(scale=scale, size=N), o=draw(st.integers(0, V - 1)), center=draw(st.integers(0, V - 1)),
        negatives=rng.integers(0, V, size=K), contexts=list(rng.integers(0, V, size=n_contexts)),
        per_context=rng.integers(0, V, size=(n_contexts, K)),
    )


@FAST
@given(problems())
def test_property_objective_gradients_match_finite_differences(p):
    v_c, o, U, negatives = p["v_c"], p["o"], p["U"], p["negatives"]
    gradcheck(lambda x: keep(naive(x, o, U), 1), v_c.copy())
    gradcheck(lambda x: keep(naive(v_c, o, x), 2), U.copy())
    gradcheck(lambda x: keep(neg(x, o, U, negatives), 1), v_c.copy())
    gradcheck(lambda x: keep(neg(v_c, o, x, negatives), 2), U.copy())


@settings(deadline=None, max_examples=15, database=None)
@given(problems())
def test_property_skipgram_gradients_match_finite_differences(p):
    c, contexts, V_in, U, negatives = p["center"], p["contexts"], p["V_in"], p["U"], p["per_context"]
    gradcheck(lambda x: keep(skipgram(c, contexts, x, U), 1), V_in.copy())
    gradcheck(lambda x: keep(skipgram(c, contexts, V_in, x, neg, negatives), 2), U.copy())


@FAST
@given(problems())
def test_property_naive_softmax_structure(p):
    v_c, o, U = p["v_c"], p["o"], p["U"]
    loss, grad_v_c, grad_U = naive(v_c, o, U)
    logits = U @ v_c
    y_hat = np.exp(logits - logits.max())
    y_hat /= y_hat.sum()
    assert loss >= 0.0
    # y_hat sums to 1, so dJ/dv_c = U^T y_hat - u_o and the rows of dJ/dU sum to (1 - 1) v_c = 0.
    np.testing.assert_allclose(grad_v_c, U.T @ y_hat - U[o], atol=1e-12)
    np.testing.assert_allclose(grad_U.sum(axis=0), 0.0, atol=1e-12)
    assert loss == pytest.approx(-math.log(y_hat[o]), rel=1e-10, abs=1e-12)


@FAST
@given(problems())
def test_property_neg_sampling_loss_is_the_direct_formula(p):
    v_c, o, U, negatives = p["v_c"], p["o"], p["U"], p["negatives"]
    loss, _, _ = neg(v_c, o, U, negatives)
    direct = -log_s(U[o] @ v_c) - sum(log_s(-(U[k] @ v_c)) for k in negatives)
    assert loss >= 0.0
    assert loss == pytest.approx(direct, rel=1e-10, abs=1e-12)
    window_loss, _, _ = skipgram(p["center"], p["contexts"], p["V_in"], U, neg, p["per_context"])
    assert window_loss >= 0.0


# --- the command line -----------------------------------------------------------------------------------------

def test_cli_gradcheck_passes_and_names_every_function(capsys):
    assert cli.main(["gradcheck", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for name in ["sigmoid", "naive_softmax_loss_and_gradient", "neg_sampling_loss_and_gradient", "skipgram"]:
        assert name in out
    assert "FAIL" not in out and len(re.findall(r" pass$", out, re.MULTILINE)) == 9


def test_cli_gradcheck_default_seed(capsys):
    assert cli.main(["gradcheck"]) == 0
    assert "skipgram (negative sampling)" in capsys.readouterr().out
