"""Numba kernels for skip-gram training: pure functions of arrays and scalars, compiled once and cached.

Conventions shared by every kernel:
  w_in   float32 (V, N)  W_input, row v_w is word w as centre word (updated in place)
  w_out  float32 (V, N)  W_output, row u_w is word w as context word (updated in place)
  tokens int32 (T,)      word ids of one job's stretch of the corpus
  starts int64 (S+1,)    sentence s of the job is tokens[starts[s]:starts[s+1]]
  keep   float32 (V,)    subsampling keep probability of each word
  accept float32 (V,), alias int32 (V,)  Walker alias table of the noise distribution (count^0.75)
Every update is the exact gradient step of a window loss built from the pair objectives of
trainer/objectives.py: all scores of a window are computed from the parameters as they were before the
window's update, then applied. The naive softmax trains each window from its centre word (v_c against the
outputs of its context words); negative sampling trains it from its context words, as word2vec.c and
gensim do (each v_o against the output of the centre word and K shared negatives). Over a corpus both sum
the same pair objective: a window of random reach includes the pair (c, o) as likely as (o, c).
Kernels release the GIL (nogil) so that several Python threads train at once, lock-free (Hogwild).
"""
from __future__ import annotations

import math

import numpy as np

from trainer.jit import njit, prefetch

_MULT = np.uint64(0x2545F4914F6CDD1D)


@njit(nogil=True, cache=True, inline="always")
def _next_random(state):
    """xorshift64*: advances state (uint64 (1,)) and returns 64 random bits."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    return x * _MULT


@njit(nogil=True, cache=True, inline="always")
def _uniform(state):
    """A float64 uniform on [0, 1)."""
    return (_next_random(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True, inline="always")
def _below(state, n):
    """An integer uniform on [0, n) (n < 2**32)."""
    return np.int64(((_next_random(state) >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(nogil=True, cache=True)
def seed_state(seed):
    """uint64 (1,) generator state from any integer seed (splitmix64 scramble; never zero)."""
    z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    state = np.empty(1, dtype=np.uint64)
    state[0] = z if z != np.uint64(0) else np.uint64(1)
    return state


@njit(nogil=True, cache=True, inline="always")
def _prefetch_row(arr, row):
    """Prefetch a float32 row: one hint per 64-byte cache line (16 values)."""
    for col in range(0, arr.shape[1], 16):
        prefetch(arr, (row, col))


# Cephes' expf: exp(t) = 2^n exp(r), n = round(t / ln 2), r = t - n ln 2 (ln 2 in two parts, Cody and
# Waite) and exp(r) a degree-5 polynomial on |r| <= ln 2 / 2: within 1 ulp of the exact value on [-8, 0]
# and 4 ulp on [-87.3, 0] (the tests measure it)
_EXP_LO = np.float32(-87.33)  # exp of anything lower is clamped to about 2^-126, the smallest normal float32
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_P0, _P1, _P2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
_P3, _P4, _P5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
_EXP_BIAS = np.int32(127)  # 2^n is the float32 whose exponent bits are n + 127
_HALF, _ONE = np.float32(0.5), np.float32(1.0)


@njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def sigmoids(scores, lo, hi, sign, alpha):
    """For the slots lo..hi-1 of scores float32 (4, S), whose row 0 holds logits x: with y = sign * x,
    row 1 becomes e = exp(-|y|), row 2 s(y) and row 3 the step sign * alpha * s(-y). The exps are computed
    together by the polynomial above in float32 vector lanes, instead of one libm call each (a fifth of a
    window's time with its rows in L1); stable for any |x|. No fastmath here: it would undo the reduction."""
    x, exps, factors, steps = scores[0, lo:hi], scores[1, lo:hi], scores[2, lo:hi], scores[3, lo:hi]
    powers = scores[3].view(np.int32)[lo:hi]  # 2^n as float32 bits, until the steps replace them
    for i in range(x.shape[0]):
        t = -abs(x[i])
        t = t if t > _EXP_LO else _EXP_LO
        n = np.floor(t * _LOG2E + _HALF)
        r = t - n * _LN2_HI - n * _LN2_LO
        p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
        exps[i] = p * r * r + r + _ONE
        powers[i] = (np.int32(n) + _EXP_BIAS) << 23
    step = sign * alpha
    for i in range(x.shape[0]):
        e = exps[i] * steps[i]  # steps[i] holds 2^n here
        exps[i] = e
        big = _ONE / (_ONE + e)  # s(|y|)
        small = e * big  # s(-|y|)
        positive = sign * x[i] >= np.float32(0.0)
        factors[i] = big if positive else small
        steps[i] = step * (small if positive else big)


TINY = 1e-30  # a likelihood below this is moved into the loss as its log, so that a product never underflows


@njit(nogil=True, cache=True, inline="always")
def _times_factor(likelihood, factor, y, e):
    """(likelihood * factor, -log of what it could not hold) in float64, for the factor s(y) (float32) with
    e = exp(-|y|): a window's loss is the log of the product of its m (K + 1) factors (a few logs when it
    underflows), rather than one log1p per factor. A factor below TINY (y < -69) is kept as its log; a
    product that falls below TINY is moved into the loss, so that the next factor (at least TINY) cannot
    make it underflow, whatever K is."""
    if factor <= TINY:
        return likelihood, math.log1p(np.float64(e)) - np.float64(y)
    product = likelihood * np.float64(factor)
    if product < TINY:
        return 1.0, -math.log(product)
    return product, 0.0


@njit(nogil=True, cache=True, fastmath=True, inline="always")
def _dot(a, b):
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@njit(nogil=True, cache=True, fastmath=True, inline="always")
def _output_row(k, target, negatives):
    """Output k of a negative-sampling window: 0 is the positive word, 1..K the negatives."""
    return target if k == 0 else negatives[k - 1]


@njit(nogil=True, cache=True, inline="always")
def _slot(j, k, n_contexts, n_negatives):
    """Where the score of context j against output k sits: the positives first, then the negatives, so
    that each sign is one run of slots."""
    return j if k == 0 else n_contexts + j * n_negatives + k - 1


@njit(nogil=True, cache=True, fastmath=True)
def sgns_update(target, contexts, n_contexts, negatives, w_in, w_out, alpha, scores, grad_out):
    """One negative-sampling step for the window around one occurrence of `target`, from the context side.

    Each context word o_j of the window takes the centre-word role of the pair objective with `target` as
    its positive word, and the K negatives are drawn once for the window and shared by its context words
    (Ji et al. 2016). The window loss is
        J = sum_j [ -log s(u_t . v_oj) - sum_k log s(-u_k . v_oj) ]
    and the step is v_oj -= alpha dJ/dv_oj, u_w -= alpha dJ/du_w, all gradients taken before any update.
    contexts int32 (>= n_contexts,), negatives int32 (K,); scores float32 (4, >= n_contexts (K + 1)) and
    grad_out float32 (K + 1, N) are scratch. Returns J (float64).
    """
    n_neg = negatives.shape[0]
    n_out, m, dim = n_neg + 1, n_contexts, w_in.shape[1]
    for j in range(m):  # the scores, from the parameters as they were; four negatives a pass
        v = w_in[contexts[j]]
        scores[0, j] = _dot(w_out[target], v)
        k = 0
        while k + 4 <= n_neg:
            u0, u1 = w_out[negatives[k]], w_out[negatives[k + 1]]
            u2, u3 = w_out[negatives[k + 2]], w_out[negatives[k + 3]]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for i in range(dim):
                s0 += u0[i] * v[i]
                s1 += u1[i] * v[i]
                s2 += u2[i] * v[i]
                s3 += u3[i] * v[i]
            q = _slot(j, k + 1, m, n_neg)
            scores[0, q], scores[0, q + 1], scores[0, q + 2], scores[0, q + 3] = s0, s1, s2, s3
            k += 4
        while k < n_neg:
            scores[0, _slot(j, k + 1, m, n_neg)] = _dot(w_out[negatives[k]], v)
            k += 1
    sigmoids(scores, 0, m, np.float32(1.0), alpha)
    sigmoids(scores, m, m * n_out, np.float32(-1.0), alpha)
    loss, likelihood = 0.0, 1.0  # the window's: prod_j s(u_t . v_oj) prod_k s(-u_k . v_oj)
    for q in range(m * n_out):
        y = scores[0, q] if q < m else -scores[0, q]
        likelihood, lost = _times_factor(likelihood, scores[2, q], y, scores[1, q])
        loss += lost
    loss -= math.log(likelihood)
    # the outputs' steps, from the inputs as they were: grad_out[k] = sum_j g_jk v_j, four inputs a pass
    for k in range(n_out):
        grad = grad_out[k]
        grad[:] = 0.0
        j = 0
        while j + 4 <= m:
            v0, v1, v2, v3 = w_in[contexts[j]], w_in[contexts[j + 1]], w_in[contexts[j + 2]], w_in[contexts[j + 3]]
            g0, g1 = scores[3, _slot(j, k, m, n_neg)], scores[3, _slot(j + 1, k, m, n_neg)]
            g2, g3 = scores[3, _slot(j + 2, k, m, n_neg)], scores[3, _slot(j + 3, k, m, n_neg)]
            for i in range(dim):
                grad[i] += g0 * v0[i] + g1 * v1[i] + g2 * v2[i] + g3 * v3[i]
            j += 4
        while j < m:
            v, g = w_in[contexts[j]], scores[3, _slot(j, k, m, n_neg)]
            for i in range(dim):
                grad[i] += g * v[i]
            j += 1
    # the inputs' steps, from the outputs as they still are: v_j += sum_k g_jk u_k, three outputs a pass
    for j in range(m):
        v = w_in[contexts[j]]
        k = 0
        while k + 3 <= n_out:
            u0 = w_out[_output_row(k, target, negatives)]
            u1, u2 = w_out[negatives[k]], w_out[negatives[k + 1]]  # outputs k + 1 and k + 2 (k + 1 >= 1)
            g0, g1 = scores[3, _slot(j, k, m, n_neg)], scores[3, _slot(j, k + 1, m, n_neg)]
            g2 = scores[3, _slot(j, k + 2, m, n_neg)]
            for i in range(dim):
                v[i] += g0 * u0[i] + g1 * u1[i] + g2 * u2[i]
            k += 3
        while k < n_out:
            u, g = w_out[_output_row(k, target, negatives)], scores[3, _slot(j, k, m, n_neg)]
            for i in range(dim):
                v[i] += g * u[i]
            k += 1
    for k in range(n_out):
        u, grad = w_out[_output_row(k, target, negatives)], grad_out[k]
        for i in range(dim):
            u[i] += grad[i]
    return loss


@njit(nogil=True, cache=True, fastmath=True)
def naive_softmax_update(center, contexts, n_contexts, w_in, w_out, alpha, probs, grad_v):
    """One exact-softmax step for a centre word and its window.

    probs float64 (V,) and grad_v float32 (N,) are scratch. With y_hat = softmax(U v_c) the window loss
    is J = sum_j -log y_hat[o_j]; dJ/dv_c = U^T (m y_hat - c), dJ/dU = (m y_hat - c) v_c^T, where m is
    the number of context words and c counts each word among them. Cost O(V N). Returns J (float64).
    """
    v = w_in[center]
    n_words = w_out.shape[0]
    top = -np.inf
    for w in range(n_words):
        probs[w] = _dot(w_out[w], v)  # the logits z = U v_c, for now
        top = max(top, probs[w])
    total = 0.0
    for w in range(n_words):
        total += math.exp(probs[w] - top)
    log_total = math.log(total) + top  # log sum_w exp(z_w)
    loss = 0.0
    for j in range(n_contexts):
        loss += log_total - probs[contexts[j]]
    for w in range(n_words):
        probs[w] = n_contexts * math.exp(probs[w] - log_total)  # m y_hat
    for j in range(n_contexts):
        probs[contexts[j]] -= 1.0  # m y_hat - c
    grad_v[:] = 0.0
    for w in range(n_words):
        g = np.float32(-alpha * probs[w])
        u = w_out[w]
        for i in range(v.shape[0]):
            grad_v[i] += g * u[i]
            u[i] += g * v[i]
    for i in range(v.shape[0]):
        v[i] += grad_v[i]
    return loss


@njit(nogil=True, cache=True, inline="always")
def _subsample(tokens, lo, hi, keep, state, kept):
    """Copy the words of tokens[lo:hi] that survive subsampling into kept; returns how many."""
    n = 0
    for p in range(lo, hi):
        w = tokens[p]
        if keep[w] >= 1.0 or _uniform(state) < keep[w]:
            kept[n] = w
            n += 1
    return n


@njit(nogil=True, cache=True, inline="always")
def _gather_window(kept, n_kept, i, window, state, contexts):
    """Context words of position i under a window drawn uniformly from 1..window; returns how many."""
    reach = window - _below(state, window)
    m = 0
    for p in range(max(0, i - reach), min(n_kept, i + reach + 1)):
        if p != i:
            contexts[m] = kept[p]
            m += 1
    return m


@njit(nogil=True, cache=True, inline="always")
def _window_buffers(starts, window):
    """Scratch for a job: the kept words of its longest sentence, and one window's context words."""
    longest = 0
    for s in range(starts.shape[0] - 1):
        longest = max(longest, starts[s + 1] - starts[s])
    return np.empty(longest, dtype=np.int32), np.empty(2 * window, dtype=np.int32)


@njit(nogil=True, cache=True, inline="always")
def _draw_negatives(negatives, accept, alias, n_vocab, state):
    """Fill negatives with words drawn from the noise distribution (Walker alias table)."""
    for k in range(negatives.shape[0]):
        r = _below(state, n_vocab)
        negatives[k] = r if _uniform(state) < accept[r] else alias[r]


@njit(nogil=True, cache=True)
def sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, window, negative, alpha_lo, alpha_hi,
             seed, stop):
    """Train negative sampling over one job's sentences. The learning rate falls linearly from alpha_lo
    at the job's first word to alpha_hi at its last. stop uint8 (1,) is read at every centre word: once
    another thread sets it, the job ends before its next one. Returns (summed loss float64, centre-context
    pairs trained, words of the sentences finished)."""
    state = seed_state(seed)
    kept, contexts = _window_buffers(starts, window)
    negatives = np.empty((2, negative), dtype=np.int32)  # this window's, and the next one's (prefetched)
    scores = np.empty((4, 2 * window * (negative + 1)), dtype=np.float32)
    grad_out = np.empty((negative + 1, w_in.shape[1]), dtype=np.float32)
    n_words, n_vocab = tokens.shape[0], accept.shape[0]
    loss, pairs, now = 0.0, 0, 0
    _draw_negatives(negatives[now], accept, alias, n_vocab, state)
    for s in range(starts.shape[0] - 1):
        n_kept = _subsample(tokens, starts[s], starts[s + 1], keep, state, kept)
        alpha = np.float32(alpha_lo + (alpha_hi - alpha_lo) * starts[s] / max(1, n_words))
        for i in range(n_kept):
            if stop[0]:
                return loss, pairs, starts[s]
            m = _gather_window(kept, n_kept, i, window, state, contexts)
            if m == 0:
                continue
            # the next window's negatives are drawn now and their rows fetched while this window trains,
            # with the next centre word's output row and the context row that window may add
            _draw_negatives(negatives[1 - now], accept, alias, n_vocab, state)
            for k in range(negative):
                _prefetch_row(w_out, negatives[1 - now, k])
            if i + 1 < n_kept:
                _prefetch_row(w_out, kept[i + 1])
            if i + window + 1 < n_kept:
                _prefetch_row(w_in, kept[i + window + 1])
            loss += sgns_update(kept[i], contexts, m, negatives[now], w_in, w_out, alpha, scores, grad_out)
            pairs += m
            now = 1 - now
    return loss, pairs, n_words


@njit(nogil=True, cache=True)
def naive_softmax_job(tokens, starts, w_in, w_out, keep, window, alpha_lo, alpha_hi, seed, stop):
    """Train the exact softmax over one job's sentences (same sampling, schedule, stop flag and result as
    sgns_job)."""
    state = seed_state(seed)
    kept, contexts = _window_buffers(starts, window)
    probs = np.empty(w_out.shape[0], dtype=np.float64)
    grad_v = np.empty(w_in.shape[1], dtype=np.float32)
    n_words = tokens.shape[0]
    loss, pairs = 0.0, 0
    for s in range(starts.shape[0] - 1):
        n_kept = _subsample(tokens, starts[s], starts[s + 1], keep, state, kept)
        alpha = alpha_lo + (alpha_hi - alpha_lo) * starts[s] / max(1, n_words)
        for i in range(n_kept):
            if stop[0]:
                return loss, pairs, starts[s]
            m = _gather_window(kept, n_kept, i, window, state, contexts)
            if m == 0:
                continue
            loss += naive_softmax_update(kept[i], contexts, m, w_in, w_out, alpha, probs, grad_v)
            pairs += m
    return loss, pairs, n_words
