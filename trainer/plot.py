"""Pictures of a model: a labelled 2D PCA scatter of chosen words or of a word's neighbours, and the loss curve."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer import artifact

FIGSIZE = (8.0, 6.0)  # inches; at DPI this is a 960 x 720 PNG
DPI = 120
# Label positions tried in turn beside each point: offset in points, horizontal and vertical alignment; the
# farther ones get a leader line back to their point.
LABEL_SPOTS = [(dx * r, dy * r, ha, va) for r in (1, 2.5, 4)
               for dx, dy, ha, va in [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
                                      (-4, -3, "right", "top"), (0, 5, "center", "bottom"), (0, -5, "center", "top")]]


class PlotError(Exception):
    """A plot that cannot be drawn from this model and these words; the message says why."""


def pca_2d(vectors) -> np.ndarray:
    """(n, N) vectors -> (n, 2) float64 coordinates on the first two principal axes of the centred vectors.

    Each axis's sign is chosen so that its largest loading is positive, so a plot does not flip between runs;
    an axis that the data do not span (fewer than 3 points, or fewer than 2 dimensions) gives zeros."""
    centred = np.asarray(vectors, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)  # (min(n, N), N), rows by decreasing variance
    axes = axes[:2]
    axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    coordinates = np.zeros((len(centred), 2))
    coordinates[:, :len(axes)] = centred @ axes.T
    return coordinates


def nearest(model: artifact.Model, word: str, k: int) -> list[str]:
    """The k words of highest cosine similarity to `word`'s input vector, itself excluded, best first."""
    vectors = np.asarray(model.input_vectors, dtype=np.float32)  # (V, N)
    norms = np.linalg.norm(vectors, axis=1)
    row = model.index[word]
    cosines = vectors @ vectors[row] / np.maximum(norms * norms[row], np.finfo(np.float32).tiny)  # (V,)
    cosines[row] = -np.inf
    k = min(k, model.vocab_size - 1)
    best = np.argpartition(-cosines, k - 1)[:k] if k > 0 else np.zeros(0, dtype=np.int64)
    return [model.words[i] for i in best[np.argsort(-cosines[best], kind="stable")]]


def known_words(model: artifact.Model, words, skip_unknown: bool = False) -> tuple[list[str], list[str]]:
    """`words` without repeats, as (known, unknown): unknown ones raise PlotError naming them all unless
    skip_unknown, which leaves them out of `known`."""
    words = list(dict.fromkeys(words))
    unknown = [w for w in words if w not in model.index]
    if unknown and not skip_unknown:
        raise PlotError(f"not in the vocabulary of {model.path.name}: {' '.join(unknown)} "
                        "(--skip-unknown leaves them out)")
    return [w for w in words if w in model.index], unknown


def plot_words(model: artifact.Model, words: list[str], out, highlight: str | None = None,
               title: str | None = None) -> Path:
    """Write words_figure(...) to `out` as a PNG."""
    return _save_png(words_figure(model, words, highlight, title), out)


def words_figure(model: artifact.Model, words: list[str], highlight: str | None = None, title: str | None = None):
    """A matplotlib Figure: scatter of the words' input vectors projected by pca_2d, each point labelled with
    its word (`highlight` drawn larger, in red). All words must be in the vocabulary."""
    if not words:
        raise PlotError("no words to plot")
    vectors = model.input_vectors[[model.index[w] for w in words]]  # (n, N)
    coordinates = pca_2d(vectors)  # (n, 2)
    fig, (ax,) = _figure()
    special = np.array([w == highlight for w in words])
    ax.scatter(*coordinates[~special].T, s=22, color="tab:blue", zorder=3)
    ax.scatter(*coordinates[special].T, s=90, marker="*", color="tab:red", zorder=4)
    _set_limits(ax, coordinates)
    variance = _explained_variance(vectors, coordinates)
    ax.set_xlabel(f"first principal component ({variance[0]:.0%} of variance)")
    ax.set_ylabel(f"second principal component ({variance[1]:.0%} of variance)")
    ax.set_title(title or f"{model.path.name}: {len(words)} words, PCA of input vectors")
    _place_labels(fig, ax, coordinates, words, special)
    return fig


def plot_loss(model: artifact.Model, out) -> Path:
    """Write a PNG of the training loss recorded in meta.json: per epoch, per point of progress, or both side
    by side."""
    from matplotlib.ticker import EngFormatter, MaxNLocator

    curves = _loss_curves(model)
    fig, axes = _figure(columns=len(curves))
    for ax, (x, y, xlabel, ylabel, marker) in zip(axes, curves):
        ax.plot(x, y, marker=marker)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if xlabel == "words processed":
            ax.xaxis.set_major_formatter(EngFormatter())  # 200k, 1M
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{model.path.name}: training loss")
    return _save_png(fig, out)


def _loss_curves(model: artifact.Model) -> list[tuple]:
    """meta.json's training.loss_per_epoch (list of floats) and training.loss_history (list of
    [words_processed, loss]) as (x, y, x label, y label, marker) curves; PlotError when neither is usable."""
    training = model.meta.get("training")
    training = training if isinstance(training, dict) else {}
    curves = []
    try:
        if training.get("loss_per_epoch"):
            y = np.asarray(training["loss_per_epoch"], dtype=np.float64).reshape(-1)
            curves.append((np.arange(1, len(y) + 1), y, "epoch", "mean training loss", "o"))
        if training.get("loss_history"):
            points = np.asarray(training["loss_history"], dtype=np.float64).reshape(-1, 2)
            curves.append((points[:, 0], points[:, 1], "words processed", "training loss", None))
    except (TypeError, ValueError):
        raise PlotError(f"{model.path}: meta.json's training loss is malformed (loss_per_epoch: a list of "
                        "numbers; loss_history: a list of [words_processed, loss])") from None
    if not curves:
        raise PlotError(f"{model.path}: meta.json records no training loss "
                        "(neither training.loss_per_epoch nor training.loss_history)")
    return curves


# --------------------------------------------------------------------------------------------- drawing

def _figure(columns: int = 1):
    """A figure on the Agg canvas (no pyplot, no global backend) and its (columns,) axes; matplotlib loads
    only here."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGSIZE[0] * (1 if columns == 1 else 0.75 * columns), FIGSIZE[1]), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.1, right=0.96, bottom=0.1, top=0.9, wspace=0.3)  # fixed, so labels can be placed
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _set_limits(ax, coordinates: np.ndarray) -> None:
    """Axes limits around the points, with room for labels at the edges."""
    low, high = coordinates.min(axis=0), coordinates.max(axis=0)
    margin = np.maximum(0.12 * (high - low), 1e-3)
    ax.set_xlim(low[0] - margin[0], high[0] + margin[0])
    ax.set_ylim(low[1] - margin[1], high[1] + margin[1])


def _explained_variance(vectors, coordinates: np.ndarray) -> np.ndarray:
    """(2,) share of the vectors' total variance along each plotted axis."""
    vectors = np.asarray(vectors, dtype=np.float64)
    total = ((vectors - vectors.mean(axis=0)) ** 2).sum()
    return (coordinates ** 2).sum(axis=0) / total if total > 0 else np.zeros(2)


def _place_labels(fig, ax, coordinates: np.ndarray, words: list[str], special: np.ndarray) -> None:
    """Label each point beside it, at the first of LABEL_SPOTS that overlaps no label placed so far, no point and
    stays inside the axes; when none does, at the spot of least overlap."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = ax.transData.transform(coordinates)  # (n, 2) in display pixels
    taken = []  # bounding boxes of placed labels
    for i in np.argsort(~special, kind="stable"):  # the highlighted word first
        style = dict(fontsize=11 if special[i] else 9, fontweight="bold" if special[i] else "normal",
                     color="tab:red" if special[i] else "black", zorder=5)
        best, best_cost = None, np.inf
        for number, (dx, dy, ha, va) in enumerate(LABEL_SPOTS):
            label = ax.annotate(words[i], coordinates[i], xytext=(dx, dy), textcoords="offset points",
                                ha=ha, va=va, **style)
            box = label.get_window_extent(renderer)
            label.remove()
            cost = sum(_overlap(box, other) for other in taken) + _points_inside(box, points, i) * 50.0
            cost += 0 if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) else 1e4
            if cost < best_cost:
                best, best_cost = (number, box), cost
            if best_cost == 0:
                break
        dx, dy, ha, va = LABEL_SPOTS[best[0]]
        leader = dict(arrowstyle="-", color="0.6", lw=0.6, shrinkA=1, shrinkB=3) if best[0] >= 6 else None
        ax.annotate(words[i], coordinates[i], xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                    arrowprops=leader, **style)
        taken.append(best[1])


def _overlap(a, b) -> float:
    """Area shared by two display boxes."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _points_inside(box, points: np.ndarray, own: int) -> int:
    """How many plotted points, other than the labelled one, fall inside the box (grown by the marker size)."""
    pad = 4.0
    inside = ((points[:, 0] > box.x0 - pad) & (points[:, 0] < box.x1 + pad)
              & (points[:, 1] > box.y0 - pad) & (points[:, 1] < box.y1 + pad))
    inside[own] = False
    return int(inside.sum())


def _save_png(fig, out) -> Path:
    """Render `fig` as PNG into a temporary sibling of `out`, then rename it into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with artifact.atomic_file(out) as f:
        fig.savefig(f, format="png", dpi=DPI)
    return out
