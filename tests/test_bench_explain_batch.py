"""CI smoke run of bench/explain_batch.py at a small size: the bench keeps working and its figures print."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .corpus import NET_NETWORK, SHARED

BENCH = Path(__file__).resolve().parents[1] / "bench" / "explain_batch.py"


@pytest.mark.skipif(not NET_NETWORK.is_dir(), reason="net-network corpus not present")
def test_explain_batch_bench_runs_small():
    r = subprocess.run([sys.executable, str(BENCH), "300", "--runs", "1"], capture_output=True, text=True,
                       env=dict(os.environ, STOCKADE_SHARED=str(SHARED)), timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "baseline (1 rule)" in r.stdout and "TUM dump (5556 rules)" in r.stdout, r.stdout
    assert "verdicts: {" in r.stdout and "'DROP'" in r.stdout, r.stdout
