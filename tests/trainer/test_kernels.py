"""The numba kernels against the numpy reference of trainer/objectives.py: same inputs, same update."""
import numpy as np
import pytest

from trainer import kernels, objectives


def _params(vocab_size=12, dim=7, seed=0):
    rng = np.random.default_rng(seed)
    w_in = rng.normal(scale=0.5, size=(vocab_size, dim)).astype(np.float32)
    w_out = rng.normal(scale=0.5, size=(vocab_size, dim)).astype(np.float32)
    return w_in, w_out


def _reference_step(center, contexts, w_in, w_out, alpha, objective, negatives=None):
    loss, grad_in, grad_out = objectives.skipgram(center, contexts, w_in.astype(np.float64),
                                                  w_out.astype(np.float64), objective, negatives)
    return loss, w_in - alpha * grad_in, w_out - alpha * grad_out


def _reference_context_side_step(target, contexts, w_in, w_out, alpha, negatives):
    """Negative sampling from the context side: each context word o is the centre of the pair (o, target)."""
    V_in, U = w_in.astype(np.float64), w_out.astype(np.float64)
    loss, grad_in, grad_out = 0.0, np.zeros_like(V_in), np.zeros_like(U)
    for o in contexts:
        loss_o, grad_v_o, grad_U_o = objectives.neg_sampling_loss_and_gradient(V_in[o], target, U, negatives)
        loss += loss_o
        grad_in[o] += grad_v_o
        grad_out += grad_U_o
    return loss, w_in - alpha * grad_in, w_out - alpha * grad_out


@pytest.mark.parametrize("contexts, negatives", [
    ([3], [5, 6, 7]),                      # a window of one
    ([1, 2, 3, 4], [5, 6, 7, 8, 9]),       # a full window
    ([1, 2, 2, 4], [5, 5, 7]),             # a repeated context word and a negative drawn twice
    ([1, 2, 3], [0, 9, 10]),               # a negative equal to the positive (centre) word
    ([0, 2, 3], [4, 9, 10]),               # the centre word among its own contexts
    ([1, 2, 3, 4, 5, 6], [7]),             # inputs past a pass of four; two outputs, fewer than a pass of three
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [11, 1, 2, 3, 4, 5, 6, 7]),  # the widest window: passes and remainders
])
def test_sgns_update_equals_reference(contexts, negatives):
    w_in, w_out = _params()
    target, alpha = 0, 0.05
    loss, want_in, want_out = _reference_context_side_step(target, contexts, w_in, w_out, alpha,
                                                           np.array(negatives))
    ctx = np.array(contexts + [0, 0], dtype=np.int32)  # padding past n_contexts must be ignored
    neg = np.array(negatives, dtype=np.int32)
    scores = np.full((4, len(ctx) * (len(neg) + 1)), np.nan, np.float32)
    got = kernels.sgns_update(target, ctx, len(contexts), neg, w_in, w_out, np.float32(alpha), scores,
                              np.empty((len(neg) + 1, w_in.shape[1]), np.float32))
    assert got == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(w_in, want_in, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_out, want_out, rtol=1e-5, atol=1e-6)


def test_sigmoids_are_within_a_few_ulp_of_the_exact_values_for_any_score():
    """The vectorised exp (Cephes' expf) against float64 numpy: e = exp(-|y|) within 4 ulp where it is a
    normal float32, s(y) and the step sign * alpha * s(-y) to float32 precision, and nothing but finite
    values in [0, 1] however large |x| is."""
    x = np.concatenate([np.linspace(-87.0, 87.0, 400_001), [0.0, -0.0, 1e-30, 200.0, -1e4, 3e38, -3e38]])
    x = x.astype(np.float32)
    for sign in (1.0, -1.0):
        scores = np.zeros((4, len(x) + 3), np.float32)
        scores[0, 2:-1] = x
        scores[:, [0, 1, -1]] = 7.0  # outside lo..hi: left alone
        kernels.sigmoids(scores, 2, len(x) + 2, np.float32(sign), np.float32(0.25))
        y = sign * x.astype(np.float64)
        e, factor, step = scores[1, 2:-1], scores[2, 2:-1], scores[3, 2:-1]
        normal = np.abs(y) <= 87.0
        want_e = np.exp(-np.abs(y[normal])).astype(np.float32)
        assert np.abs(e[normal].view(np.int32).astype(np.int64) - want_e.view(np.int32)).max() <= 4
        assert np.all((e[~normal] >= 0.0) & (e[~normal] < 2e-38))
        with np.errstate(over="ignore"):
            want_factor, want_step = 1.0 / (1.0 + np.exp(-y)), sign * 0.25 / (1.0 + np.exp(y))
        np.testing.assert_allclose(factor, want_factor, rtol=6e-7, atol=2e-38)
        np.testing.assert_allclose(step, want_step, rtol=6e-7, atol=2e-38)
        assert np.all(np.isfinite(scores)) and np.all((factor >= 0.0) & (factor <= 1.0))
        assert np.all(scores[:, [0, 1, -1]] == 7.0)


@pytest.mark.parametrize("n_contexts", [1, 3])
@pytest.mark.parametrize("score", [12.0, 30.0, 80.0, 120.0])
def test_sgns_update_loss_is_exact_when_every_factor_is_tiny(score, n_contexts):
    """Many negatives that all score high and a positive that scores low: the likelihood of a window is a
    product of m (K + 1) tiny factors (far below float64's range for K = 40), yet the loss is its sum of
    -log s terms, without overflow or underflow, and the step is the reference's."""
    n_neg, target = 40, 0
    w_in = np.zeros((n_neg + 2, 1), np.float32)
    w_out = np.zeros((n_neg + 2, 1), np.float32)
    w_in[1] = 1.0
    w_out[target] = -score
    w_out[2:] = score
    negatives = np.arange(2, n_neg + 2, dtype=np.int32)
    alpha = 1e-4
    contexts = [1] * n_contexts  # the window's likelihood is a product of n_contexts (K + 1) tiny factors
    loss, want_in, want_out = _reference_context_side_step(target, contexts, w_in, w_out, alpha, negatives)
    got = kernels.sgns_update(target, np.array(contexts, np.int32), n_contexts, negatives, w_in, w_out,
                              np.float32(alpha), np.empty((4, n_contexts * (n_neg + 1)), np.float32),
                              np.empty((n_neg + 1, 1), np.float32))
    assert np.isfinite(got) and got == pytest.approx(loss, rel=1e-5)
    assert loss == pytest.approx(n_contexts * (n_neg + 1) * score, rel=1e-3)
    np.testing.assert_allclose(w_in, want_in, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_out, want_out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("contexts", [[3], [1, 2, 3, 4], [1, 1, 5], [0, 2]])
def test_naive_softmax_update_equals_reference(contexts):
    w_in, w_out = _params(seed=1)
    center, alpha = 0, 0.1
    loss, want_in, want_out = _reference_step(center, contexts, w_in, w_out, alpha,
                                              objectives.naive_softmax_loss_and_gradient)
    got = kernels.naive_softmax_update(center, np.array(contexts, np.int32), len(contexts), w_in, w_out,
                                       alpha, np.empty(w_out.shape[0]), np.empty(w_in.shape[1], np.float32))
    assert got == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(w_in, want_in, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_out, want_out, rtol=1e-5, atol=1e-6)


def test_naive_softmax_update_is_stable_for_large_logits():
    w_in, w_out = _params(seed=2)
    w_in *= 300.0
    w_out *= 300.0
    loss = kernels.naive_softmax_update(0, np.array([1, 2], np.int32), 2, w_in, w_out, 0.01,
                                        np.empty(w_out.shape[0]), np.empty(w_in.shape[1], np.float32))
    assert np.isfinite(loss) and np.isfinite(w_in).all() and np.isfinite(w_out).all()


def _not_stopped():
    return np.zeros(1, np.uint8)


def _job_inputs(vocab_size=50, n_tokens=3000, seed=3):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab_size, n_tokens).astype(np.int32)
    starts = np.array([0, 1000, 1001, 2500, n_tokens], dtype=np.int64)
    keep = np.full(vocab_size, 0.8, np.float32)
    accept = np.ones(vocab_size, np.float32)
    alias = np.arange(vocab_size, dtype=np.int32)
    return tokens, starts, keep, accept, alias


def test_sgns_job_is_reproducible_for_a_seed_and_differs_across_seeds():
    tokens, starts, keep, accept, alias = _job_inputs()
    results = []
    for seed in (7, 7, 8):
        w_in, w_out = _params(vocab_size=50, dim=8)
        loss, pairs, words = kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, 5, 5, 0.025,
                                              0.02, seed, _not_stopped())
        assert words == len(tokens)
        results.append((loss, pairs, w_in, w_out))
    assert results[0][:2] == results[1][:2]
    np.testing.assert_array_equal(results[0][2], results[1][2])
    np.testing.assert_array_equal(results[0][3], results[1][3])
    assert not np.array_equal(results[0][2], results[2][2])


def test_sgns_job_counts_pairs_within_sentences_only():
    # No subsampling, window 1: each kept word pairs with its neighbours inside its own sentence.
    tokens, starts, _, accept, alias = _job_inputs()
    keep = np.ones(50, np.float32)
    w_in, w_out = _params(vocab_size=50, dim=8)
    _, pairs, _ = kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, 1, 3, 0.025, 0.02, 1,
                                   _not_stopped())
    lengths = np.diff(starts)
    assert pairs == int(sum(2 * (n - 1) for n in lengths if n > 1))


def test_subsampling_drops_words_with_low_keep_probability():
    tokens, starts, _, accept, alias = _job_inputs()
    keep = np.ones(50, np.float32)
    keep[:25] = 0.0  # half the vocabulary never survives
    w_in, w_out = _params(vocab_size=50, dim=8)
    before = w_in.copy()
    kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, 2, 3, 0.025, 0.02, 1, _not_stopped())
    np.testing.assert_array_equal(w_in[:25], before[:25])  # never in a window
    assert not np.array_equal(w_in[25:], before[25:])


def test_negatives_follow_the_alias_table():
    # An alias table that always redirects to word 0: only row 0 of w_out moves besides the contexts.
    tokens = np.array([10, 11], dtype=np.int32)
    starts = np.array([0, 2], dtype=np.int64)
    keep = np.ones(20, np.float32)
    accept = np.zeros(20, np.float32)
    alias = np.zeros(20, np.int32)
    w_in, w_out = _params(vocab_size=20, dim=4)
    before = w_out.copy()
    kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, 1, 4, 0.1, 0.1, 5, _not_stopped())
    moved = np.flatnonzero(np.any(w_out != before, axis=1))
    assert set(moved) == {0, 10, 11}


def _run_job(objective, tokens, starts, w_in, w_out, keep, accept, alias, stop):
    if objective == "negative-sampling":
        return kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, 5, 5, 0.025, 0.02, 1, stop)
    return kernels.naive_softmax_job(tokens, starts, w_in, w_out, keep, 5, 0.025, 0.02, 1, stop)


@pytest.mark.parametrize("objective", ["negative-sampling", "naive-softmax"])
def test_a_job_told_to_stop_trains_nothing_more(objective):
    tokens, starts, keep, accept, alias = _job_inputs()
    w_in, w_out = _params(vocab_size=50, dim=8)
    before = w_in.copy(), w_out.copy()
    assert _run_job(objective, tokens, starts, w_in, w_out, keep, accept, alias,
                    np.ones(1, np.uint8)) == (0.0, 0, 0)
    np.testing.assert_array_equal(w_in, before[0])
    np.testing.assert_array_equal(w_out, before[1])


@pytest.mark.parametrize("objective", ["negative-sampling", "naive-softmax"])
def test_a_running_job_sees_the_stop_flag_set_by_another_thread(objective):
    import threading
    # One sentence far too long to finish in the test's lifetime (about a minute for the naive softmax):
    # only a flag read inside the sentence ends it.
    vocab_size = 20_000 if objective == "naive-softmax" else 50
    tokens = np.random.default_rng(0).integers(0, vocab_size, 10_000_000 if vocab_size == 50 else 100_000)
    tokens = tokens.astype(np.int32)
    starts = np.array([0, len(tokens)], dtype=np.int64)
    keep, accept = np.ones(vocab_size, np.float32), np.ones(vocab_size, np.float32)
    alias = np.arange(vocab_size, dtype=np.int32)
    w_in, w_out = _params(vocab_size=vocab_size, dim=100)
    stop, result = np.zeros(1, np.uint8), []
    worker = threading.Thread(target=lambda: result.append(
        _run_job(objective, tokens, starts, w_in, w_out, keep, accept, alias, stop)), daemon=True)
    worker.start()
    worker.join(0.3)
    stop[0] = 1
    worker.join(30)
    assert not worker.is_alive() and result[0][2] == 0  # stopped inside its only sentence


@pytest.mark.parametrize("window", [1, 2, 5])
def test_effective_window_is_uniform_on_one_to_window(window):
    # Far from the sentence's ends, position i gets exactly kept[i - r .. i + r] but i for a reach r.
    draws, n_kept = 20_000, 2 * window + 1
    kept, contexts = np.arange(100, 100 + n_kept, dtype=np.int32), np.empty(2 * window, np.int32)
    state, i = kernels.seed_state(11), window
    reaches = np.zeros(window + 1, np.int64)
    for _ in range(draws):
        m = kernels._gather_window(kept, n_kept, i, window, state, contexts)
        reach = m // 2
        assert m == 2 * reach and 1 <= reach <= window
        np.testing.assert_array_equal(contexts[:m], np.delete(kept[i - reach:i + reach + 1], reach))
        reaches[reach] += 1
    p = 1 / window
    assert np.all(np.abs(reaches[1:] - draws * p) <= 5 * np.sqrt(draws * p * (1 - p)))


def test_sgns_job_pairs_match_a_uniform_window_of_five():
    # Sentences of every length 1..12, no subsampling: the expected number of (centre, context) pairs
    # under reach r ~ U{1..5} is sum_i E[min(i, r) + min(L - 1 - i, r)], computed here by brute force.
    window, reps = 5, 300
    lengths = np.tile(np.arange(1, 13), reps)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.random.default_rng(4).integers(0, 50, starts[-1]).astype(np.int32)
    keep, accept, alias = np.ones(50, np.float32), np.ones(50, np.float32), np.arange(50, dtype=np.int32)
    w_in, w_out = _params(vocab_size=50, dim=4)
    _, pairs, _ = kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, window, 1, 0.0, 0.0, 2,
                                   _not_stopped())
    mean = var = 0.0
    for length in lengths:
        for i in range(length):
            counts = np.array([min(i, r) + min(length - 1 - i, r) for r in range(1, window + 1)], float)
            mean, var = mean + counts.mean(), var + counts.var()
    assert abs(pairs - mean) < 5 * np.sqrt(var)


@pytest.mark.parametrize("objective", ["negative-sampling", "naive-softmax"])
def test_a_job_interpolates_its_learning_rate_sentence_by_sentence(objective):
    # Window 1, nothing subsampled and every negative redirected to word 0: no randomness is left, so the
    # job must equal its updates replayed by hand, sentence s at alpha_lo + (alpha_hi - alpha_lo) * starts[s] / T.
    tokens, starts = np.array([1, 2, 3, 4, 5, 6], np.int32), np.array([0, 2, 3, 6], np.int64)
    keep, accept, alias = np.ones(8, np.float32), np.zeros(8, np.float32), np.zeros(8, np.int32)
    alpha_lo, alpha_hi = 0.2, 0.05
    w_in, w_out = _params(vocab_size=8, dim=5, seed=4)
    want_in, want_out = w_in.copy(), w_out.copy()
    if objective == "negative-sampling":
        kernels.sgns_job(tokens, starts, w_in, w_out, keep, accept, alias, 1, 2, alpha_lo, alpha_hi, 9,
                         _not_stopped())
    else:
        kernels.naive_softmax_job(tokens, starts, w_in, w_out, keep, 1, alpha_lo, alpha_hi, 9, _not_stopped())
    for s in range(len(starts) - 1):
        alpha = alpha_lo + (alpha_hi - alpha_lo) * starts[s] / len(tokens)
        sentence = tokens[starts[s]:starts[s + 1]]
        for i in range(len(sentence)):
            contexts = np.array([sentence[p] for p in (i - 1, i + 1) if 0 <= p < len(sentence)], np.int32)
            if len(contexts) == 0:
                continue
            if objective == "negative-sampling":
                scores = np.empty((4, len(contexts) * 3), np.float32)
                kernels.sgns_update(sentence[i], contexts, len(contexts), np.zeros(2, np.int32), want_in,
                                    want_out, np.float32(alpha), scores, np.empty((3, 5), np.float32))
            else:
                kernels.naive_softmax_update(sentence[i], contexts, len(contexts), want_in, want_out, alpha,
                                             np.empty(8), np.empty(5, np.float32))
    np.testing.assert_allclose(w_in, want_in, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w_out, want_out, rtol=1e-6, atol=1e-7)


def test_kernels_start_without_importing_scipy_linalg_and_numba_linear_algebra_still_works():
    """trainer.jit keeps numba's BLAS probe from importing scipy.linalg (0.2-0.3 s of every command); numba's
    own linear algebra must still find it when a function that needs it is compiled."""
    import subprocess
    import sys
    code = """if True:
        import sys
        import numpy as np
        from trainer import corpus, kernels
        kernels.seed_state(1)
        assert "scipy.linalg" not in sys.modules, "scipy.linalg was imported"
        import numba
        dot = numba.njit(lambda a, b: np.dot(a, b))
        assert dot(np.ones(3), np.full(3, 2.0)) == 6.0
        assert "scipy.linalg" in sys.modules
        print("ok")
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
