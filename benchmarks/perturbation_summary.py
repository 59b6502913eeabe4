"""One figure and table of every held-out type that ran with the published peers at full size.

The full-size peers ran one or a few held-out types at a time (each type takes hours with
trVAE on two cores), and each run wrote its own section of docs/benchmarks/perturbation.md
with its command. This script reads the per-type table of each of those sections
(:data:`PEER_SECTIONS`, the table "Every score per held-out type and method"), draws every type
in one figure and writes the section ``perturbation_kang6_summary``: LFC R², top-100-DEG R² and
E-distance per type and method, and where CGMVAE stands against the best other row. It trains
nothing; rerun it after a peers section changes:

    python benchmarks/perturbation_summary.py
"""

from __future__ import annotations

import pandas as pd
from _common import RESULTS, section_page, setup_threads, write_section
from _figures import cell_values, read_section
from perturbation import (
    BOUND_ROW,
    CEILING_ROW,
    CONTROL_ROW,
    complete_types,
    figure,
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


def per_type_rows(sections: tuple[str, ...] = PEER_SECTIONS) -> pd.DataFrame:
    """One row per held-out type, method and seed, with every score of the sections' per-type
    tables (a type and method that two sections hold is taken from the first, so a later
    section can add a peer that ran on its own to the types of an earlier one)."""
    rows, seen = [], set()
    for section in sections:
        _, table = read_section(section_page(section), section, after=PER_TYPE_TABLE)
        pairs = set(table.index) - seen
        for (cell_type, method), cells in table.iterrows():
            if (cell_type, method) not in pairs:
                continue
            for metric, cell in cells.items():
                _, _, seeds = cell_values(cell)
                for seed, value in enumerate(seeds):
                    rows.append(
                        {"cell_type": cell_type, "method": method, "seed": seed, metric: value}
                    )
        seen |= pairs
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


def main() -> None:
    setup_threads()  # only for the machine line, which then reads as the sources' runs
    frame = per_type_rows()
    types = sorted(frame["cell_type"].unique())
    complete = complete_types(frame)
    image = f"_static/{SECTION}.png"
    figure(
        frame,
        RESULTS.parent / image,
        f"Kang 6 donors, 12,103 cells, 2,000 HVGs: {len(types)} held-out types with the "
        "published peers, seed 0, 100 epochs",
        panels=FIGURE_PANELS,
    )
    headline = pd.DataFrame({title: wide(frame, m).loc["mean"] for m, title in SCORES.items()})
    missing = {
        cell_type: sorted(set(frame["method"]) - set(rows["method"]))
        for cell_type, rows in frame.groupby("cell_type")
        if cell_type not in complete
    }
    over = f"the {len(complete)} held-out types every method ran on ({', '.join(complete)})"
    if missing:
        over += "; " + "; ".join(f"{t}: no {', '.join(m)}" for t, m in missing.items())
    sources = ", ".join(f"`{s}`" for s in PEER_SECTIONS)
    blocks = [
        f"The table above: means over {over}.",
        *(
            f"{title} per held-out type (mean over seeds):\n\n{wide(frame, m).to_markdown()}"
            for m, title in SCORES.items()
        ),
        *(
            f"Where CGMVAE stands, {title}: against the best row "
            "that does not use the answer (the peers, scVI arithmetic and the model-free "
            "shifts; CGMVAE's own variants and the reference rows left out):\n\n"
            f"{standing(frame, m).to_markdown()}"
            for m, title in SCORES.items()
        ),
        "Collected by benchmarks/perturbation_summary.py from the per-type tables of the "
        f"sections {sources} of this page, each measured by the command it shows (the "
        "methods and scores are described there). It trains nothing.",
    ]
    lead = (
        f"![Every held-out type with the published peers at full size](../{image})\n\n"
        "Per held-out type (rows; the bottom row: the mean over the types every method ran on) "
        "each method's score: CGMVAE as a large blue dot (hollow: with its borrowed response "
        "alone), the peers as diamonds, the model-free shifts as grey squares, the noise "
        "ceiling as a black bar and the borrowing bound as a dashed grey one. Left: R² of "
        "predicted vs real log fold-changes on the top-100 DEGs; right: R² of the predicted "
        "vs real means on the same genes.\n"
    )
    write_section(
        SECTION,
        f"Every held-out type with the published peers at full size (Kang 6 donors, 12,103 "
        f"cells, 2,000 HVGs, scGen protocol, {len(types)} types)",
        "python benchmarks/perturbation_summary.py",
        headline,
        "\n\n".join(blocks),
        lead=lead,
    )
    print(f"{section_page(SECTION)}: section {SECTION!r} written, figure {image}")


if __name__ == "__main__":
    main()
