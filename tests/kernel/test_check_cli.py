"""`stockade check` on each example: the real tools accept it in a throwaway namespace and the table shows."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_check_accepts_each_example(kernel_ok, example):
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "check", str(example)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("service") and "ping" in r.stdout
    assert r.stderr.strip().endswith(": ok")


def test_check_refuses_a_bad_policy_with_its_position(kernel_ok, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[allow]]\nservice = "shh"\n')
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{bad}:2:1: error: allow.0.service: unknown service `shh`; did you mean `ssh`?" in r.stderr
