"""The issue-15 benches run at a small size (a smoke run: each works and prints its figures and
verdict; the limits themselves are the benches' to check, at full size)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .corpus import NET_NETWORK

BENCH = Path(__file__).resolve().parents[1] / "bench"
TUM = NET_NETWORK / "configs_chair_for_Network_Architectures_and_Services"


def bench(name: str, *args: str, shared: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if shared is not None:
        env["STOCKADE_SHARED"] = str(shared)
    r = subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True, timeout=300,
                       env=env, check=False)
    assert r.returncode in (0, 1), r.stderr  # 1: a limit missed (not judged at these sizes)
    assert r.stdout.rstrip().splitlines()[-1] in ("OK", "TOO SLOW"), r.stdout
    return r


def test_lint_scale_prints_times_and_growth(tmp_path):
    r = bench("lint_scale.py", "30", "120", shared=tmp_path)  # no corpus here: the TUM line is skipped
    assert "blocklist 120" in r.stdout and "growth exponent 30..120" in r.stdout and "TUM dump not found" in r.stdout


def test_diff_tum_runs_on_a_generated_pair(tmp_path):
    r = bench("diff_tum.py", "1", "blocklist", shared=tmp_path)
    assert r.returncode == 0 and "blocklist" in r.stdout


@pytest.mark.skipif(not TUM.exists(), reason="the TUM dumps are not in the shared corpus")
def test_analyze_tum_runs_on_the_2015_dump():
    r = bench("analyze_tum.py", "1", "2015")
    assert "2015-05-15 tcp/22+tcp/80" in r.stdout
