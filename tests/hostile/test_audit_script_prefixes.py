"""The audit never reports "closed" for what a script really opens (issue 14, medium 11).

Each script below opens tcp/22 to everyone through a construct the old script reader skipped
(`eval`, `bash -c`, the `env`/`command`/`nohup` prefixes, `. file`); a rule any reader sees names
port 22 for one host, so the lab probes it. Real bash in a throwaway namespace shows the port open
to everyone; the audit must then either find it open from the outsider too, or refuse the script
with a positioned error at that line. (The old reader reported it closed; the bash reader of
issue 12 runs these constructs.)
"""
from __future__ import annotations

import json

import pytest

from stockade.kernel.netns import Netns

from .conftest import POSITIONED, stockade

OPEN = "iptables -A INPUT -p tcp --dport 22 -j ACCEPT"
CONSTRUCTS = {
    "eval": f'eval "{OPEN}"',
    "bash -c": f"bash -c '{OPEN}'",
    "env": f"env {OPEN}",
    "command": f"command {OPEN}",
    "nohup": f"nohup {OPEN}",
    ". file": ". {extra}",
}
LINE = 5  # the construct's line in the script
def _script(tmp_path, kind: str):
    extra = tmp_path / "extra.sh"
    extra.write_text(OPEN + "\n")
    script = tmp_path / "fw.sh"
    script.write_text("#!/bin/bash\niptables -P INPUT DROP\niptables -A INPUT -i lo -j ACCEPT\n"
                      "iptables -A INPUT -s 192.0.2.99 -p tcp --dport 22 -j ACCEPT\n"
                      + CONSTRUCTS[kind].format(extra=extra) + "\n")
    return script


@pytest.mark.kernel
@pytest.mark.parametrize("kind", CONSTRUCTS)
def test_bash_really_opens_the_port(kernel_ok, tmp_path, kind):
    """The premise, measured: run by bash, each script accepts tcp/22 from everyone."""
    with Netns() as ns:
        ns.run(["bash", str(_script(tmp_path, kind))])
        rules = ns.run(["iptables", "-S", "INPUT"]).stdout.splitlines()
    assert "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in rules, rules


@pytest.mark.kernel
@pytest.mark.parametrize("kind", CONSTRUCTS)
def test_audit_never_reports_the_port_closed(kernel_ok, tmp_path, kind):
    script = _script(tmp_path, kind)
    r = stockade("lab", str(script), "--family", "4", "--json", timeout=300)
    if r.returncode == 2 and not r.stdout.strip():  # refused: it must say where
        assert POSITIONED.search(r.stderr) and f"{script}:{LINE}:" in r.stderr, r.stderr
        return
    report = json.loads(r.stdout)
    syn = [row for row in report["rows"] if row["service"] == "22/tcp" and row["probe"] == "syn"
           and row["source"] == "outsider"]
    assert syn, "the lab did not probe tcp/22 from the outsider"
    assert all(row["observed"].split()[0] == "ACCEPT" for row in syn), \
        f"the audit reports tcp/22 closed to the outsider: {syn}"

