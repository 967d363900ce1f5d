"""The skip-gram objectives in plain float64 numpy: the slow, obvious reference every fast kernel is tested against.

Notation (shapes in brackets): V words, N dimensions, K negatives.
``U`` [V, N] holds one output ("context") vector u_w per row; ``V_in`` [V, N] holds the centre vectors v_w;
``v_c`` [N] is the centre word's vector, ``o`` the index of the observed context word.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "GradientCheckError",
    "sigmoid",
    "naive_softmax_loss_and_gradient",
    "neg_sampling_loss_and_gradient",
    "skipgram",
    "gradcheck",
    "gradient_errors",
]

Objective = Callable[..., tuple[float, np.ndarray, np.ndarray]]


class GradientCheckError(AssertionError):
    """An analytical gradient disagrees with central differences by more than the tolerance."""


def sigmoid(x):
    """Logistic function s(x) = 1 / (1 + e^-x), elementwise; its derivative is s'(x) = s(x) (1 - s(x)).

    Stable for any |x|: only e^-|x| is ever computed, so nothing overflows (it may underflow to 0, harmlessly).
    Returns a float for a scalar input, else a float64 array of x's shape.
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))
    return float(out) if out.ndim == 0 else out


def _log_sigmoid(x):
    """log s(x) = -log(1 + e^-x) = -logaddexp(0, -x), exact for large |x| of either sign."""
    return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


def _check_indices(indices, V: int, what: str) -> None:
    indices = np.asarray(indices)
    if indices.size and (indices.min() < 0 or indices.max() >= V):
        raise IndexError(f"{what} must lie in [0, {V}), got {indices.min()}..{indices.max()}")


def naive_softmax_loss_and_gradient(v_c, o: int, U):
    """Full-softmax skip-gram loss for one (centre, context) pair, and its gradients.

    v_c [N] centre vector, o the context word's index, U [V, N] output vectors.
    With logits z = U v_c [V] and y_hat = softmax(z), y the one-hot vector of o:

        J        = -log y_hat_o = log sum_w e^{z_w} - z_o      (computed as a log-sum-exp, so logits of 1e4 are fine)
        dJ/dv_c  = U^T (y_hat - y)                              [N]
        dJ/dU    = (y_hat - y) v_c^T                            [V, N]

    Returns (loss: float, grad_v_c [N], grad_U [V, N]), all float64.
    """
    v_c = np.asarray(v_c, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    o = operator.index(o)
    _check_indices(o, U.shape[0], "o")
    shifted = U @ v_c
    shifted -= shifted.max()  # log-sum-exp: the largest exponent becomes e^0
    log_z = math.log(np.exp(shifted).sum())
    loss = log_z - shifted[o]
    delta = np.exp(shifted - log_z)  # y_hat, then y_hat - y
    delta[o] -= 1.0
    return float(loss), U.T @ delta, np.outer(delta, v_c)


def neg_sampling_loss_and_gradient(v_c, o: int, U, negatives):
    """Negative-sampling skip-gram loss for one (centre, context) pair, and its gradients.

    v_c [N] centre vector, o the context word's index, U [V, N] output vectors,
    negatives [K] int indices of the sampled noise words:

        J        = -log s(u_o . v_c) - sum_k log s(-u_k . v_c)
        dJ/dv_c  = (s(u_o . v_c) - 1) u_o + sum_k s(u_k . v_c) u_k          [N]
        dJ/du_o  = (s(u_o . v_c) - 1) v_c,   dJ/du_k += s(u_k . v_c) v_c     (rows of [V, N])

    The sum runs over the K draws as given: a word drawn twice counts twice, in the loss and in the gradients
    (hence np.add.at, not fancy-index +=). A negative equal to o is treated as any other negative: row o then
    receives both the positive and the negative term. log s is computed as -logaddexp(0, -x).

    Returns (loss: float, grad_v_c [N], grad_U [V, N]), all float64.
    """
    v_c = np.asarray(v_c, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    o = operator.index(o)
    negatives = np.asarray(negatives)
    if negatives.ndim != 1 or not (negatives.size == 0 or np.issubdtype(negatives.dtype, np.integer)):
        raise ValueError(f"negatives must be an int array of shape (K,), got {negatives.dtype} {negatives.shape}")
    _check_indices(o, U.shape[0], "o")
    _check_indices(negatives, U.shape[0], "negatives")
    negatives = negatives.astype(np.intp)
    u_o, u_k = U[o], U[negatives]  # [N], [K, N]
    score_o, score_k = u_o @ v_c, u_k @ v_c  # scalar, [K]
    loss = -_log_sigmoid(score_o) - _log_sigmoid(-score_k).sum()
    g_o = -sigmoid(-score_o)  # s(x) - 1, without cancellation for large x
    g_k = sigmoid(score_k)  # [K]
    grad_v_c = g_o * u_o + g_k @ u_k
    grad_U = np.zeros_like(U)
    grad_U[o] += g_o * v_c
    np.add.at(grad_U, negatives, np.outer(g_k, v_c))
    return float(loss), grad_v_c, grad_U


def _negatives_per_context(negatives, n_contexts: int) -> list:
    """None -> [None] * n; shape (K,) -> the same row for each context; shape (n, K) -> one row per context."""
    if negatives is None:
        return [None] * n_contexts
    negatives = np.asarray(negatives)
    if negatives.ndim == 1:
        return [negatives] * n_contexts
    if negatives.ndim == 2 and negatives.shape[0] == n_contexts:
        return list(negatives)
    raise ValueError(f"negatives must have shape (K,) or ({n_contexts}, K), got {negatives.shape}")


def skipgram(center: int, contexts: Sequence[int], V_in, U,
             objective: Objective = naive_softmax_loss_and_gradient, negatives=None):
    """Skip-gram loss of one window and its gradients: the objective summed over the window's context words.

    center: index of the centre word, v_c = V_in[center]; contexts: the context words' indices (repeats count
    once per occurrence); V_in [V, N] centre vectors; U [V, N] output vectors; objective: one of
    naive_softmax_loss_and_gradient or neg_sampling_loss_and_gradient. negatives: None for the naive softmax;
    for negative sampling an int array [K] shared by every context word, or [len(contexts), K], one row each.

        J         = sum_{o in contexts} J(v_c, o, U)
        dJ/dV_in  = sum_o dJ(v_c, o, U)/dv_c in row `center`, zero elsewhere    [V, N]
        dJ/dU     = sum_o dJ(v_c, o, U)/dU                                      [V, N]

    Returns (loss: float, grad_V_in [V, N], grad_U [V, N]), all float64.
    """
    V_in = np.asarray(V_in, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    center = operator.index(center)
    _check_indices(center, V_in.shape[0], "center")
    if objective is neg_sampling_loss_and_gradient and negatives is None:
        raise ValueError("negative sampling needs negatives")
    if objective is naive_softmax_loss_and_gradient and negatives is not None:
        raise ValueError("the naive softmax takes no negatives")
    v_c = V_in[center]
    loss, grad_v_c, grad_U = 0.0, np.zeros_like(v_c), np.zeros_like(U)
    for o, row in zip(contexts, _negatives_per_context(negatives, len(contexts))):
        args = (v_c, o, U) if row is None else (v_c, o, U, row)
        loss_o, grad_v_c_o, grad_U_o = objective(*args)
        loss += loss_o
        grad_v_c += grad_v_c_o
        grad_U += grad_U_o
    grad_V_in = np.zeros_like(V_in)
    grad_V_in[center] = grad_v_c
    return float(loss), grad_V_in, grad_U


def gradcheck(f: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray,
              h: float = 1e-4, tolerance: float = 1e-5) -> float:
    """Compare f's analytical gradient with central differences at every element of x; return the worst error.

    f maps a float64 array x (any shape) to (loss, grad) with grad of x's shape, and must be deterministic
    (fix any negatives beforehand). x is perturbed in place, one element at a time, and restored afterwards:

        num_i = (f(x + h e_i) - f(x - h e_i)) / 2h,   err_i = |num_i - ana_i| / max(1, |num_i|, |ana_i|)

    A NaN or inf in either gradient counts as err_i = inf, so it fails at any finite tolerance.
    Raises GradientCheckError naming the worst index and both values when max_i err_i > tolerance.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("gradcheck needs x as a float64 numpy array (it is perturbed in place)")
    analytic = np.array(f(x)[1], dtype=np.float64)  # a copy: f may hand back a buffer it reuses
    if analytic.shape != x.shape:
        raise ValueError(f"f's gradient has shape {analytic.shape}, x has shape {x.shape}")
    worst, worst_index, worst_num = 0.0, None, 0.0
    for index in np.ndindex(x.shape):
        old = x[index]
        try:
            x[index] = old + h
            plus = f(x)[0]
            x[index] = old - h
            minus = f(x)[0]
        finally:
            x[index] = old
        numeric = (plus - minus) / (2.0 * h)
        if math.isfinite(numeric) and math.isfinite(analytic[index]):
            error = abs(numeric - analytic[index]) / max(1.0, abs(numeric), abs(analytic[index]))
        else:
            error = math.inf  # a NaN or inf in either gradient: worse than any finite error, never replaced
        if error > worst:
            worst, worst_index, worst_num = error, index, numeric
    if not worst <= tolerance:
        raise GradientCheckError(
            f"gradient check failed at index {worst_index}: numerical {worst_num!r}, "
            f"analytical {analytic[worst_index]!r}, relative error {worst:.3g} > {tolerance:g}")
    return float(worst)


# --- python -m trainer gradcheck ---------------------------------------------------------------------------

def _keep(result, i: int):
    """(loss, grad_1, grad_2) -> (loss, grad_i)."""
    return result[0], result[i]


def _sigmoid_sum(x):
    """sum_i s(x_i) and its gradient s(x)(1 - s(x)): checks the derivative formula."""
    s = sigmoid(x)
    return float(np.sum(s)), s * (1.0 - s)


def _checks(rng: np.random.Generator) -> list[tuple[str, Callable, np.ndarray]]:
    """(label, f, x) for every gradient the module defines, on small random data with duplicates planted."""
    V, N, K = 8, 5, 4
    U = rng.normal(scale=0.5, size=(V, N))
    V_in = rng.normal(scale=0.5, size=(V, N))
    v_c = rng.normal(size=N)
    o, center, contexts = 2, 3, [2, 5, 2]  # context word 2 appears twice
    negatives = rng.integers(0, V, size=K)
    negatives[-1] = negatives[0]  # a negative drawn twice
    per_context = rng.integers(0, V, size=(len(contexts), K))
    per_context[:, -1] = per_context[:, 0]
    naive, neg = naive_softmax_loss_and_gradient, neg_sampling_loss_and_gradient
    sg_naive = "skipgram (naive softmax)"
    sg_neg = "skipgram (negative sampling)"
    return [
        ("sigmoid (derivative)", _sigmoid_sum, rng.normal(scale=3.0, size=6)),
        ("naive_softmax_loss_and_gradient d/dv_c", lambda x: _keep(naive(x, o, U), 1), v_c.copy()),
        ("naive_softmax_loss_and_gradient d/dU", lambda x: _keep(naive(v_c, o, x), 2), U.copy()),
        ("neg_sampling_loss_and_gradient d/dv_c", lambda x: _keep(neg(x, o, U, negatives), 1), v_c.copy()),
        ("neg_sampling_loss_and_gradient d/dU", lambda x: _keep(neg(v_c, o, x, negatives), 2), U.copy()),
        (f"{sg_naive} d/dV_in", lambda x: _keep(skipgram(center, contexts, x, U), 1), V_in.copy()),
        (f"{sg_naive} d/dU", lambda x: _keep(skipgram(center, contexts, V_in, x), 2), U.copy()),
        (f"{sg_neg} d/dV_in", lambda x: _keep(skipgram(center, contexts, x, U, neg, per_context), 1), V_in.copy()),
        (f"{sg_neg} d/dU", lambda x: _keep(skipgram(center, contexts, V_in, x, neg, per_context), 2), U.copy()),
    ]


def gradient_errors(seed: int) -> list[tuple[str, float]]:
    """(label, gradcheck's worst relative error) for every gradient the module defines, on small random data
    drawn with `seed`; an error is inf where a gradient is NaN or infinite."""
    return [(label, gradcheck(f, x, tolerance=math.inf)) for label, f, x in _checks(np.random.default_rng(seed))]
