"""One figure and table of every held-out type that ran with the published peers at full size.

The full-size peers ran one or a few held-out types at a time (each type takes hours with
trVAE on two cores), and each run wrote its own section of docs/benchmarks/perturbation.md
with its command. This script reads the per-type table of each of those sections
(:data:`PEER_SECTIONS`, the table "Every score per held-out type and method"), draws every type
in one figure and writes the section ``perturbation_kang6_summary``: LFC R², top-100-DEG R² and
E-distance per type and method, and where CGMVAE stands against the best other row. With the
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

import pandas as pd
from _common import RESULTS, mean_sd, section_page, setup_threads, write_section
from _figures import cell_values, read_section, section_text
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


def write_peers_summary() -> None:
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
    write_peers_summary()
    write_three_seeds()


if __name__ == "__main__":
    main()
