"""The results pages: each section is on the page its name maps to, and the headlines read."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
try:
    import _common
    import _figures
finally:
    sys.path.remove(str(BENCHMARKS))

PAGES = sorted(_common.RESULTS.glob("*.md"))


def test_every_page_of_the_mapping_exists():
    names = {page.stem for page in PAGES}
    assert set(_common.SECTION_PAGES.values()) == names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_section_is_on_the_page_its_name_maps_to(page):
    blocks = re.findall(r"<!-- (\w+):start -->", page.read_text())
    sections = [block for block in blocks if block != _figures.HEADLINE_BLOCK]
    assert sections
    for section in sections:
        assert _common.section_page(section) == page, section


def test_a_section_without_a_page_names_the_pages():
    with pytest.raises(ValueError, match=r"'decoder'.*docs/benchmarks/perturbation\.md: "):
        _common.section_page("decoder")  # "de" is a prefix only when "_" follows it
    assert _common.section_page("de_all_genes").name == "perturbation.md"


@pytest.mark.parametrize(
    ("cell", "values"),
    [
        ("0.485 ± 0.007 (0.493, 0.481, 0.480)", (0.485, 0.007, [0.493, 0.481, 0.480])),
        ("0.205 ± 0.006", (0.205, 0.006, [])),
        ("0.92x", (0.92, 0.0, [])),
        ("-0.219", (-0.219, 0.0, [])),
    ],
)
def test_cell_values(cell, values):
    assert _figures.cell_values(cell) == values


def test_cell_values_rejects_text():
    with pytest.raises(ValueError, match="not a number"):
        _figures.cell_values("GMVAE")


@pytest.mark.parametrize("section", sorted(_figures.HEADLINES))
def test_each_headline_reads_its_section(section):
    headline = _figures.HEADLINES[section]
    title, table = _figures.read_section(_common.section_page(section), section)
    assert title
    long = _figures.long_form(headline, table)
    assert set(long["metric"]) == set(headline.metrics)
    assert long["mean"].notna().all()
    short = _figures.short_table(headline, table)
    methods = short.columns if headline.transposed else short.index
    assert list(methods) == list(dict.fromkeys(long["method"]))
