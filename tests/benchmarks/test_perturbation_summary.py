"""The summary of the full-size peer sections: every type read once, margins with their sign."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
try:
    import _common
    import _figures
    import perturbation_summary
finally:
    sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize(
    "summary", perturbation_summary.SUMMARIES, ids=lambda summary: summary.section
)
def test_every_source_section_gives_rows_for_its_types(summary):
    frame = perturbation_summary.per_type_rows(summary.sources)
    taken = set()
    for section in summary.sources:
        _, table = _figures.read_section(
            _common.section_page(section), section, after=perturbation_summary.PER_TYPE_TABLE
        )
        for (cell_type, method), cells in table.iterrows():
            row = frame[(frame["cell_type"] == cell_type) & (frame["method"] == method)]
            assert len(row) == 1, (cell_type, method)
            if (cell_type, method) in taken:
                continue  # the first section that holds a type and method gives its row
            mean, _, _ = _figures.cell_values(cells["r2_lfc_top_degs"])
            assert row["r2_lfc_top_degs"].item() == pytest.approx(mean)
            taken.add((cell_type, method))
    # the later sections add rows: a peer to an earlier section's type (trVAE on CD16 Mono in
    # a section of its own), or types the first has not (CGMVAE's nine types in
    # scPerturBench's protocol after the peers' few)
    assert len(frame) > len(perturbation_summary.per_type_rows(summary.sources[:1]))


@pytest.mark.parametrize(
    "summary", perturbation_summary.SUMMARIES, ids=lambda summary: summary.section
)
def test_each_summary_figure_is_described_by_its_own_title(summary):
    _, body = _figures.section_text(_common.section_page(summary.section), summary.section)
    figure = f"![{summary.title}](../_static/{summary.section}.png)"
    assert figure in body
    others = [s.title for s in perturbation_summary.SUMMARIES if s is not summary]
    assert not any(f"![{title}]" in body for title in others)


def test_read_section_names_the_missing_table():
    section = perturbation_summary.PEER_SECTIONS[0]
    with pytest.raises(ValueError, match="has no table below 'No such line'"):
        _figures.read_section(_common.section_page(section), section, after="No such line")


def _rows(values: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"cell_type": t, "method": m, "seed": 0, "r2_lfc_top_degs": v, "e_distance": 1 - v}
            for (t, m), v in values.items()
        ]
    )


def test_missing_peers_groups_the_types_by_the_methods_they_lack():
    frame = _rows(
        {
            ("B", "CGMVAE"): 0.9,
            ("B", "scGen"): 0.9,
            ("B", "scPRAM"): 0.9,
            ("DC", "CGMVAE"): 0.9,
            ("NK", "CGMVAE"): 0.9,
            ("NK", "scPRAM"): 0.9,
            ("T activated", "CGMVAE"): 0.9,
        }
    )
    assert perturbation_summary._missing_peers(frame) == (
        "DC, T activated: no scGen, scPRAM; NK: no scGen"
    )
    # a type a peer did not run on is an empty cell, not NaN (which markdown writes as "nan"),
    # and the means stay numbers
    table = perturbation_summary._blank_missing(perturbation_summary.wide(frame, "e_distance"))
    assert table.loc["DC", "scGen"] == ""
    assert not table.isna().to_numpy().any()
    assert table.loc["mean", "scGen"] == pytest.approx(0.1)


def test_standing_takes_the_best_row_that_does_not_use_the_answer():
    frame = _rows(
        {
            ("B", "CGMVAE"): 0.90,
            ("B", "CGMVAE route z"): 0.99,  # CGMVAE's own variant: not a competitor
            ("B", "trVAE"): 0.92,
            ("B", "similarity-weighted shift"): 0.85,
            ("B", "noise ceiling"): 0.98,  # uses the answer: not a competitor
            ("NK", "CGMVAE"): 0.80,
            ("NK", "trVAE"): 0.70,
            ("NK", "similarity-weighted shift"): 0.75,
            ("NK", "noise ceiling"): 0.97,
        }
    )
    scores = perturbation_summary.standing(frame, "r2_lfc_top_degs")
    assert scores.loc["B", "best other method"] == "trVAE"
    assert scores.loc["B", "CGMVAE's margin"] == pytest.approx(-0.02)
    assert scores.loc["NK", "best other method"] == "similarity-weighted shift"
    assert scores.loc["NK", "CGMVAE's margin"] == pytest.approx(0.05)
    distances = perturbation_summary.standing(frame, "e_distance")  # lower is better
    assert distances.loc["B", "best other method"] == "trVAE"
    assert distances.loc["B", "CGMVAE's margin"] == pytest.approx(-0.02)
    assert distances.loc["NK", "CGMVAE's margin"] == pytest.approx(0.05)


def test_ceiling_goals_judge_every_seed():
    rows = []
    lfc = {  # per seed: CGMVAE, the best other row, a weaker one, the ceiling
        "B": [(0.95, 0.93, 0.80, 0.99), (0.93, 0.94, 0.80, 0.99)],
        "NK": [(0.90, 0.85, 0.80, 0.93), (0.92, 0.86, 0.80, 0.93)],
    }
    methods = ("CGMVAE", "trVAE", "pooled shift", "noise ceiling")
    for cell_type, seeds in lfc.items():
        for seed, values in enumerate(seeds):
            for method, value in zip(methods, values, strict=True):
                rows.append(
                    {
                        "cell_type": cell_type,
                        "method": method,
                        "seed": seed,
                        "r2_lfc_top_degs": value,
                    }
                )
    goals = perturbation_summary.ceiling_goals(pd.DataFrame(rows))
    within = f"within {perturbation_summary.CEILING_GOAL} on every seed"
    # B: gaps 0.04 and 0.06, so one seed misses; behind trVAE on seed 1
    assert goals.loc["B", "gap to the ceiling"] == pytest.approx(0.05)
    assert goals.loc["B", within] == "no"
    assert goals.loc["B", "its lowest seed"] == pytest.approx(0.93)
    assert goals.loc["B", "best other row"] == "trVAE"
    assert goals.loc["B", "CGMVAE's smallest margin"] == pytest.approx(-0.01)
    # NK: gaps 0.03 and 0.01
    assert goals.loc["NK", within] == "yes"
    assert goals.loc["NK", "CGMVAE's smallest margin"] == pytest.approx(0.05)


def test_further_seeds_follow_seed_zero_of_the_same_types_and_methods():
    frame = perturbation_summary.three_seed_rows()
    seeds = frame.groupby(["cell_type", "method"])["seed"].apply(sorted)
    assert frame["cell_type"].nunique() == 9
    for cell_type in frame["cell_type"].unique():
        assert seeds[(cell_type, "CGMVAE")] == [0, 1, 2]
    # the peers ran further seeds on one type each: their seed-0 rows of other types stay out
    assert set(frame.loc[frame["method"] == "scGen", "cell_type"]) == {"B"}
    assert set(frame.loc[frame["method"] == "scPRAM", "cell_type"]) == {"DC"}
    # trVAE's seeds 1 and 2 come from two sections, each counted from its --first-seed
    assert seeds[("B", "trVAE")] == [0, 1, 2]
    assert seeds[("DC", "scPRAM")] == [0, 1, 2]
    peers = {"scGen", "trVAE", "scPRAM"}
    assert set(perturbation_summary.on_every_type(frame)["method"]).isdisjoint(peers)
