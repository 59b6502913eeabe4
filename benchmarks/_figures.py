"""The figure and the short table of headline scores that open a results page.

The clustering, integration and speed pages of docs/benchmarks/ open with a figure of the first
table of one of their sections and a short table of its headline scores, the means over seeds
(:data:`HEADLINES`). Both are read from the table as the page shows it:
``write_section`` redraws them after it writes that section, and

    python benchmarks/_figures.py

redraws all of them from the pages as they are. The perturbation page opens with the figure
that ``perturbation.py`` draws from its own results.
"""

from __future__ import annotations

import ast
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from _common import STATIC, replace_block, section_page

HEADLINE_BLOCK = "headline"
"""Name of the block of a page (``<!-- headline:start -->``, ``<!-- headline:end -->``) that
holds the figure and the short table."""

OUR_MODELS = ("GMVAE", "CGMVAE")
"""Start of the methods that are scgmvae's models, drawn in colour and named in bold."""

CELL = re.compile(
    r"^(?P<mean>-?\d+(?:\.\d+)?|nan)(?: ± (?P<sd>\d+(?:\.\d+)?))?"
    r"(?: \((?P<seeds>[^)]*)\))?x?$"
)
"""A table cell: a value, or mean ± sd with each seed's value in brackets after it, or a ratio
such as ``0.92x``."""


@dataclass(frozen=True)
class Headline:
    """What a page's headline shows of the first table of one of its sections.

    Attributes
    ----------
    metrics
        The columns drawn, one panel each, and shown in the short table, with their labels
        (units included).
    axis_label
        Label of the x axes (what the values are, which way is better).
    caption
        What the figure shows, printed under it.
    scores
        Whether the metrics are scores of at most 1 (the axes end at 1) rather than quantities
        (the axes start at 0).
    transposed
        Whether the table has the metrics as rows and the methods as columns.
    table_only
        Further columns of the short table, not drawn.
    panels_per_row
        Panels side by side before the next row of panels.
    """

    metrics: dict[str, str]
    axis_label: str
    caption: str
    scores: bool = True
    transposed: bool = False
    table_only: dict[str, str] = field(default_factory=dict)
    panels_per_row: int = 3


HEADLINES = {
    "clustering": Headline(
        metrics={"ari": "ARI", "nmi": "NMI"},
        axis_label="higher is better",
        caption=(
            "Unsupervised clustering of three data sets, scored against their labels (adjusted "
            "Rand index and normalised mutual information), one colour per data set; bold: "
            "scgmvae's models. A method without a dot on a data set was not run on it."
        ),
    ),
    "integration": Headline(
        metrics={
            "Batch correction": "Batch correction",
            "Bio conservation": "Bio conservation",
            "Total": "Total",
        },
        axis_label="higher is better",
        caption=(
            "Integration of five Kang donors: scib-metrics' batch-correction and "
            "bio-conservation scores and their total (0.4 batch + 0.6 bio), per method; blue "
            "and bold: scgmvae's models."
        ),
    ),
    "speed": Headline(
        metrics={
            "train s/epoch": "Training (s per epoch)",
            "latent s": "Latent representation (s)",
            "predict s": "predict() (s)",
            "peak RSS (GB)": "Peak memory, RSS (GB)",
        },
        axis_label="lower is better",
        caption=(
            "Time and peak resident memory per method on the Kang cells, every method with the "
            "same layers and batch size, each in its own process; blue and bold: scgmvae's "
            "models."
        ),
        scores=False,
        transposed=True,
        table_only={
            "train time vs scVI": "Training time vs scVI",
            "latent time vs scVI": "Latent representation time vs scVI",
            "predict time vs scVI": "predict() time vs scVI",
        },
        panels_per_row=2,
    ),
}
"""The headline of each page that has one, by the section whose first table it shows."""


def section_text(page: Path, section: str) -> tuple[str, str]:
    """The title and the text below it of section ``section`` of ``page``."""
    found = re.search(
        rf"<!-- {section}:start -->\n## (?P<title>[^\n]*)\n(?P<body>.*?)<!-- {section}:end -->",
        page.read_text(),
        re.S,
    )
    if found is None:
        raise ValueError(f"{page} has no section {section!r}")
    return found["title"], found["body"]


def read_section(page: Path, section: str, after: str | None = None) -> tuple[str, pd.DataFrame]:
    """The title and the first table of section ``section`` of ``page`` (with ``after``, the
    first table below the line that starts with ``after``).

    Returns
    -------
    The title, and the table's cells as text, indexed by its first column (a row label written
    as a tuple, such as ``('kang', 'GMVAE K')``, becomes that tuple).
    """
    title, body = section_text(page, section)
    lines = body.splitlines()
    start = 0
    if after is not None:
        start = next((i + 1 for i, line in enumerate(lines) if line.startswith(after)), len(lines))
    first = next((i for i, line in enumerate(lines) if i >= start and line.startswith("|")), None)
    if first is None:
        below = f" below {after!r}" if after is not None else ""
        raise ValueError(f"section {section!r} of {page} has no table{below}")
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    # the outer pipes give an empty first and last column, the second line is the rule
    table = pd.read_csv(io.StringIO("\n".join(rows)), sep="|", dtype=str, keep_default_na=False)
    table = table.iloc[1:, 1:-1].apply(lambda column: column.str.strip())
    table.columns = [str(column).strip() for column in table.columns]
    table.index = [_row_label(label) for label in table.iloc[:, 0]]
    return title, table.iloc[:, 1:]


def _row_label(label: str) -> str | tuple:
    """A row label as written, or the tuple it spells (pandas writes a MultiIndex so)."""
    try:
        value = ast.literal_eval(label)
    except (ValueError, SyntaxError):
        return label
    return value if isinstance(value, tuple) else label


def cell_values(cell: str) -> tuple[float, float, list[float]]:
    """The mean, the sd (0 if the cell has none) and each seed's value of a table cell; NaN
    for an empty cell.

    Raises
    ------
    ValueError
        For a cell that is not a number, mean ± sd (each seed) or a ratio such as ``0.92x``.
    """
    if not cell:
        return math.nan, math.nan, []
    found = CELL.match(cell)
    if found is None:
        raise ValueError(f"not a number, mean ± sd (each seed) or ratio: {cell!r}")
    seeds = [float(value) for value in found["seeds"].split(",")] if found["seeds"] else []
    return float(found["mean"]), float(found["sd"] or 0), seeds


def long_form(headline: Headline, table: pd.DataFrame) -> pd.DataFrame:
    """One row per method, group (a data set, if the row labels name one) and drawn metric:
    mean, sd and each seed's value."""
    if headline.transposed:
        table = table.T
    rows = []
    for label, cells in table.iterrows():
        group, method = label if isinstance(label, tuple) else ("", label)
        for metric in headline.metrics:
            mean, sd, seeds = cell_values(cells[metric])
            if not math.isnan(mean):
                rows.append(
                    {
                        "method": method,
                        "group": group,
                        "metric": metric,
                        "mean": mean,
                        "sd": sd,
                        "seeds": seeds,
                    }
                )
    return pd.DataFrame(rows)


def short_table(headline: Headline, table: pd.DataFrame) -> pd.DataFrame:
    """The headline scores per method, each cell's mean over seeds (without its sd and the value
    of each seed, so that the table stays narrow), one column per metric (and data set, if the
    row labels name one); transposed like the section's table if that has the methods as
    columns."""
    if headline.transposed:
        table = table.T
    columns = {**headline.metrics, **headline.table_only}
    cells = table[list(columns)].rename(columns=columns).replace(r" ± .*$", "", regex=True)
    if headline.transposed:
        return cells.T
    if not isinstance(cells.index[0], tuple):
        return cells.rename_axis("method")
    cells.index = pd.MultiIndex.from_tuples(cells.index, names=["data", "method"])
    wide = cells.unstack("data")
    groups = list(dict.fromkeys(cells.index.get_level_values("data")))
    methods = list(dict.fromkeys(cells.index.get_level_values("method")))
    wide = wide.reindex(index=methods, columns=[(c, g) for c in columns.values() for g in groups])
    wide.columns = [f"{column}, {group}" for column, group in wide.columns]
    return wide.fillna("").rename_axis("method")


def draw(headline: Headline, title: str, long: pd.DataFrame, path: Path) -> None:
    """Per method (rows) and metric (panels): the mean (a dot), ± sd (a bar) and each seed (a
    tick), one colour per group when there are groups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, MultipleLocator

    methods = list(dict.fromkeys(long["method"]))
    groups = list(dict.fromkeys(long["group"]))
    palette = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9"]  # enough for the data sets so far
    colours = dict(zip(groups, palette, strict=False))
    spread = np.linspace(-0.24, 0.24, len(groups)) if len(groups) > 1 else [0.0]
    offsets = dict(zip(groups, spread, strict=True))  # each group's dot on its own line
    with_seeds = _has_seeds(long)
    metrics = list(headline.metrics)
    n_columns = min(len(metrics), headline.panels_per_row)
    n_rows = math.ceil(len(metrics) / n_columns)
    row_height = 0.3 + 0.1 * len(groups)  # inches per method: room for each group's dot
    fig, axes = plt.subplots(
        n_rows,
        n_columns,
        figsize=(2.6 + 2.2 * n_columns, n_rows * (0.7 + row_height * len(methods)) + 1.1),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, metric in zip(axes.flat, metrics, strict=False):
        shown = long[long["metric"] == metric]
        for y, method in enumerate(methods):
            if y % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="#f1f3f5", zorder=0)
            for _, point in shown[shown["method"] == method].iterrows():
                colour = _colour(method, point["group"], colours)
                yy = y + offsets[point["group"]]
                ax.errorbar(
                    point["mean"],
                    yy,
                    xerr=point["sd"],
                    fmt="o",
                    color=colour,
                    ms=7,
                    elinewidth=2,
                    markeredgecolor="white",
                    zorder=4,
                )
                if len(point["seeds"]) > 1:
                    ax.scatter(
                        point["seeds"],
                        [yy] * len(point["seeds"]),
                        marker="|",
                        s=110,
                        color=colour,
                        alpha=0.65,
                        linewidths=1.5,
                        zorder=3,
                    )
        ax.set_title(headline.metrics[metric], fontsize=12.5)
        left, right = _limits(headline, shown)
        ax.set_xlim(left, right)
        # scores: ticks at round tenths; quantities: few ticks, so that small numbers fit
        if headline.scores:
            ax.xaxis.set_major_locator(MultipleLocator(0.2 if right - left > 0.5 else 0.1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
        ax.tick_params(labelsize=12)
        ax.grid(axis="x", color="#dee2e6", lw=0.7)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(headline.axis_label, fontsize=12)
    axes[0, 0].set_yticks(range(len(methods)), methods)
    axes[0, 0].set_ylim(len(methods) - 0.5, -0.5)
    for ax in axes[:, 0]:
        for label in ax.get_yticklabels():
            if label.get_text().startswith(OUR_MODELS):
                label.set_fontweight("bold")
    if groups != [""]:
        handles = [
            Line2D([], [], ls="", marker="o", color=colours[group], ms=8, label=group)
            for group in groups
        ]
    else:
        handles = [
            Line2D([], [], ls="", marker="o", color=_colour(name, "", colours), ms=8, label=text)
            for name, text in (("GMVAE", "scgmvae's models"), ("", "the others"))
        ]
    handles.append(
        Line2D([], [], color="#495057", lw=2, marker="o", ms=6, label="mean ± sd over seeds")
    )
    if with_seeds:
        handles.append(
            Line2D([], [], ls="", color="#495057", marker="|", ms=11, mew=1.5, label="each seed")
        )
    fig.suptitle(title, fontsize=13, x=0.01, ha="left")
    n_legend_columns = 3 if len(handles) > 4 else len(handles)  # more would not fit
    fig.legend(
        # matplotlib fills a legend column by column: this order reads row by row
        handles=[h for i in range(n_legend_columns) for h in handles[i::n_legend_columns]],
        loc="outside lower center",
        ncol=n_legend_columns,
        frameon=False,
        fontsize=12,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _colour(method: str, group: str, colours: dict[str, str]) -> str:
    """A group's colour; without groups, blue for scgmvae's models and grey for the others."""
    if group:
        return colours[group]
    return "#3b5bdb" if method.startswith(OUR_MODELS) else "#495057"


def _has_seeds(long: pd.DataFrame) -> bool:
    """Whether the table lists the value of each seed (not only mean ± sd)."""
    return any(len(seeds) > 1 for seeds in long["seeds"])


def _limits(headline: Headline, shown: pd.DataFrame) -> tuple[float, float]:
    """Scores: from a round value below the lowest seed (or mean - sd) up to 1; quantities:
    from 0 to a little above the highest mean + sd."""
    each_seed = [value for seeds in shown["seeds"] for value in seeds]
    lowest = (shown["mean"] - shown["sd"]).tolist() + each_seed
    highest = (shown["mean"] + shown["sd"]).tolist() + each_seed
    if headline.scores:
        return max(0.0, math.floor(min(lowest) * 10 - 0.3) / 10), 1.01
    return 0.0, max(highest) * 1.1


def refresh(section: str) -> None:
    """Redraw the figure of the headline that shows ``section`` (``docs/_static/<section>.png``)
    and rewrite the page's headline block; nothing for a section without a headline."""
    headline = HEADLINES.get(section)
    if headline is None:
        return
    page = section_page(section)
    title, table = read_section(page, section)
    long = long_form(headline, table)
    image = STATIC / f"{section}.png"
    draw(headline, title, long, image)
    with_seeds = _has_seeds(long)
    block = (
        f"<!-- {HEADLINE_BLOCK}:start -->\n"
        f"![{title}: the headline scores per method]({os.path.relpath(image, page.parent)})\n\n"
        f"{headline.caption} Dot: mean over seeds; bar: ± sd"
        + ("; ticks: each seed's value." if with_seeds else ".")
        + " The table gives the means. Both come from the first table of the section "
        + f'"{title}" further down, which lists the sd'
        + (" and every seed's value." if with_seeds else ".")
        # the cells as the section writes them: tabulate would drop their trailing zeros
        + f"\n\n{short_table(headline, table).to_markdown(disable_numparse=True)}\n"
        + f"<!-- {HEADLINE_BLOCK}:end -->"
    )
    page.write_text(replace_block(page.read_text(), HEADLINE_BLOCK, block))


def main() -> None:
    for section in HEADLINES:
        refresh(section)
        print(f"{section_page(section)}: headline of section {section!r} redrawn")


if __name__ == "__main__":
    main()
