"""Issue 7, "Must show": `stockade lab` on every example policy finds what the simulator predicts, IPv4 and IPv6.

Each example runs through the command itself (`stockade lab POLICY --json`): namespaces, listeners,
the compiled ruleset loaded with ipset/iptables-restore in the lab's server, every probe from every
source. The test checks the report: zero mismatches, both families, every probe kind present, the
per-source limits seen to engage (a burst and the SSH pattern are cut short where the policy limits
them), and that rows marked unobservable say why. The mail/web example must finish well under 90 s.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
KINDS = {"syn", "null", "xmas", "fin", "ack", "udp", "echo", "fragments", "connect", "hold", "established"}


@pytest.mark.parametrize("policy", EXAMPLES, ids=lambda p: p.stem)
def test_lab_example(kernel_ok, policy: Path, capsys):
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "lab", str(policy), "--json"], capture_output=True,
                       text=True, check=False, timeout=300)
    report = json.loads(r.stdout)
    bad = [row for row in report["rows"] if row["status"] == "MISMATCH"]
    with capsys.disabled():
        print(f"\n{policy.name}: {report['probes']} probes, {report['mismatches']} mismatches, "
              f"{report['unobservable']} unobservable, {report['seconds']} s")
    assert not bad, "\n".join(map(str, bad))
    assert r.returncode == 0, r.stderr
    rows = report["rows"]
    assert {row["family"] for row in rows} == {4, 6}
    assert KINDS <= {row["probe"] for row in rows}
    assert all(row["note"] for row in rows if row["status"] == "unobservable")
    bursts = [row for row in rows if row["probe"].startswith("syn-burst")]
    assert bursts and all(int(row["observed"].split()[0]) < 150 for row in bursts), bursts  # 100 per source
    if "003" in policy.name:
        assert report["seconds"] < 90
        brute = [row for row in rows if row["probe"].startswith("ssh-brute") and row["source"] == "admins"]
        assert brute and all("A" in row["observed"] and not row["observed"].endswith("A") for row in brute), brute
