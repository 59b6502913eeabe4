"""The benchmark scripts keep working: each runs in its --smoke mode (tiny, no table written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script", ["clustering.py", "perturbation.py", "semi_supervised.py", "speed.py"]
)
def test_benchmark_smoke(script, data_dir):
    table = BENCHMARKS.parent / "docs" / "benchmarks.md"
    before = table.read_text() if table.exists() else None
    env = {**os.environ, "SCGMVAE_DATA_DIR": str(data_dir)}
    result = subprocess.run(
        [sys.executable, script, "--smoke"],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CGMVAE" in result.stdout
    assert (table.read_text() if table.exists() else None) == before  # smoke runs write nothing
