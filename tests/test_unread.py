"""What stockade cannot read stays in as an unknown (three-valued), never silently out.

A dump anonymised before it was shared (`--mac-source XX:XX:XX:XX:XX:XX`, `-s x.x.x.x`) is refused by
iptables-restore, and stockade's parse says so as the kernel would; the analyses keep each such rule at
its place with the unreadable value as a match that may or may not hold (extensions.opaque.Unread).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stockade.commands.inputs import load_rulesets
from stockade.extensions.opaque import unread_rules
from stockade.lab.audit import Incomplete, run_audit
from stockade.model import Family
from stockade.parse.read import read
from stockade.render.save import render_save
from stockade.semantics.analyze import Options, analyze_ruleset
from stockade.semantics.diff import semantic_diff
from stockade.semantics.explain import Explainer, parse_spec
from stockade.semantics.findings import check

# Lines as anonymised dumps in issue threads have them (the address or MAC blanked), in a small INPUT chain.
ANON = "-A INPUT -s XXX.XXX.XXX.XXX/32 -p tcp -m tcp --dport 22 -j ACCEPT"
REAL = "-A INPUT -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -j ACCEPT"
MAC = "-A INPUT -i eth0 -p tcp -m mac --mac-source XX:XX:XX:XX:XX:XX -m tcp --dport 22 -j ACCEPT"


def dump(*lines: str, policy: str = "DROP") -> str:
    return (f"*filter\n:INPUT {policy} [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n"
            + "".join(line + "\n" for line in lines) + "-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n")


def ipv4(text: str, file: str = "anon.rules"):
    return read(text, file, "save", Family.IPV4)


def explain(b, spec: str):
    return Explainer(b.rulesets).run(parse_spec(spec))


SSH = "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN iif eth0"
WEB = "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN iif eth0"


def test_parse_refuses_the_line_as_iptables_restore_does_and_the_model_keeps_it():
    b = ipv4(dump(MAC))
    (err,) = [d for d in b.diagnostics if d.severity == "error"]
    assert (err.code, err.origin.line) == ("bad-mac", 7) and "XX:XX:XX:XX:XX:XX" in err.message
    assert "mac" not in render_save(b.rulesets[Family.IPV4])  # never rendered for a kernel
    ((table, chain, n, rule, parts),) = unread_rules(b.rulesets[Family.IPV4])
    assert (table, chain, n, rule.origin.line) == ("filter", "INPUT", 3, 7)
    assert parts[0].words == ("-m", "mac", "--mac-source", "XX:XX:XX:XX:XX:XX")
    (warn,) = [d for d in b.for_analysis() if d.severity != "note"]
    assert warn.severity == "warning" and "stockade cannot read `-m mac --mac-source XX:XX:XX:XX:XX:XX`" in warn.message


def test_explain_is_unknown_naming_the_rule_only_where_the_verdict_depends_on_it():
    b = ipv4(dump(MAC))
    for spec in (SSH, SSH + " mac 52:54:00:12:34:56"):
        res = explain(b, spec)
        assert res.verdict == "UNKNOWN"
        assert "filter/INPUT rule 3 (anon.rules:7:1)" in res.reason and "--mac-source XX:XX:XX:XX:XX:XX" in res.reason
    assert explain(b, WEB).verdict == "ACCEPT"  # the packet never reaches the rule with its test
    assert explain(b, WEB.replace("> 192.0.2.1:80", "> 192.0.2.1:23")).verdict == "DROP"
    # with an ACCEPT policy the SSH packet is accepted whether or not the MAC matches
    res = explain(ipv4(dump(MAC, policy="ACCEPT")), SSH)
    assert res.verdict == "ACCEPT" and any("does not depend on filter/INPUT rule 3 (anon.rules:7:1)" in n
                                           for n in res.notes)


def test_an_unreadable_target_is_unknown_where_it_is_reached_and_a_log_one_changes_nothing():
    b = ipv4(dump("-A INPUT -p tcp -m tcp --dport 25 -j REJECT --reject-with XX",
                  "-A INPUT -p tcp -m tcp --dport 22 -j LOG --log-level XX"))
    res = explain(b, SSH.replace(":22 ", ":25 "))
    assert res.verdict == "UNKNOWN" and "`-j REJECT --reject-with XX`" in res.reason
    assert explain(b, SSH).verdict == "DROP"  # logged (or refused), it goes on to the policy


def test_analyze_says_maybe_naming_the_rule():
    rs = ipv4(dump(ANON)).rulesets[Family.IPV4]
    out = analyze_ruleset(rs, Options(services=["tcp/22", "tcp/80"]))
    ssh = out["service_matrix"]["tcp/22"]
    assert ssh["undecided"] and all(set(u["depends_on"]) == {"filter/INPUT rule 3 (anon.rules:7:1)"}
                                    for u in ssh["undecided"])
    assert "-s XXX.XXX.XXX.XXX/32" in out["undecided_rules"]["filter/INPUT rule 3 (anon.rules:7:1)"]
    outside = next(e for e in out["open_ports"] if e["sources"][0].startswith("0.0.0.1"))
    assert "22" in outside["maybe"]["tcp"] and "80" in outside["open"]["tcp"]


def test_diff_names_the_rule_in_depends():
    old, new = ipv4(dump(REAL), "real.rules"), ipv4(dump(ANON))
    d = semantic_diff(old.rulesets, new.rulesets)
    ssh = [c for c in d.changes if c.klass()["dport"] == "22" and c.hook == "INPUT"]
    assert ssh and all(c.new.verdict == "UNKNOWN" and any("anon.rules:7:1" in x and "XXX.XXX" in x
                                                          for x in c.new.depends) for c in ssh)
    assert not [c for c in d.changes if c.klass()["dport"] == "80"]


def test_findings_claim_no_shadowing_through_it():
    """A rule after the stand-in would be shadowed if the unreadable address were read as `anywhere`;
    it may or may not be, so no shadowed-rule is claimed for it."""
    text = dump("-A INPUT -s x.x.x.x -p tcp -m tcp --dport 22 -j ACCEPT",
                "-A INPUT -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -j DROP")
    b = ipv4(text)
    found = check(b.rulesets, "anon.rules")
    assert not [f for f in found if f.id == "STK201" and f.origin.line == 8]
    plain = ipv4(text.replace("-s x.x.x.x ", ""))  # the same without the unknown test: line 8 is shadowed
    assert [f for f in check(plain.rulesets, "anon.rules") if f.id == "STK201" and f.origin.line == 8]


def test_audit_refuses_what_the_lab_cannot_load(tmp_path):
    text = dump(ANON)
    with pytest.raises(Incomplete) as e:
        run_audit(str(tmp_path / "anon.rules"), text)
    assert e.value.diagnostics[0].origin.line == 7 and "XXX.XXX.XXX.XXX/32" in e.value.diagnostics[0].message


def test_cli_diff_reads_an_anonymised_dump(tmp_path):
    (tmp_path / "real.rules").write_text(dump(REAL))
    (tmp_path / "anon.rules").write_text(dump(ANON))
    rulesets, diags = load_rulesets(str(tmp_path / "anon.rules"))
    assert [d.code for d in diags if d.severity != "note"] == ["unread-value"]
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "diff", "--json", str(tmp_path / "real.rules"),
                        str(tmp_path / "anon.rules")], capture_output=True, text=True, check=False)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    v4 = [c for c in doc["changes"] if c["family"] == 4]  # (the anonymised dump also serves IPv6: no IPv4 mark)
    assert v4 and all("anon.rules:7:1" in " ".join(c["new"]["depends"]) for c in v4)
    parse = subprocess.run([sys.executable, "-m", "stockade.cli", "parse", str(tmp_path / "anon.rules")],
                           capture_output=True, text=True, check=False)
    assert parse.returncode == 1 and "XXX" not in parse.stdout and "7:13: error: `XXX.XXX.XXX.XXX/32`" in parse.stderr
