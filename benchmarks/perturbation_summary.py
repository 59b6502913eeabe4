"""One figure and table of every held-out type that ran with the published peers at full size.

The full-size peers ran one or a few held-out types at a time (each type takes hours with
trVAE on two cores), and each run wrote its own section of docs/benchmarks/perturbation.md
with its command. This script reads the per-type table of each of those sections
(:data:`PEER_SECTIONS`, the table "Every score per held-out type and method"), draws every type
in one figure and writes the section ``perturbation_kang6_summary``: LFC R², top-100-DEG R² and
E-distance per type and method, and where CGMVAE stands against the best other row. It does the
same for the runs in scPerturBench's protocol (:data:`SCPERTURBENCH_SECTIONS`, the section
``perturbation_kang6_scperturbench_summary``, with PCC-delta and the published means). With the
further seeds of :data:`SEED_SECTIONS` it writes a second section,
``perturbation_kang6_three_seeds``: CGMVAE, scVI arithmetic, the model-free and the reference
rows over three seeds (and the peers where they ran further seeds), with the noise-ceiling
goal of the overview per type. It trains nothing; rerun it after one of those sections
changes:

    python benchmarks/perturbation_summary.py
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd
from _common import RESULTS, mean_sd, section_page, setup_threads, write_section
from _figures import cell_values, read_section, section_text
from perturbation import (
    BOUND_ROW,
    CEILING_ROW,
    CONTROL_ROW,
    complete_types,
    figure,
    published_means,
)

SECTION = "perturbation_kang6_summary"
PEER_SECTIONS = (
    "perturbation_kang6_peers",
    "perturbation_kang6_peers_cd16",
    "perturbation_kang6_trvae_cd16",
    "perturbation_kang6_peers_cd8",
    "perturbation_kang6_peers_nk",
    "perturbation_kang6_peers_dc",
    "perturbation_kang6_peers_tact",
    "perturbation_kang6_peers_cd4mem",
    "perturbation_kang6_trvae_cd4mem",
)
"""The sections of the full-size runs with the published peers, one or more types each."""
SEED_SECTIONS = (
    "perturbation_kang6_seeds12_a",
    "perturbation_kang6_seeds12_b",
    "perturbation_kang6_seeds12_c",
    "perturbation_kang6_seeds12_d",
    "perturbation_kang6_scgen_b_seeds12",
    "perturbation_kang6_scpram_dc_seeds12",
    "perturbation_kang6_trvae_b_seed2",
)
"""Full-size runs of further seeds: CGMVAE, scVI arithmetic, the model-free and the reference
rows (the first four, run in parallel over disjoint types), then runs of peers on one type
(scGen on B, with trVAE's stored seed 1; scPRAM on DC; trVAE on B). With seed 0 of
:data:`PEER_SECTIONS` they make the three-seed section. A section's seeds start at the
``--first-seed`` of its command, and a method with fewer seeds than its section is read as
having run the first of them."""
FIRST_SEED = re.compile(r"--first-seed (\d+)")
THREE_SEEDS_SECTION = "perturbation_kang6_three_seeds"
CEILING_GOAL = 0.05
"""The goal of the overview: every held-out type within this much of its noise ceiling (LFC
R²)."""
DECODED_ROWS = ("CGMVAE route z", "CGMVAE route w", CEILING_ROW)
"""The rows of the pseudobulk table: the model's decoded cells, and two halves of the real
stimulated cells against each other."""
PER_TYPE_TABLE = "Every score per held-out type and method"
"""The line of a section that its per-type table follows."""
SCORES = {
    "r2_lfc_top_degs": "LFC R² on the top-100 DEGs",
    "r2_top_degs": "R² of means on the top-100 DEGs",
    "e_distance": "E-distance (lower is better)",
}
"""The scores of the tables, with their titles."""
FIGURE_PANELS = {metric: SCORES[metric] for metric in ("r2_lfc_top_degs", "r2_top_degs")}
"""The figure's panels (the E-distance is in the tables)."""
REFERENCE_ROWS = (CEILING_ROW, BOUND_ROW, CONTROL_ROW)
"""Rows that look at the answer or copy the input: never counted as a competitor."""
LEFT_OUT = ("CGMVAE route w", "nearest-type shift", CONTROL_ROW)
"""Rows of the sections left out of this one's tables, to keep them narrow (a variant, the
weaker of the two borrowed shifts, and the control, which scores 0 on LFC R²)."""
LOWER_IS_BETTER = ("e_distance",)
SCPERTURBENCH_SECTIONS = (
    "perturbation_kang6_scperturbench_peers",
    "perturbation_kang6_scperturbench",
)
"""The full-size runs in scPerturBench's protocol: the published peers on some held-out types,
then CGMVAE, the model-free and the reference rows on all nine."""
SCPERTURBENCH_SCORES = {
    "pcc_delta_top_degs": "PCC-delta on the top-100 DEGs",
    "r2_lfc_top_degs": "LFC R² on the top-100 DEGs",
    "e_distance": "E-distance (lower is better)",
}
"""The scores of the scPerturBench summary, its headline (PCC-delta) first."""
PANEL_TEXT = {
    "r2_lfc_top_degs": "R² of predicted vs real log fold-changes on the top-100 DEGs",
    "r2_top_degs": "R² of the predicted vs real means on the same genes",
    "pcc_delta_top_degs": "Pearson r of predicted vs real log fold-changes on the top-100 DEGs "
    "(PCC-delta)",
}
"""What a figure panel shows, for the text below the figure."""


@dataclass(frozen=True)
class Summary:
    """A section gathered from the per-type tables of other sections."""

    section: str
    title: str
    sources: tuple[str, ...]
    protocol: str
    scores: dict[str, str]
    """The tables' scores, with their titles."""
    panels: dict[str, str]
    """The figure's two panels: score and title."""
    published: bool = False
    """Whether scPerturBench's published means follow the tables."""


SUMMARIES = (
    Summary(
        SECTION,
        "Every held-out type with the published peers at full size",
        PEER_SECTIONS,
        "2,000 HVGs, scGen protocol",
        SCORES,
        FIGURE_PANELS,
    ),
    Summary(
        "perturbation_kang6_scperturbench_summary",
        "Every held-out type in scPerturBench's protocol at full size",
        SCPERTURBENCH_SECTIONS,
        "5,000 HVGs, scPerturBench's protocol",
        SCPERTURBENCH_SCORES,
        {m: SCPERTURBENCH_SCORES[m] for m in ("pcc_delta_top_degs", "r2_lfc_top_degs")},
        published=True,
    ),
)


def section_first_seed(section: str) -> int:
    """The first seed of a section's run: its command's ``--first-seed``, else 0."""
    _, body = section_text(section_page(section), section)
    found = FIRST_SEED.search(body)
    return int(found[1]) if found else 0


def per_type_rows(sections: tuple[str, ...] = PEER_SECTIONS) -> pd.DataFrame:
    """One row per held-out type, method and seed, with every score of the sections' per-type
    tables (a type, method and seed that two sections hold is taken from the first, so a
    later section can add a peer, or a seed, to the types of an earlier one)."""
    rows, seen = [], set()
    for section in sections:
        _, table = read_section(section_page(section), section, after=PER_TYPE_TABLE)
        first_seed, added = section_first_seed(section), set()
        for (cell_type, method), cells in table.iterrows():
            for metric, cell in cells.items():
                _, _, seeds = cell_values(cell)
                for seed, value in enumerate(seeds, start=first_seed):
                    if (cell_type, method, seed) in seen:
                        continue
                    added.add((cell_type, method, seed))
                    rows.append(
                        {"cell_type": cell_type, "method": method, "seed": seed, metric: value}
                    )
        seen |= added
    frame = pd.DataFrame(rows)
    keys = ["cell_type", "method", "seed"]
    return frame.groupby(keys, sort=False).first().reset_index()


def wide(frame: pd.DataFrame, metric: str, left_out: tuple[str, ...] = LEFT_OUT) -> pd.DataFrame:
    """``metric`` per held-out type (rows, then their mean over the types every method ran on)
    and method (columns, in the sections' order, without ``left_out``), mean over seeds."""
    methods = [m for m in dict.fromkeys(frame["method"]) if m not in left_out]
    table = frame.pivot_table(index="cell_type", columns="method", values=metric)
    table = table[[m for m in methods if m in table]]
    table.loc["mean"] = table.loc[complete_types(frame)].mean()
    return table.round(3)


def standing(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per held-out type: CGMVAE's score, the best other row that does not look at the answer
    (peers, scVI arithmetic, model-free shifts, CGMVAE's own variants excluded) and the
    margin (positive: CGMVAE ahead)."""
    table = wide(frame, metric, left_out=()).drop(index="mean")
    others = table.drop(
        columns=[c for c in table if c.startswith("CGMVAE") or c in REFERENCE_ROWS]
    )
    lower = metric in LOWER_IS_BETTER
    best = others.idxmin(axis=1) if lower else others.idxmax(axis=1)
    best_value = others.min(axis=1) if lower else others.max(axis=1)
    margin = (best_value - table["CGMVAE"]) if lower else (table["CGMVAE"] - best_value)
    return pd.DataFrame(
        {
            "CGMVAE": table["CGMVAE"],
            "best other method": best,
            "its score": best_value,
            "CGMVAE's margin": margin.round(3),
            "noise ceiling": table[CEILING_ROW],
        }
    )


def _blank_missing(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with an empty cell where a method did not run (markdown writes NaN as nan)."""
    return table.astype(object).where(table.notna(), "")


def _missing_peers(frame: pd.DataFrame) -> str:
    """The held-out types some method did not run on, grouped by the methods they lack."""
    complete = complete_types(frame)
    groups: dict[tuple[str, ...], list[str]] = {}
    for cell_type, rows in frame.groupby("cell_type"):
        if cell_type not in complete:
            lacking = tuple(sorted(set(frame["method"]) - set(rows["method"])))
            groups.setdefault(lacking, []).append(cell_type)
    return "; ".join(f"{', '.join(types)}: no {', '.join(m)}" for m, types in groups.items())


def write_summary(summary: Summary) -> None:
    """The section of ``summary``: its figure, the mean scores over the types every method
    ran on, each score per held-out type and where CGMVAE stands on each."""
    frame = per_type_rows(summary.sources)
    types = sorted(frame["cell_type"].unique())
    complete = complete_types(frame)
    with_peers = f"every published peer on {len(complete)}"
    image = f"_static/{summary.section}.png"
    figure(
        frame,
        RESULTS.parent / image,
        f"Kang 6 donors, 12,103 cells, {summary.protocol}: {len(types)} held-out types, "
        f"{with_peers if len(complete) < len(types) else 'with the published peers'}, "
        "seed 0, 100 epochs",
        panels=summary.panels,
    )
    scores = summary.scores
    headline = pd.DataFrame({title: wide(frame, m).loc["mean"] for m, title in scores.items()})
    over = f"the {len(complete)} held-out types every method ran on ({', '.join(complete)})"
    if len(complete) < len(types):
        over += f"; {_missing_peers(frame)}"
    sources = ", ".join(f"`{s}`" for s in summary.sources)
    blocks = [
        f"The table above and the figure's bottom row: means over {over}.",
        *(
            f"{title} per held-out type (mean over seeds):\n\n"
            f"{_blank_missing(wide(frame, m)).to_markdown()}"
            for m, title in scores.items()
        ),
        *(
            f"Where CGMVAE stands, {title}: against the best row "
            "that does not use the answer (the peers, scVI arithmetic and the model-free "
            "shifts; CGMVAE's own variants and the reference rows left out):\n\n"
            f"{standing(frame, m).to_markdown()}"
            for m, title in scores.items()
        ),
        *([published_means(frame)] if summary.published else []),
        "Collected by benchmarks/perturbation_summary.py from the per-type tables of the "
        f"sections {sources} of this page (a held-out type and method that two of them hold "
        "is read from the first), each measured by the command it shows (the methods and "
        "scores are described there). It trains nothing.",
    ]
    left, right = summary.panels
    lead = (
        f"![{summary.title}](../{image})\n\n"
        "Per held-out type (rows; the bottom row: the mean over the types every method ran on) "
        "each method's score: CGMVAE as a large blue dot (hollow: with its borrowed response "
        "alone), the peers as diamonds, the model-free shifts as grey squares, the noise "
        "ceiling as a black bar and the borrowing bound as a dashed grey one. Left: "
        f"{PANEL_TEXT[left]}; right: {PANEL_TEXT[right]}.\n"
    )
    write_section(
        summary.section,
        f"{summary.title} (Kang 6 donors, 12,103 cells, {summary.protocol}, {len(types)} types)",
        "python benchmarks/perturbation_summary.py",
        headline,
        "\n\n".join(blocks),
        lead=lead,
    )
    print(f"{section_page(summary.section)}: section {summary.section!r} written, figure {image}")


def three_seed_rows() -> pd.DataFrame:
    """Seed 0 from :data:`PEER_SECTIONS` and the further seeds of :data:`SEED_SECTIONS`, for
    the held-out types and methods that the further seeds have (a peer that ran further seeds
    on some types only keeps its seed-0 rows of those)."""
    later = per_type_rows(SEED_SECTIONS)
    first = per_type_rows()
    pairs = set(zip(later["cell_type"], later["method"], strict=True))
    kept = [pair in pairs for pair in zip(first["cell_type"], first["method"], strict=True)]
    return pd.concat([first[kept], later], ignore_index=True)


def on_every_type(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the methods that ran on every held-out type of ``frame``."""
    types = frame.groupby("method")["cell_type"].nunique()
    return frame[frame["method"].isin(types.index[types == frame["cell_type"].nunique()])]


def per_seed_table(
    frame: pd.DataFrame, metric: str, methods: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """``metric`` per held-out type (rows) and method (columns: ``methods``, or every method
    but :data:`LEFT_OUT`) as mean ± sd (each seed), over the seeds that have the score (the
    early sections have no pseudobulk score for the noise ceiling)."""
    if methods is None:
        methods = [m for m in dict.fromkeys(frame["method"]) if m not in LEFT_OUT]
    table = frame.pivot_table(index="cell_type", columns="method", values=metric, aggfunc=list)
    scored = table[[m for m in methods if m in table]]
    # a type that a method did not run on has no list
    return scored.map(
        lambda values: (
            mean_sd([v for v in values if not math.isnan(v)]) if isinstance(values, list) else ""
        )
    )


def ceiling_goals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per held-out type: CGMVAE's LFC R² on the top-100 DEGs (mean and its lowest seed), the
    noise ceiling, the gap between them and whether it is within :data:`CEILING_GOAL` on every
    seed; the best other row that does not look at the answer and CGMVAE's smallest margin over
    it on a seed."""
    per_seed = frame.pivot_table(
        index=["cell_type", "seed"], columns="method", values="r2_lfc_top_degs"
    )
    others = per_seed.drop(
        columns=[c for c in per_seed if c.startswith("CGMVAE") or c in REFERENCE_ROWS]
    )
    by_type = per_seed.groupby(level="cell_type")
    best = others.groupby(level="cell_type").mean().idxmax(axis=1)
    gap = per_seed[CEILING_ROW] - per_seed["CGMVAE"]
    margin = per_seed["CGMVAE"] - per_seed.apply(lambda row: row[best[row.name[0]]], axis=1)
    return pd.DataFrame(
        {
            "CGMVAE": by_type["CGMVAE"].mean(),
            "its lowest seed": by_type["CGMVAE"].min(),
            "noise ceiling": by_type[CEILING_ROW].mean(),
            "gap to the ceiling": gap.groupby(level="cell_type").mean(),
            f"within {CEILING_GOAL} on every seed": (
                gap.groupby(level="cell_type").max() <= CEILING_GOAL
            ).map({True: "yes", False: "no"}),
            "best other row": best,
            "its score": others.groupby(level="cell_type").mean().max(axis=1),
            "CGMVAE's smallest margin": margin.groupby(level="cell_type").min(),
        }
    ).round(3)


def write_three_seeds() -> None:
    frame = three_seed_rows()
    everywhere = on_every_type(frame)
    partial = sorted(set(frame["method"]) - set(everywhere["method"]))
    seeds = sorted(frame["seed"].unique())
    image = f"_static/{THREE_SEEDS_SECTION}.png"
    figure(
        everywhere,
        RESULTS.parent / image,
        f"Kang 6 donors, 12,103 cells, 2,000 HVGs: {frame['cell_type'].nunique()} held-out "
        f"types, seeds {', '.join(map(str, seeds))}, 100 epochs",
        panels=FIGURE_PANELS,
    )
    headline = pd.DataFrame(
        {title: wide(everywhere, m).loc["mean"] for m, title in SCORES.items()}
    )
    sources = ", ".join(f"`{s}`" for s in SEED_SECTIONS)
    peers = "The peers ran seed 0 alone and have no row here."
    if partial:
        peers = (
            f"{', '.join(partial)} ran further seeds on some types: they are in the per-type "
            "tables with the seeds they ran, not in the figure or the means; the other peers "
            "ran seed 0 alone."
        )
    blocks = [
        f"The table above: means over the held-out types and the {len(seeds)} seeds.",
        "LFC R² on the top-100 DEGs, CGMVAE against its noise ceiling and the best other row "
        f"(the goal of the overview: within {CEILING_GOAL} of the ceiling; the smallest margin is "
        "CGMVAE's lowest lead over that row on one seed, negative where it falls behind):\n\n"
        f"{ceiling_goals(frame).to_markdown()}",
        *(
            f"{title} per held-out type, mean ± sd (each seed):\n\n"
            f"{per_seed_table(frame, m).to_markdown()}"
            for m, title in SCORES.items()
        ),
        "Pseudobulk DE of the decoded cells (routes z and w, sampled counts) against the "
        "control cells: the share of the real top-100 DEGs it finds, per held-out type, mean ± "
        "sd (each seed); the noise ceiling column is two halves of the real stimulated cells "
        "against each other:\n\n"
        f"{per_seed_table(frame, 'overlap_pseudobulk_degs', DECODED_ROWS).to_markdown()}",
        "Collected by benchmarks/perturbation_summary.py: seed 0 from the peers' sections "
        f"(the summary above), seeds {', '.join(map(str, seeds[1:]))} from {sources}, each "
        f"measured by the command it shows. {peers} It trains nothing.",
    ]
    lead = (
        f"![Every held-out type at full size over {len(seeds)} seeds](../{image})\n\n"
        f"As the figure above, over {len(seeds)} seeds (the large marks: the mean; the ticks: "
        "each seed), without the peers.\n"
    )
    write_section(
        THREE_SEEDS_SECTION,
        f"Every held-out type at full size over {len(seeds)} seeds (Kang 6 donors, 12,103 "
        f"cells, 2,000 HVGs, scGen protocol, {frame['cell_type'].nunique()} types)",
        "python benchmarks/perturbation_summary.py",
        headline,
        "\n\n".join(blocks),
        lead=lead,
    )
    print(f"{section_page(THREE_SEEDS_SECTION)}: section {THREE_SEEDS_SECTION!r} written")


def main() -> None:
    setup_threads()  # only for the machine line, which then reads as the sources' runs
    for summary in SUMMARIES:
        write_summary(summary)
    write_three_seeds()


if __name__ == "__main__":
    main()
