"""The cache entry is checked, never trusted: damaged files are rebuilt and never served, the default cache
folder is private, and a write that fails leaves no partial file and no manifest vouching for one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from service import derived, indexes, precompute, settings
from service.embeddings import Embeddings
from tests.service.conftest import DIM, VOCAB
from tests.service.test_embeddings import clustered_model, cosine_ranking, numpy_softmax
from trainer import artifact
from trainer.artifact import ModelError

K = 100  # MAX_K's default: the depth of the tables of the 600-word model


def open_worker(model) -> Embeddings:
    """What a gunicorn worker does: map the prepared data, or prepare it itself."""
    config = settings.load({"MODEL_DIR": model.path})
    return Embeddings(model, derived.open_prepared(model, config), config)


def assert_serves_brute_force(served: Embeddings, model) -> None:
    """Every word found at its own row; neighbours, by word and by vector, and context probabilities as
    numpy computes them."""
    assert [served.row(word) for word in model.words] == list(range(model.vocab_size))
    for row in (0, 1, 5, 299, model.vocab_size - 1):
        expected = cosine_ranking(model.input_vectors, model.input_vectors[row], exclude={row})[:20]
        got = served.similar(model.words[row], 20)
        assert [w for w, _ in got] == [model.words[i] for i, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)
    query = np.random.default_rng(7).standard_normal(model.dim)
    expected = cosine_ranking(model.input_vectors, query)[:20]
    got = served.similar_to_vector(query.tolist(), 20)
    assert [w for w, _ in got] == [model.words[i] for i, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)
    for word in ("king", "w42"):
        probs = numpy_softmax(model, word)
        order = np.argsort(-probs, kind="stable")[:10]
        got = served.context_probs(word, 10)
        assert [w for w, _ in got] == [model.words[i] for i in order]
        np.testing.assert_allclose([p for _, p in got], probs[order], rtol=1e-5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPGRAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SKIPGRAM_INDEX", "flat")
    return tmp_path / "cache"


@pytest.fixture
def entry(cache, model):
    """The entry `python -m service.precompute` built for the small model: exact index and both tables."""
    assert precompute.main([str(model.path), "--threads", "1"]) == 0
    folder = derived.cache_folder(model, cache)
    assert {f"similar-top{K}-ids.npy", f"context-top{K}-ids.npy", "unit.faiss"} <= set(os.listdir(folder))
    return folder


@pytest.fixture
def originals(entry):
    """name -> bytes of every file of the entry as first built."""
    return {path.name: path.read_bytes() for path in entry.iterdir() if path.is_file()}


def manifest_sizes(folder) -> dict[str, int]:
    return json.loads((folder / derived.MANIFEST).read_text())["files"]


# ------------------------------------------------------------------------------------------- damages

def truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def rewrite(path, change):
    array = np.load(path)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, change(array))


def out_of_range(ids):
    ids = ids.copy()
    ids[0, 0], ids[1, :3] = len(ids) + 5, -1
    return ids


def not_a_permutation(rows):
    rows = rows.copy()
    rows[5] = rows[6]  # one row twice, another never
    return rows


def swapped(rows):
    rows = rows.copy()
    rows[[0, 1]] = rows[[1, 0]]  # the first two words out of order
    return rows


def not_finite(values):
    values = values.copy()
    values[3] = np.nan
    return values


def scaled_unit(path):
    """unit.faiss of the same size whose vectors are twice their length (the codes end the file)."""
    data = bytearray(path.read_bytes())
    codes = np.frombuffer(data, np.float32, count=VOCAB * DIM, offset=len(data) - VOCAB * DIM * 4)
    data[-codes.nbytes:] = (codes * 2).tobytes()
    path.write_bytes(bytes(data))


def grown(damage):
    """The damage, then bytes appended, which neither numpy nor FAISS reads: only the size tells."""
    def apply(path):
        damage(path)
        with open(path, "ab") as f:
            f.write(b"\0" * 64)
    return apply


DAMAGES = {  # id: (file, damage)
    "truncated table": (f"similar-top{K}-scores.npy", truncate),
    "table of another dtype": (f"similar-top{K}-scores.npy", lambda p: rewrite(p, lambda a: a.astype(np.float16))),
    "ids outside the vocabulary": (f"similar-top{K}-ids.npy", lambda p: rewrite(p, out_of_range)),
    "context ids outside the vocabulary": (f"context-top{K}-ids.npy", lambda p: rewrite(p, out_of_range)),
    "non-finite normaliser": ("context-lse.npy", lambda p: rewrite(p, not_finite)),
    "truncated unit.faiss": ("unit.faiss", truncate),
    "unit vectors not of unit length": ("unit.faiss", scaled_unit),
    "word rows not a permutation": ("words-rows.npy", lambda p: rewrite(p, not_a_permutation)),
    "word byte order not a permutation": ("words-sorted.npy", lambda p: rewrite(p, not_a_permutation)),
    "word byte order out of order": ("words-sorted.npy", lambda p: rewrite(p, swapped)),
}


@pytest.mark.parametrize("name, damage", DAMAGES.values(), ids=DAMAGES)
def test_a_damaged_file_is_rebuilt_by_the_next_precompute(entry, originals, model, name, damage):
    damage(entry / name)
    assert (entry / name).read_bytes() != originals[name]
    assert precompute.main([str(model.path), "--threads", "1"]) == 0
    assert (entry / name).read_bytes() == originals[name]  # built again, as the first time
    assert manifest_sizes(entry) == {path.name: path.stat().st_size for path in entry.iterdir()
                                     if path.name.endswith((".npy", ".faiss"))}
    assert_serves_brute_force(open_worker(model), model)


GROWN = {  # damages a worker would map without complaint were it not for the size the manifest records
    "ids outside the vocabulary": (f"similar-top{K}-ids.npy", grown(lambda p: rewrite(p, out_of_range))),
    "unit vectors not of unit length": ("unit.faiss", grown(scaled_unit)),
    "word rows not a permutation": ("words-rows.npy", grown(lambda p: rewrite(p, not_a_permutation))),
    "truncated table": (f"context-top{K}-scores.npy", truncate),
}


@pytest.mark.parametrize("name, damage", GROWN.values(), ids=GROWN)
def test_a_worker_prepares_again_when_a_file_is_not_the_size_prepared(entry, originals, model, name, damage):
    damage(entry / name)
    assert (entry / name).stat().st_size != manifest_sizes(entry)[name]
    served = open_worker(model)
    assert_serves_brute_force(served, model)
    assert (entry / name).read_bytes() == originals[name]  # prepared again, and kept for the next worker


# --------------------------------------------------------------------------------------- the ivf dial

IVF = {"INDEX": "ivf", "IVF_RECALL": 0.96}


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """3,000 x 32 vectors around 60 centres with much noise: 55 IVF lists, a word's neighbours spread over
    a dozen (the dial tuned is 12 lists and 50 candidates)."""
    return clustered_model(tmp_path_factory.mktemp("clustered") / "model", noise=1.2)


def prepared(model, cache, **extra):
    return derived.prepare(model, settings.load({"MODEL_DIR": model.path, "CACHE_DIR": cache, **IVF, **extra}))


def test_the_ivf_dial_is_the_cheapest_that_reaches_the_recall_asked(tmp_path, clustered):
    chosen = prepared(clustered, tmp_path / "cache")
    dial, index = chosen.ivf_dial, chosen.index
    assert dial.recall >= IVF["IVF_RECALL"]
    assert (dial.nprobe, dial.candidates) != (index.nlist, indexes.CANDIDATE_STEPS[-1])  # something was saved
    cost = indexes.query_cost(dial.nprobe, dial.candidates, index)
    for nprobe in [p for p in indexes.PROBE_STEPS if p < index.nlist] + [index.nlist]:  # every other frontier
        other = indexes.tune_ivf(index, chosen.unit_index, IVF["IVF_RECALL"], nprobe=nprobe)
        assert other.nprobe == nprobe and other.candidates in indexes.CANDIDATE_STEPS
        if other.recall >= IVF["IVF_RECALL"]:
            assert indexes.query_cost(other.nprobe, other.candidates, index) >= cost
        if nprobe < dial.nprobe:
            assert other.recall < IVF["IVF_RECALL"] or other.candidates > dial.candidates
    # what the sample measured is what the service then recalls over all words
    config = {"MODEL_DIR": clustered.path, "CACHE_DIR": tmp_path / "cache"}
    served = Embeddings(clustered, derived.open_prepared(clustered, settings.load({**config, **IVF})))
    exact = Embeddings(clustered, derived.prepare(clustered, settings.load({**config, "INDEX": "flat",
                                                                            "TABLES_MAX_COST": 0})))
    words = clustered.words[::3]
    recall = np.mean([len({w for w, _ in exact.similar(word, 10)} & {w for w, _ in served.similar(word, 10)})
                      for word in words]) / 10
    print(f"ivf dial {dial}: recall@10 over {len(words)} words {recall:.4f}")
    assert recall == pytest.approx(dial.recall, abs=0.03)
    assert served.describe()["index"] == {"type": "ivf", "exact": False, "nlist": index.nlist, "nprobe": dial.nprobe,
                                          "candidates": dial.candidates, "tuned_recall": dial.recall}


def test_deeper_ivf_lists_re_rank_more_candidates(tmp_path, clustered):
    """Candidates are counted for k = 10, as the dial is tuned; at k = 50 five times as many are re-ranked.
    (Every list probed here: at k = 50 the 12 lists tuned for k = 10 hold only about 0.91 of the 50.)"""
    config = {"MODEL_DIR": clustered.path, "CACHE_DIR": tmp_path / "cache"}
    fixed = {**IVF, "IVF_NPROBE": 55, "IVF_CANDIDATES": 50}
    derived.prepare(clustered, settings.load({**config, **fixed}))
    served = Embeddings(clustered, derived.open_prepared(clustered, settings.load({**config, **fixed})))
    exact = Embeddings(clustered, derived.prepare(clustered, settings.load({**config, "INDEX": "flat",
                                                                            "TABLES_MAX_COST": 0})))
    words = clustered.words[::10]
    for k in (10, 50):
        recall = np.mean([len({w for w, _ in exact.similar(word, k)} & {w for w, _ in served.similar(word, k)})
                          for word in words]) / k
        print(f"every list probed, 50 candidates for k = 10: recall@{k} over {len(words)} words {recall:.4f}")
        assert recall >= 0.98


def test_an_ivf_setting_given_is_kept_and_the_other_tuned(tmp_path, clustered):
    cache = tmp_path / "cache"
    dial = prepared(clustered, cache, IVF_NPROBE=3).ivf_dial
    assert dial.nprobe == 3 and dial.candidates in indexes.CANDIDATE_STEPS
    entry = derived.cache_folder(clustered, cache)
    assert [p.name for p in entry.glob("*dial*")] == ["ivf-nlist55-pq16-residual-dial-recall0.96-nprobe3.json"]
    both = prepared(clustered, cache, IVF_NPROBE=5, IVF_CANDIDATES=70).ivf_dial
    assert both == indexes.IvfDial(5, 70, None)
    assert len(list(entry.glob("*dial*"))) == 1  # nothing to tune, nothing kept


def test_more_probes_asked_than_lists_probe_every_list(tmp_path, clustered):
    cache = tmp_path / "cache"
    first = prepared(clustered, cache, IVF_NPROBE=64)
    assert first.ivf_dial.nprobe == first.index.nlist == 55
    (path,) = derived.cache_folder(clustered, cache).glob("*dial*.json")
    written = path.stat().st_mtime_ns
    again = prepared(clustered, cache, IVF_NPROBE=64)  # the dial kept is read back, not refused
    assert again.ivf_dial == first.ivf_dial and path.stat().st_mtime_ns == written
    both = prepared(clustered, cache, IVF_NPROBE=64, IVF_CANDIDATES=70).ivf_dial
    assert both == indexes.IvfDial(55, 70, None)


def test_a_dial_of_other_settings_is_tuned_again(tmp_path, clustered):
    cache = tmp_path / "cache"
    first = prepared(clustered, cache, IVF_NPROBE=3).ivf_dial
    (path,) = derived.cache_folder(clustered, cache).glob("*dial*.json")
    path.write_text('{"nprobe": 4, "candidates": 50, "recall": 0.99}')  # not the nprobe asked
    assert prepared(clustered, cache, IVF_NPROBE=3).ivf_dial == first


DIAL_DAMAGES = {
    "not JSON": b"{nprobe",
    "no candidates": b'{"nprobe": 2, "recall": 0.99}',
    "no probe": b'{"nprobe": 0, "candidates": 100, "recall": 0.99}',
    "more probes than lists": b'{"nprobe": 56, "candidates": 100, "recall": 0.99}',
    "a probe count that is not an integer": b'{"nprobe": 2.5, "candidates": 100, "recall": 0.99}',
    "no candidate": b'{"nprobe": 2, "candidates": 0, "recall": 0.99}',
    "a recall that is not one": b'{"nprobe": 2, "candidates": 100, "recall": "high"}',
    "not an object": b"[2, 100, 0.99]",
}


@pytest.mark.parametrize("damage", DIAL_DAMAGES.values(), ids=DIAL_DAMAGES)
def test_a_damaged_ivf_dial_is_tuned_again(tmp_path, clustered, damage):
    cache = tmp_path / "cache"
    first = prepared(clustered, cache).ivf_dial
    (path,) = derived.cache_folder(clustered, cache).glob("*dial*.json")
    original = path.read_bytes()
    path.write_bytes(damage)
    assert prepared(clustered, cache).ivf_dial == first
    assert path.read_bytes() == original


@pytest.mark.parametrize("removable", [True, False], ids=["stale dials removed", "stale dials left"])
def test_an_ivf_index_built_again_is_tuned_again(tmp_path, clustered, monkeypatch, removable):
    cache = tmp_path / "cache"
    first = prepared(clustered, cache).ivf_dial
    entry = derived.cache_folder(clustered, cache)
    (dial_file,) = entry.glob("*dial*.json")
    dial_file.write_text('{"nprobe": 55, "candidates": 1600, "recall": 1.0}')  # valid, but not what was tuned
    (index_file,) = entry.glob("ivf-*.faiss")
    truncate(index_file)
    unlink = Path.unlink

    def refusing(path, missing_ok=False):  # a dial that cannot be removed is not read either
        if "-dial-" in path.name:
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, missing_ok=missing_ok)
    if not removable:
        monkeypatch.setattr(Path, "unlink", refusing)
    assert prepared(clustered, cache).ivf_dial == first


# ---------------------------------------------------------------------------- the default cache folder

@pytest.fixture
def default_cache(tmp_path, monkeypatch):
    """The default cache folder moved to a temporary path; SKIPGRAM_CACHE_DIR unset."""
    folder = tmp_path / "skipgram-cache-default"
    monkeypatch.setattr(settings, "default_cache_dir", lambda: str(folder))
    monkeypatch.delenv("SKIPGRAM_CACHE_DIR", raising=False)
    return folder


def test_the_default_cache_folder_is_created_private(default_cache, model):
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        assert precompute.main([str(model.path), "--threads", "1"]) == 0
    finally:
        os.umask(old_umask)
    entry = derived.cache_folder(model, default_cache)
    assert (default_cache.stat().st_mode & 0o777, default_cache.stat().st_uid) == (0o700, os.getuid())
    assert entry.stat().st_mode & 0o777 == 0o700
    assert derived.MANIFEST in os.listdir(entry)


@pytest.mark.parametrize("owner, mode", [(65534, 0o700), (None, 0o777), (None, 0o750)],
                         ids=["another user's", "open to all", "open to the group"])
def test_a_default_cache_folder_not_private_to_this_user_is_refused(default_cache, model, owner, mode):
    default_cache.mkdir()
    os.chmod(default_cache, mode)
    if owner is not None:
        os.chown(default_cache, owner, owner)  # the tests run as root
    with pytest.raises(ModelError) as raised:
        derived.prepare(model, settings.load({"MODEL_DIR": model.path}))
    assert str(default_cache) in str(raised.value) and "SKIPGRAM_CACHE_DIR" in str(raised.value)
    assert os.listdir(default_cache) == []  # nothing was written into it


def test_a_set_cache_folder_serves_without_any_temporary_folder(tmp_path, model, monkeypatch):
    """A read-only root file system has no temporary folder: a set CACHE_DIR is still written and used."""
    def no_temporary_folder():
        raise FileNotFoundError(2, "No usable temporary directory found")
    monkeypatch.setattr(tempfile, "gettempdir", no_temporary_folder)
    cache = tmp_path / "cache"
    config = settings.load({"MODEL_DIR": model.path, "CACHE_DIR": cache})
    derived.prepare(model, config)
    assert derived.MANIFEST in os.listdir(derived.cache_folder(model, cache))
    assert_serves_brute_force(Embeddings(model, derived.open_prepared(model, config), config), model)


# ------------------------------------------------------------------------------------ atomic writes

def leftovers(folder) -> list[str]:
    """Temporary files of atomic writes (.NAME.tmp-PID, .NAME.PID.tmp) and write probes."""
    return [name for name in os.listdir(folder) if ".tmp" in name or name.startswith(".probe")]


def precompute_with_file_size_limit(model, cache, limit: int) -> subprocess.CompletedProcess:
    """The precompute command in a process that cannot write files beyond `limit` bytes (a full disk:
    writes fail with EFBIG midway through a file)."""
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
            "from service import precompute\n"
            f"sys.exit(precompute.main([{str(model.path)!r}, '--threads', '1']))\n")
    env = {**os.environ, "SKIPGRAM_CACHE_DIR": str(cache), "SKIPGRAM_INDEX": "flat"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_a_prepare_leaves_no_temporary_file(entry):
    assert leftovers(entry) == [] and leftovers(entry.parent) == []


@pytest.mark.parametrize("limit", [20_000, 100_000], ids=["unit.faiss too large", "tables too large"])
def test_a_write_failing_midway_leaves_no_partial_file_and_the_command_still_succeeds(
        tmp_path, model, originals, limit):
    cache = tmp_path / "small-disk"
    result = precompute_with_file_size_limit(model, cache, limit)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == model.digest
    folder = derived.cache_folder(model, cache)
    names = {path.name for path in folder.iterdir() if path.name.endswith((".npy", ".faiss"))}
    assert names < set(originals)  # some files could not be written...
    assert all((folder / name).read_bytes() == originals[name] for name in names)  # ...and none was half written
    assert leftovers(folder) == []
    # a worker of that server prepares for itself what the entry lacks
    config = settings.load({"MODEL_DIR": model.path, "CACHE_DIR": cache})
    assert_serves_brute_force(Embeddings(model, derived.open_prepared(model, config), config), model)


def test_a_damaged_file_that_cannot_be_rewritten_is_not_vouched_for(entry, cache, model):
    """A same-size damage the manifest cannot tell; the precompute that finds it cannot write the rebuilt
    table (full disk): the workers must not map the damaged file."""
    rewrite(entry / f"similar-top{K}-ids.npy", out_of_range)
    result = precompute_with_file_size_limit(model, cache, 100_000)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_serves_brute_force(open_worker(model), model)
