"""Findings: each seed's real problems (golden files), and every finding on a ruleset that has it
and on one that does not."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockade.parse.read import read
from stockade.semantics.findings import KINDS, check, lint

from .corpus import SEEDS

GOLDEN = Path(__file__).parent / "golden" / "findings"
SEED_FILES = sorted(SEEDS.glob("*.txt"))


def seed_findings(seed: Path):
    text = seed.read_text(encoding="utf-8")
    b = read(text, seed.name)
    return lint(b, text, seed.name, script=True)


@pytest.mark.parametrize("seed", SEED_FILES, ids=lambda p: p.name[:3])
def test_seed_golden(seed: Path):
    got = "".join(f"{f}\n" for f in seed_findings(seed))
    golden = GOLDEN / seed.name
    if os.environ.get("STOCKADE_UPDATE_GOLDEN"):
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8")


# What a careful reader finds wrong with each seed (line numbers are the seed's), by finding id.
REAL = {
    "000": [("STK227", None),  # "assuming the default policy is to drop": never set, everything is open
            ("STK211", 192),  # `-p tcp --syn -m limit ... -j RETURN` in INPUT: the first SYNs reach every port
            ("STK212", 192), ("STK212", 205),  # the SYN-flood limits are one budget for all senders
            ("STK213", 100),  # `-A INPUT -f -j DROP` under conntrack
            ("STK201", 177),  # the second `--icmp-type 8 -j DROP` after `echo-request -j DROP`
            ("STK216", 243),  # the blocked host is dropped after the SSH/IMAP/DNS/ping accepts
            ("STK222", None),  # `OUTPUT -p icmp --icmp-type echo-request -j DROP` blocks pinging localhost
            ("STK223", None)],  # IPv6 not filtered
    "001": [("STK227", None),  # INPUT policy ACCEPT: anything but TCP SYN and UDP gets in
            ("STK226", 53),  # SSH from 0/0
            ("STK221", None),  # the final UDP REJECT also rejects DNS answers
            ("STK222", None),  # loopback accept was in the glued `FWALL-INPUT-i lo` line: lo is rejected
            ("STK214", 115),  # both LOG rules unlimited
            ("STK223", None),
            ("STK201", 57),  # once fixed: John Doe's SSH rule comes after SSH from anywhere
            ("STK215", 80), ("STK215", 85),  # --sport 1023:2999 and --sport 53 accept any port
            ("STK211", 97), ("STK212", 97),  # the SYN `-m limit -j ACCEPT`: any port, shared budget
            ("STK201", 97),  # ...and appended after the REJECTs, so it is never reached
            ("STK216", 107)],  # the host ban comes after the accepts
    "002": [("STK223", None), ("STK225", None)],  # no IPv6 rules; no way in for an admin (port 22 closed)
    "003": [("STK221", None),  # only --sport 25/53 replies and ICMP come back: no general ESTABLISHED rule
            ("STK226", 54),  # SSH open to the world
            ("STK223", None)],
    "004": [("STK226", 53),  # SSH open to everyone...
            ("STK201", 57),  # ...so the "restricted" YOUR_IP_ADDRESS rule changes nothing (once it loads)
            ("STK223", None)],
}


@pytest.mark.parametrize("seed", SEED_FILES, ids=lambda p: p.name[:3])
def test_seed_findings_name_real_problems(seed: Path):
    found = {(f.id, f.origin.line) for f in seed_findings(seed)} | {(f.id, None) for f in seed_findings(seed)}
    missing = [want for want in REAL[seed.name[:3]] if want not in found]
    assert not missing, f"{seed.name}: not reported: {missing}"


def ids(save: str, *, script: bool = False, admins=()) -> set[str]:
    b = read(save, "t.rules", "save" if not script else "script")
    assert not [d for d in b.diagnostics if d.severity == "error"], b.diagnostics
    return {f.id for f in check(b.rulesets, "t.rules", script=script, admins=list(admins))}


def rules(*lines: str, policy: str = "DROP", out: str = "ACCEPT") -> str:
    return (f"*filter\n:INPUT {policy} [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT {out} [0:0]\n"
            + "".join(line + "\n" for line in lines) + "COMMIT\n")


GOOD = ("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -p tcp -s 198.51.100.7 --dport 22 -j ACCEPT", "-A INPUT -p tcp --dport 80 -j ACCEPT")


def test_a_sound_ruleset_has_no_findings():
    assert ids(rules(*GOOD)) == set()


CASES = {
    "STK201": (rules(*GOOD, "-A INPUT -p tcp --dport 80 -s 192.0.2.0/24 -j ACCEPT"), rules(*GOOD)),
    "STK202": (rules(*GOOD, "-A INPUT -p tcp --dport 81 -j DROP"), rules(*GOOD, "-A INPUT -p tcp --dport 81 -j REJECT")),
    "STK203": (rules(*GOOD, "-A INPUT -j DROP", "-A INPUT -p tcp --dport 443 -j ACCEPT"),
               rules(*GOOD, "-A INPUT -p tcp --dport 443 -j ACCEPT", "-A INPUT -j DROP")),
    "STK204": (":E - [0:0]\n".join(rules(*GOOD, "-A INPUT -p tcp --dport 25 -j E").split(":FORWARD", 1)[0:1])
               + ":E - [0:0]\n:FORWARD" + rules(*GOOD, "-A INPUT -p tcp --dport 25 -j E").split(":FORWARD", 1)[1],
               rules(*GOOD)),
    "STK205": (rules(*GOOD[:3], "-A INPUT -p tcp -m limit --limit 5/sec -j DROP", GOOD[3]), rules(*GOOD)),
    "STK211": (rules(*GOOD, "-A INPUT -p tcp --syn -m limit --limit 5/sec -j ACCEPT"),
               rules(*GOOD, "-A INPUT -p tcp --syn -m hashlimit --hashlimit-above 5/sec --hashlimit-mode srcip "
                            "--hashlimit-name syn -j DROP")),
    "STK212": (rules(*GOOD[:2], "-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -m limit --limit 3/min "
                                "-j ACCEPT", GOOD[3]),
               rules(*GOOD[:2], "-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -m hashlimit "
                                "--hashlimit-upto 3/min --hashlimit-mode srcip --hashlimit-name ssh -j ACCEPT", GOOD[3])),
    "STK213": (rules(*GOOD, "-A INPUT -f -j DROP"), rules(*GOOD)),
    "STK214": (rules(*GOOD, "-A INPUT -j LOG"), rules(*GOOD, "-A INPUT -m limit --limit 5/min -j LOG")),
    "STK215": (rules(*GOOD, "-A INPUT -p udp --sport 53 -j ACCEPT"), rules(*GOOD, "-A INPUT -p udp --dport 53 -j ACCEPT")),
    "STK216": (rules(*GOOD, "-A INPUT -s 203.0.113.66 -j DROP"), rules("-A INPUT -s 203.0.113.66 -j DROP", *GOOD)),
    "STK221": (rules(*GOOD[1:]), rules(*GOOD)),
    "STK222": (rules(GOOD[0], *GOOD[2:]), rules(*GOOD)),
    "STK224": (rules(*GOOD, "-A INPUT -p tcp --dport 8080 -j REJECT"), rules(*GOOD, "-A INPUT -p tcp -j REJECT",
                                                                         "-A INPUT -p udp -j REJECT")),
    "STK225": (rules(*GOOD[:2], GOOD[3]), rules(*GOOD)),
    "STK226": (rules(*GOOD[:2], "-A INPUT -p tcp --dport 22 -j ACCEPT"), rules(*GOOD)),
    "STK227": (rules(*GOOD, policy="ACCEPT"), rules(*GOOD)),
}


@pytest.mark.parametrize("fid", sorted(CASES))
def test_finding_present_and_absent(fid: str):
    has, hasnt = CASES[fid]
    assert fid in ids(has)
    assert fid not in ids(hasnt)


def test_ipv6_open_for_scripts_that_only_run_iptables():
    script = "iptables -P INPUT DROP\niptables -A INPUT -i lo -j ACCEPT\n"
    assert "STK223" in ids(script, script=True)
    both = script + "ip6tables -P INPUT DROP\nip6tables -A INPUT -i lo -j ACCEPT\n"
    assert "STK223" not in ids(both, script=True)
    open6 = script + "ip6tables -A INPUT -i lo -j ACCEPT\n"
    assert "STK223" in ids(open6, script=True)


def test_admin_addresses_must_reach_ssh():
    assert "STK225" not in ids(rules(*GOOD), admins=["198.51.100.7"])
    assert "STK225" in ids(rules(*GOOD), admins=["198.51.100.8"])


def test_every_catalogued_finding_is_tested():
    tested = set(CASES) | {"STK206", "STK223", "STK290"}  # tested below
    tested |= {"STK207", "STK208"}  # nftables only: tests/test_nft_cells.py test_nft_findings
    assert {k.id for k in KINDS.values()} == tested


def test_ids_are_stable_and_unique():
    assert len({k.id for k in KINDS.values()}) == len(KINDS)
    assert KINDS["shadowed-rule"].id == "STK201" and KINDS["ipv6-open"].id == "STK223"


def test_big_rulesets_are_bounded():
    many = [f"-A INPUT -s 198.51.{n // 250}.{n % 250 + 1} -p tcp --dport {1000 + n} -j ACCEPT" for n in range(1100)]
    started = time.monotonic()
    got = ids(rules(*GOOD, *many))
    assert "STK290" in got and "STK201" not in got
    assert time.monotonic() - started < 30


def test_a_long_blocklist_is_searched_for_rules_one_earlier_rule_takes():
    """Past COVERAGE_LIMIT there are too many classes to examine, but a rule that one earlier deciding rule
    holds whole (a repeated address, an address inside an earlier network, an earlier rule on the source
    alone) is still found, by lookups. An earlier rule that may not decide (a rate limit, LOG) holds none."""
    hosts = [f"{net}.{n}" for net in ("192.0.2", "198.51.100", "203.0.113") for n in range(1, 255)]
    many = [f"-A INPUT -s {h} -p tcp --dport {port} -j DROP" for port in (25, 110) for h in hosts]
    extra = ["-A INPUT -s 192.0.2.7 -p tcp --dport 25 -j DROP",  # a repeat of an earlier line
             "-A INPUT -s 203.0.113.0/24 -p tcp --dport 995 -j DROP",
             "-A INPUT -s 203.0.113.77 -p tcp --dport 995 -j REJECT",  # inside the network above
             "-A INPUT -s 198.51.100.99 -j DROP",
             "-A INPUT -s 198.51.100.99 -p tcp --dport 443 -j ACCEPT",  # the source alone was decided above
             "-A INPUT -s 198.51.100.200 -p udp --dport 53 -m limit --limit 1/s -j DROP",
             "-A INPUT -s 198.51.100.200 -p udp --dport 53 -j DROP",  # the limit may let packets by
             "-A INPUT -s 192.0.2.50 -p tcp --dport 8080 -j LOG",
             "-A INPUT -s 192.0.2.50 -p tcp --dport 8080 -j DROP",  # LOG decides nothing
             "-A INPUT -s 198.51.100.0/25 -p tcp --dport 993 -j DROP",
             "-A INPUT -s 198.51.100.0/24 -p tcp --dport 993 -j DROP"]  # wider than the network above
    text = rules(*GOOD, *many, *extra)
    b = read(text, "t.rules", "save")
    got = [(f.origin.line, f.message) for f in check(b.rulesets, "t.rules", script=False, admins=[])
           if f.id == "STK201"]
    first = 5 + len(GOOD)  # the line of many[0]
    end = first + len(many)  # the line of extra[0]
    taken = "no packet ever reaches this rule: line {} already decides every packet it matches"
    assert got == [(end, taken.format(first + hosts.index("192.0.2.7"))), (end + 2, taken.format(end + 1)),
                   (end + 4, taken.format(end + 3))]


def test_a_jump_loop_is_refused_as_the_kernel_does_and_the_rest_analysed():
    loop = rules(*GOOD, "-A INPUT -j A", "-A A -j B", "-A B -p tcp -j A", "-A B -j LOG").replace(
        ":OUTPUT ACCEPT [0:0]\n", ":OUTPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n")
    b = read(loop, "t.rules", "save")
    assert [(d.code, d.origin.line) for d in b.diagnostics if d.severity == "error"] == [("chain-loop", 13)]
    assert "STK214" in {f.id for f in check(b.rulesets, "t.rules", script=False, admins=[])}


def stockade(*args: str):
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True, check=False)


def test_cli_lint_reports_findings_with_positions(tmp_path):
    r = stockade("lint", str(SEEDS / "003_3b340325c8436248.txt"), "--json")
    assert r.returncode == 1  # STK223 is an error
    doc = json.loads(r.stdout)
    assert doc["diagnostics"] == [] and doc["errors"] == 1
    f = next(f for f in doc["findings"] if f["id"] == "STK226")
    assert {"id", "name", "severity", "file", "line", "col", "message", "hint", "fix"} <= set(f)
    assert (f["line"], f["col"], f["severity"]) == (54, 1, "warning")
    p = tmp_path / "rules.v4"
    p.write_text(rules(*GOOD))
    assert stockade("lint", str(p)).returncode == 0
    r = stockade("lint", str(p), "--admin", "192.0.2.99")
    assert r.returncode == 1 and "STK225 no-admin-path" in r.stdout and f"{p}:5:1: error: admin address" in r.stdout
    assert stockade("lint", str(p), "--admin", "not-an-address").returncode == 2
