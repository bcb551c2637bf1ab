"""Figures for the run report, each rendered to an inline ``<svg>`` element.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: no backend is selected, no global figure registry holds them, so nothing
has to be closed and nothing leaks. Matplotlib and scikit-learn are imported here,
inside the functions, so that ``import keelson`` stays cheap.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

Point = tuple[float, float] | None

BLUE, RED, GREY = "#2563eb", "#dc2626", "#9ca3af"
_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: small, selectable, drawn in the page's fonts
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
# Drop matplotlib's Dublin Core block: it carries URLs and a timestamp.
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
_MAX_LABEL = 40
_MAX_ANNOTATED_CLASSES = 15


def to_svg(name: str, draw: Callable[[Axes], None], size: tuple[float, float] = (4.6, 3.6)) -> str:
    """Call ``draw`` on a fresh axes and return the figure as an ``<svg>`` element.

    ``name`` salts the element ids, so several figures can share one page and the same
    figure renders to the same bytes every time.
    """
    import matplotlib as mpl
    from matplotlib.figure import Figure

    style: dict[RcKeyType, Any] = {**_STYLE, "svg.hashsalt": name}
    buffer = io.StringIO()
    with mpl.rc_context(style):
        figure = Figure(figsize=size, layout="constrained")
        draw(figure.add_subplot())
        figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def label(text: object) -> str:
    """A user string as literal plot text: no mathtext, bounded length."""
    text = str(text)
    if len(text) > _MAX_LABEL:
        text = text[: _MAX_LABEL - 1] + "…"
    return text.replace("$", r"\$")


def roc_svg(y_true: np.ndarray, y_score: np.ndarray, point: Point, threshold: float) -> str:
    """ROC curve with the chance diagonal and the operating point at ``threshold``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y_true, y_score)
    auc = roc_auc_score(y_true, y_score)

    def draw(ax: Axes) -> None:
        ax.plot(fpr, tpr, color=BLUE, label=f"model (AUC = {auc:.3f})")
        ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", label="chance (AUC = 0.5)")
        _finish_unit_axes(ax, point, threshold, "false positive rate", "true positive rate")

    return to_svg("roc", draw)


def pr_svg(y_true: np.ndarray, y_score: np.ndarray, point: Point, threshold: float) -> str:
    """Precision–recall curve with the prevalence line and the operating point."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y_true, y_score)
    auc = average_precision_score(y_true, y_score)
    prevalence = float(np.mean(y_true))

    def draw(ax: Axes) -> None:
        ax.step(recall, precision, where="post", color=BLUE, label=f"model (PR-AUC = {auc:.3f})")
        ax.axhline(prevalence, color=GREY, linestyle="--", label=f"prevalence ({prevalence:.3f})")
        _finish_unit_axes(ax, point, threshold, "recall", "precision")

    return to_svg("pr", draw)


def _finish_unit_axes(ax: Axes, point: Point, threshold: float, x: str, y: str) -> None:
    """Mark the operating point, then label and bound a [0, 1] × [0, 1] plot."""
    if point is not None:
        ax.plot(*point, "o", color=RED, markersize=6, label=f"threshold {threshold:.3g}")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.02), xlabel=x, ylabel=y, aspect="equal")
    ax.legend(loc="best")


def confusion_svg(counts: np.ndarray, labels: Sequence[str]) -> str:
    """A k × k confusion matrix (rows actual, columns predicted), cells annotated while legible."""
    total = max(int(counts.sum()), 1)
    size = len(labels)
    ticks = np.arange(size) + 0.5

    def draw(ax: Axes) -> None:
        ax.pcolormesh(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
        if size <= _MAX_ANNOTATED_CLASSES:
            for (row, col), count in np.ndenumerate(counts):
                dark = count > counts.max() / 2
                text = f"{count:,}\n{count / total:.1%}" if size <= 4 else f"{count:,}"
                colour = "white" if dark else "black"
                font = None if size <= 4 else 7
                ax.text(col + 0.5, row + 0.5, text, ha="center", va="center", color=colour,
                        fontsize=font)  # fmt: skip
        names = [label(name) for name in labels]
        ax.set_xticks(ticks, names, rotation=0 if size <= 4 else 90)
        ax.set_yticks(ticks, names)
        ax.set(xlabel="predicted", ylabel="actual", aspect="equal")
        ax.invert_yaxis()
        ax.grid(visible=False)

    side = 3.4 if size <= 2 else min(2.2 + 0.45 * size, 11.0)
    return to_svg("confusion", draw, size=(side + 0.4, side))


def importance_svg(
    features: Sequence[str], values: Sequence[float], errors: Sequence[float]
) -> str:
    """Horizontal bars of permutation importance, largest on top, ± one std."""
    positions = np.arange(len(features))

    def draw(ax: Axes) -> None:
        ax.barh(positions, values, xerr=errors, color=BLUE, ecolor="#374151", capsize=2)
        ax.set_yticks(positions, [label(name) for name in features])
        ax.invert_yaxis()
        ax.axvline(0, color=GREY, linewidth=0.8)
        ax.set_xlabel("permutation importance (drop in test score, ± std)")
        ax.grid(axis="y", visible=False)

    return to_svg("importance", draw, size=(7.0, 0.26 * len(features) + 1.0))


def search_svg(
    trials: Sequence[int],
    scores: Sequence[float],
    families: Sequence[str],
    metric: str,
    lower_is_better: bool,
) -> str:
    """Score per trial coloured by model family, with the running best as a step line."""
    import matplotlib as mpl

    x, y = np.asarray(trials), np.asarray(scores, dtype=float)
    running = np.minimum.accumulate(y) if lower_is_better else np.maximum.accumulate(y)
    colours = mpl.colormaps["tab10"]
    names = np.asarray(families, dtype=object)

    def draw(ax: Axes) -> None:
        for index, family in enumerate(dict.fromkeys(families)):
            mask = names == family
            ax.scatter(x[mask], y[mask], s=18, color=colours(index % 10), label=label(family))
        ax.step(x, running, where="post", color="#111827", linewidth=1.2, label="best so far")
        ax.set(xlabel="trial", ylabel=label(metric))
        ax.legend(loc="best", fontsize=8)

    return to_svg("search", draw, size=(7.0, 3.4))


def prediction_svg(actual: np.ndarray, predicted: np.ndarray) -> str:
    """Predicted against actual values, one dot per row, with the line of perfect prediction."""
    values = np.concatenate([actual, predicted])
    low, high = float(values.min()), float(values.max())

    def draw(ax: Axes) -> None:
        ax.plot([low, high], [low, high], color=GREY, linestyle="--", label="perfect prediction")
        ax.scatter(actual, predicted, s=7, color=BLUE, alpha=0.45, linewidths=0, label="test rows")
        ax.set(xlabel="actual", ylabel="predicted", aspect="equal")
        ax.legend(loc="best")

    return to_svg("prediction", draw)


def residual_svg(residuals: np.ndarray) -> str:
    """Histogram of residuals (actual − predicted) with a line at zero."""
    bins = int(np.clip(np.sqrt(residuals.size), 10, 50))

    def draw(ax: Axes) -> None:
        ax.hist(residuals, bins=bins, color=BLUE, edgecolor="white", linewidth=0.4)
        ax.axvline(0, color=RED, linewidth=1.0)
        ax.set(xlabel="residual (actual − predicted)", ylabel="rows")
        ax.grid(axis="x", visible=False)

    return to_svg("residuals", draw)


def histogram_svg(name: str, edges: Sequence[float], counts: Sequence[int]) -> str:
    """A small histogram: one bar per bin between consecutive ``edges``."""
    left, widths = np.asarray(edges[:-1], dtype=float), np.diff(np.asarray(edges, dtype=float))
    if widths.size and not widths.any():  # one constant value: a bar of unit width at it
        widths = np.ones_like(widths)
        left = left - 0.5

    def draw(ax: Axes) -> None:
        ax.bar(left, counts, width=widths, align="edge", color=BLUE, edgecolor="white", lw=0.4)
        ax.set_ylabel("rows")
        ax.grid(axis="x", visible=False)

    return to_svg(name, draw, size=(3.3, 1.7))


def bars_svg(name: str, labels: Sequence[object], counts: Sequence[int]) -> str:
    """Horizontal bars of value counts, the most frequent on top."""
    positions = np.arange(len(labels))

    def draw(ax: Axes) -> None:
        ax.barh(positions, counts, color=BLUE)
        ax.set_yticks(positions, [label(value) for value in labels])
        ax.invert_yaxis()
        ax.set_xlabel("rows")
        ax.grid(axis="y", visible=False)

    return to_svg(name, draw, size=(3.3, 0.22 * len(labels) + 0.8))


def heatmap_svg(columns: Sequence[str], values: Sequence[Sequence[float | None]]) -> str:
    """A correlation matrix in [-1, 1]; undefined cells grey; values written when it is small."""
    matrix = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    size = len(columns)
    side = min(2.2 + 0.32 * size, 11.0)

    def draw(ax: Axes) -> None:
        ax.set_facecolor("#e5e7eb")
        mesh = ax.pcolormesh(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-1, vmax=1)
        if size <= 12:
            for (row, col), value in np.ndenumerate(matrix):
                if np.isfinite(value):
                    colour = "white" if abs(value) > 0.6 else "black"
                    text = f"{value:.2f}".replace("-0.00", "0.00")
                    ax.text(col + 0.5, row + 0.5, text, ha="center", va="center",
                            color=colour, fontsize=7)  # fmt: skip
        ticks = np.arange(size) + 0.5
        names = [label(name) for name in columns]
        ax.set_xticks(ticks, names, rotation=90)
        ax.set_yticks(ticks, names)
        ax.set(aspect="equal")
        ax.invert_yaxis()
        ax.grid(visible=False)
        ax.figure.colorbar(mesh, ax=ax, shrink=0.8, label="Pearson r")

    return to_svg("correlations", draw, size=(side + 1.2, side))


def calibration_svg(before: list[dict[str, Any]], after: list[dict[str, Any]] | None) -> str:
    """Reliability diagram: observed rate against mean predicted probability per bin.

    Points are ``reliability_curve`` bins; the diagonal is perfect calibration.
    """

    def line(ax: Axes, points: list[dict[str, Any]], colour: str, name: str) -> None:
        x = [point["mean_predicted"] for point in points]
        y = [point["observed_rate"] for point in points]
        ax.plot(x, y, "o-", color=colour, markersize=4, label=name)

    def draw(ax: Axes) -> None:
        ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", label="perfectly calibrated")
        if after is None:
            line(ax, before, BLUE, "model")
        else:
            line(ax, before, RED, "before calibration")
            line(ax, after, BLUE, "after calibration")
        _finish_unit_axes(ax, None, 0.0, "mean predicted probability", "observed rate")

    return to_svg("calibration", draw)


def learning_curve_svg(points: list[dict[str, Any]], metric: str) -> str:
    """Training and cross-validated score against training rows, the CV score ± one std."""
    ordered = sorted(points, key=lambda point: point["rows"])
    rows = np.array([point["rows"] for point in ordered], dtype=float)
    train = np.array([point["train_score"] for point in ordered], dtype=float)
    cv = np.array([point["cv_score"] for point in ordered], dtype=float)
    std = np.array([point["cv_std"] for point in ordered], dtype=float)

    def draw(ax: Axes) -> None:
        ax.fill_between(rows, cv - std, cv + std, color=BLUE, alpha=0.15, linewidth=0)
        ax.plot(rows, train, "o--", color=RED, markersize=4, label="training")
        ax.plot(rows, cv, "o-", color=BLUE, markersize=4, label="cross-validation (± std)")
        ax.set(xlabel="training rows", ylabel=label(metric))
        ax.legend(loc="best")

    return to_svg("learning_curve", draw)
