"""Tests of trainer.plot: the PCA projection, neighbours, the PNGs of each mode and the command line's errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainer import artifact, cli
from trainer.plot import nearest, pca_2d, words_figure

COUNTRIES = "france germany italy spain portugal greece poland sweden norway egypt".split()
ANIMALS = "dog cat horse cow sheep lion tiger wolf bear rabbit".split()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _clustered(rng, n_fillers=50, dim=20):
    """Words and (V, dim) vectors: countries around one centre, animals around another, fillers near 0."""
    centres = {"country": 2 * rng.normal(size=dim), "animal": 2 * rng.normal(size=dim)}
    words = COUNTRIES + ANIMALS + [f"filler{i}" for i in range(n_fillers)]
    vectors = np.array([centres.get("country" if w in COUNTRIES else "animal" if w in ANIMALS else "", 0)
                        + 0.5 * rng.normal(size=dim) for w in words])
    return words, vectors


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{'full': both loss records, 'epochs': loss_per_epoch only, 'history': loss_history only, 'none': no
    training record}, all over the same clustered vectors."""
    words, vectors = _clustered(np.random.default_rng(5))
    folder = tmp_path_factory.mktemp("models")
    epochs = [4.1, 2.9, 2.2, 1.9, 1.8]
    history = [[10000 * i, 4.0 / (1 + i)] for i in range(30)]
    trainings = {"full": {"loss_per_epoch": epochs, "loss_history": history}, "epochs": {"loss_per_epoch": epochs},
                 "history": {"loss_history": history}, "none": None}
    return {name: artifact.save(folder / name, words, np.arange(len(words))[::-1], vectors,
                                meta={"training": training} if training else None)
            for name, training in trainings.items()}


# ------------------------------------------------------------------------------------------------------- PCA

def test_pca_matches_numpy_svd_projection():
    x = np.random.default_rng(0).normal(size=(12, 7))
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    expected = u[:, :2] * s[:2]  # (12, 2): scores on the first two principal axes
    coordinates = pca_2d(x)
    assert coordinates.shape == (12, 2)
    signs = np.sign((coordinates * expected).sum(axis=0))  # each axis is defined up to its sign
    np.testing.assert_allclose(coordinates, expected * signs, atol=1e-10)


def test_pca_is_stable_under_reordering_and_float32():
    x = np.random.default_rng(1).normal(size=(9, 5))
    order = np.random.default_rng(2).permutation(9)
    np.testing.assert_allclose(pca_2d(x)[order], pca_2d(x[order]), atol=1e-10)
    np.testing.assert_allclose(pca_2d(x.astype(np.float32)), pca_2d(x), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 4), (2, 4), (5, 1)])
def test_pca_degenerate_shapes_give_zeros_where_no_axis_exists(shape):
    x = np.random.default_rng(3).normal(size=shape)
    coordinates = pca_2d(x)
    assert coordinates.shape == (shape[0], 2)
    np.testing.assert_allclose(coordinates[:, 1], 0, atol=1e-12)


def test_pca_separates_planted_clusters():
    words, vectors = _clustered(np.random.default_rng(4), n_fillers=0)
    first = pca_2d(vectors)[:, 0]
    countries, animals = first[:len(COUNTRIES)], first[len(COUNTRIES):]
    assert countries.max() < animals.min() or animals.max() < countries.min()


def test_nearest_finds_the_planted_cluster(models):
    model = artifact.load(models["full"])
    found = nearest(model, "france", 5)
    assert len(found) == 5 and "france" not in found and set(found) <= set(COUNTRIES)
    unit = model.input_vectors / np.linalg.norm(model.input_vectors, axis=1, keepdims=True)
    cosines = [float(unit[model.index["france"]] @ unit[model.index[w]]) for w in found]
    assert cosines == sorted(cosines, reverse=True)
    assert len(nearest(model, "france", 10_000)) == model.vocab_size - 1


def test_labels_do_not_overlap(models):
    fig = words_figure(artifact.load(models["full"]), COUNTRIES + ANIMALS)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    assert ax.get_title().startswith("full: ")  # names the model
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert sorted(text.get_text() for text in ax.texts) == sorted(COUNTRIES + ANIMALS)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    assert all(ax.bbox.contains(b.x0, b.y0) and ax.bbox.contains(b.x1, b.y1) for b in boxes)


# ------------------------------------------------------------------------------------------------ PNG output

def _check_png(path, min_width=600):
    """A PNG with content: the signature, a sensible size, and more than one colour."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)  # (height, width, 4) floats in [0, 1]
    assert image.ndim == 3 and image.shape[0] >= 400 and image.shape[1] >= min_width
    assert image[..., :3].std() > 0.01
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]  # written through a rename
    return image


@pytest.mark.parametrize("arguments, min_width", [
    (["france", "germany", "dog", "cat", "filler3"], 600),
    (["--neighbors", "dog", "--k", "6"], 600),
    (["--loss"], 1000),  # both records: two panels side by side
])
def test_each_mode_writes_a_png(models, tmp_path, capsys, arguments, min_width):
    out = tmp_path / "figures" / "plot.png"
    assert cli.main(["plot", str(models["full"]), *arguments, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    _check_png(out, min_width)


@pytest.mark.parametrize("name", ["epochs", "history"])
def test_loss_plots_whichever_record_exists(models, tmp_path, name):
    out = tmp_path / "loss.png"
    out.write_bytes(b"old")  # replaced whole
    assert cli.main(["plot", str(models[name]), "--loss", "--out", str(out)]) == 0
    _check_png(out)


def test_skip_unknown_drops_them_with_a_warning(models, tmp_path, capsys):
    out = tmp_path / "plot.png"
    code = cli.main(["plot", str(models["full"]), "france", "dragon", "dog", "unicorn", "cat",
                     "--skip-unknown", "--out", str(out)])
    assert code == 0
    assert "warning:" in capsys.readouterr().err
    _check_png(out)


@pytest.mark.parametrize("arguments, message", [
    (["france", "dragon", "unicorn"], "dragon unicorn"),
    (["dragon", "--skip-unknown"], "no words to plot"),
    (["--neighbors", "dragon"], "dragon"),
    (["--neighbors", "dog", "--k", "0"], "--k"),
    (["france", "--loss"], "exactly one"),
    ([], "exactly one"),
])
def test_errors_exit_1_and_write_nothing(models, tmp_path, capsys, arguments, message):
    out = tmp_path / "plot.png"
    assert cli.main(["plot", str(models["full"]), *arguments, "--out", str(out)]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: ") and message in error
    assert list(tmp_path.iterdir()) == []


def test_loss_without_a_record_and_missing_model_exit_1(models, tmp_path, capsys):
    out = tmp_path / "loss.png"
    assert cli.main(["plot", str(models["none"]), "--loss", "--out", str(out)]) == 1
    assert "no training loss" in capsys.readouterr().err
    assert cli.main(["plot", str(tmp_path / "nowhere"), "dog", "--out", str(out)]) == 1
    assert "model folder not found" in capsys.readouterr().err
    assert not out.exists()
