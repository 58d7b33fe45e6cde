"""The command line: exit codes, formats, and no tracebacks on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

SAVE = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -s 198.51.100.7 -j ACCEPT
COMMIT
"""


def stockade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True)


@pytest.fixture
def dump(tmp_path):
    p = tmp_path / "rules.v4"
    p.write_text(SAVE)
    return p


def test_parse_prints_canonical_save(dump):
    r = stockade("parse", str(dump))
    assert r.returncode == 0, r.stderr
    assert "-A INPUT -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -j ACCEPT" in r.stdout


def test_parse_json(dump):
    r = stockade("parse", str(dump), "--to", "json")
    doc = json.loads(r.stdout)
    rule = doc["rulesets"][0]["tables"]["filter"]["chains"][0]["rules"][0]
    assert rule["origin"].endswith(":5:1") and rule["target"]["name"] == "ACCEPT"


def test_lint_clean_is_exit_0(dump):
    assert stockade("lint", str(dump)).returncode == 0


def test_lint_errors_exit_1_with_position(tmp_path):
    p = tmp_path / "bad.rules"
    p.write_text(SAVE.replace("--dport 22", "--dport 70000"))
    r = stockade("lint", str(p), "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    (d,) = doc["diagnostics"]
    assert (d["line"], d["severity"], d["code"]) == (5, "error", "bad-number")
    assert d["col"] == SAVE.splitlines()[4].index("22") + 1


@pytest.mark.parametrize("content", [None, b"\x00\x01binary", b"\xff\xfe not utf-8"])
def test_lint_unreadable_is_exit_2(tmp_path, content):
    p = tmp_path / "x"
    if content is not None:
        p.write_bytes(content)
    r = stockade("lint", str(p))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error: cannot read input" in r.stderr
