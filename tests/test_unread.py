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

from stockade.commands.inputs import load
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
        run_audit(str(tmp_path / "anon.rules"), read(text, "anon.rules"))
    assert e.value.diagnostics[0].origin.line == 7 and "XXX.XXX.XXX.XXX/32" in e.value.diagnostics[0].message


def test_cli_diff_reads_an_anonymised_dump(tmp_path):
    (tmp_path / "real.rules").write_text(dump(REAL))
    (tmp_path / "anon.rules").write_text(dump(ANON))
    diags = load(str(tmp_path / "anon.rules"), whole=True).builder.for_analysis()
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


# -- scripts: what cannot be resolved statically makes the answers that depend on it UNKNOWN ---------------

def script(text: str, path: str = "fw.sh", **how):
    from stockade.parse.script import Invocation, read_script

    return read_script("#!/bin/sh\n" + text, path, how=Invocation(**how))


def verdict(b, spec: str):
    res = explain(b, spec)
    return res.verdict, res.reason or ""


def test_a_rule_with_a_word_from_a_program_stays_in_at_its_place():
    b = script("ADMIN=$(curl -s https://example.invalid/admin)\n"
               "iptables -A INPUT -p tcp --dport 23 -j DROP\n"
               "iptables -A INPUT -p tcp -s $ADMIN --dport 22 -j ACCEPT\n"
               "iptables -A INPUT -j DROP\n")
    v, why = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")
    assert v == "UNKNOWN" and "filter/INPUT rule 2 (fw.sh:4:1)" in why and "depends on script line 2 " in why
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:23 SYN")[0] == "DROP"  # decided before it
    assert verdict(b, "udp 198.51.100.7:40000 > 192.0.2.1:22")[0] == "DROP"  # its known tests fail
    assert "-s" not in render_save(b.rulesets[Family.IPV4])  # parse prints what is known only
    # a rule inserted at the top later goes above it, as in the kernel
    b = script("iptables -A INPUT -s $(cat /etc/admins) -j DROP\niptables -I INPUT 1 -p tcp --dport 22 -j ACCEPT\n")
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")[0] == "ACCEPT"
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")[0] == "UNKNOWN"


def test_an_unknown_target_word_leaves_the_target_unknown_too():
    b = script("ACTION=$(cat /etc/fw/action)\niptables -P INPUT ACCEPT\niptables -A INPUT -p tcp --dport 22 -j $ACTION\n")
    v, why = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")
    assert v == "UNKNOWN" and "depends on script line 2" in why
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")[0] == "ACCEPT"


def test_a_loop_over_unknown_values_reads_its_body_once_with_the_value_unknown(tmp_path):
    for body in ("for ip in $(cat /etc/fw/blocked.txt); do\n  iptables -A INPUT -s $ip -j DROP\n"
                 "  iptables -A INPUT -p udp -j DROP\ndone\n",
                 "while read ip; do\n  iptables -A INPUT -s $ip -j DROP\n  iptables -A INPUT -p udp -j DROP\n"
                 "done < blocked.txt\n"):
        b = script("iptables -P INPUT ACCEPT\n" + body + "iptables -A INPUT -p tcp --dport 80 -j ACCEPT\n",
                   str(tmp_path / "fw.sh"))
        v, why = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")
        assert v == "UNKNOWN" and "depends on script line" in why and ":4:" in why, body
        # a rule of the body without the unknown value: the loop may run no time
        (udp,) = [r for r in b.rulesets[Family.IPV4].tables["filter"].chains["INPUT"].rules
                  if r.proto is not None and r.proto.number == 17]
        assert [m.data.why for m in udp.matches if m.name == "condition"] == [
            "depends on script line 3 (stockade cannot tell whether the script gets here)"], body


def test_a_function_called_with_an_unknown_argument_adds_its_rule_as_unknown():
    b = script("allow() {\n  iptables -A INPUT -p tcp -s \"$1\" --dport 22 -j ACCEPT\n}\n"
               "iptables -P INPUT DROP\nallow \"$(curl -s https://example.invalid/ip)\"\nallow 198.51.100.9\n")
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")[0] == "UNKNOWN"
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")[0] == "DROP"


@pytest.mark.parametrize("line", [
    "/usr/local/sbin/firewall-extra --open 22",  # a program stockade cannot look into
    'eval "$(cat /etc/fw/rules.cmd)"',  # eval of text it cannot expand
    'sh -c "$(curl -s https://example.invalid/fw)"',
    "sudo $(cat /etc/fw/cmd) -A INPUT -j ACCEPT",
    "bash /etc/fw/extra.sh",  # a script that is not there
    ". /etc/fw/extra.conf",
    "iptables -t $(cat /etc/fw/table) -A INPUT -j ACCEPT",  # the table is unknown
    "iptables -D INPUT -s $(cat /etc/fw/ip) -j ACCEPT",  # an unknown rule is removed
])
def test_a_command_that_may_do_anything_makes_the_family_unknown_from_that_line(line):
    b = script("iptables -P INPUT DROP\niptables -A INPUT -p tcp --dport 22 -j ACCEPT\n" + line + "\n"
               "iptables -A INPUT -p tcp --dport 80 -j ACCEPT\n")
    for port in (22, 80, 25):
        v, why = verdict(b, f"tcp 198.51.100.7:40000 > 192.0.2.1:{port} SYN")
        assert v == "UNKNOWN" and "depends on script line 4: " in why and "may change the firewall" in why, line
    assert "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in render_save(b.rulesets[Family.IPV4])


def test_commands_that_do_not_touch_the_firewall_change_no_answer():
    b = script("modprobe ip_conntrack\nsysctl -w net.ipv4.ip_forward=0\necho starting\nlogger -t fw start\n"
               "sleep 1\ndate\nNOW=$(date +%s)\necho \"$(hostname) $NOW\" >> /var/log/fw.log\ntrue\n"
               "iptables -P INPUT DROP\niptables -A INPUT -p tcp --dport 22 -j ACCEPT\n")
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")[0] == "ACCEPT"
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")[0] == "DROP"
    assert not b.unknowns


def test_a_flush_and_policies_after_an_unknown_program_make_the_answers_known_again():
    """What the program put in INPUT is flushed and INPUT's policy set again; OUTPUT's policy is not."""
    b = script("/opt/vendor/fw-helper start\niptables -F\niptables -P INPUT DROP\n"
               "iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n")
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")[0] == "ACCEPT"
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")[0] == "DROP"
    v, why = verdict(b, "tcp 192.0.2.1:40000 > 198.51.100.7:80 SYN hook OUTPUT oif eth0")
    assert v == "UNKNOWN" and "depends on script line 2" in why and "OUTPUT policy" in why


def test_a_file_other_than_the_script_is_named(tmp_path):
    (tmp_path / "lib.sh").write_text("iptables -A INPUT -s $(cat /etc/admins) -j ACCEPT\n")
    b = script(". ./lib.sh\niptables -A INPUT -j DROP\n", str(tmp_path / "fw.sh"))
    v, why = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")
    assert v == "UNKNOWN" and f"depends on script line 1 of {tmp_path / 'lib.sh'}" in why


# A script as admins write them for a small gateway (the shape of the real-world ones in tests/realworld):
# the admin address fetched at run time, a block list read from a file the host has, an include that is
# not there, and harmless logging.
GATEWAY = """IPT=/sbin/iptables
ADMIN=$(curl -s https://example.invalid/admin-ip)
[ -r /etc/default/firewall ] && . /etc/default/firewall

$IPT -F
$IPT -X
$IPT -P INPUT DROP
$IPT -P FORWARD DROP
$IPT -P OUTPUT ACCEPT
$IPT -A INPUT -i lo -j ACCEPT
$IPT -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
$IPT -A INPUT -p tcp -s $ADMIN --dport 22 -j ACCEPT
for ip in $(cat /etc/firewall/blocked.txt); do
    $IPT -A INPUT -s $ip -j DROP
done
$IPT -A INPUT -p tcp --dport 80 -j ACCEPT
$IPT -A INPUT -p icmp --icmp-type echo-request -j ACCEPT
logger -t firewall "rules loaded"
"""


def test_a_realistic_script_answers_with_what_it_depends_on(tmp_path):
    path = tmp_path / "gateway.sh"
    path.write_text("#!/bin/sh\n" + GATEWAY)
    b = script(GATEWAY, str(path))
    ssh = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")
    web = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")
    smtp = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:25 SYN")
    assert ssh[0] == "UNKNOWN" and "gateway.sh:13:1" in ssh[1] and "depends on script line 3 (`$ADMIN`" in ssh[1]
    assert web[0] == "UNKNOWN" and "depends on script line 14 (`$ip`" in web[1]  # the block list comes first
    assert smtp[0] == "DROP"  # whatever the unknown rules are, nothing accepts tcp/25
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:25 SYN state ESTABLISHED")[0] == "ACCEPT"
    # analyze: maybe, naming the lines
    out = analyze_ruleset(b.rulesets[Family.IPV4], Options(services=["tcp/22", "tcp/25"]))
    assert out["service_matrix"]["tcp/22"]["undecided"] and not out["service_matrix"]["tcp/25"]["undecided"]
    assert any("gateway.sh:13:1" in k for k in out["undecided_rules"])
    # diff against the same script with the values written in: every change names what it depends on
    known = GATEWAY.replace("$(curl -s https://example.invalid/admin-ip)", "198.51.100.7").replace(
        "$(cat /etc/firewall/blocked.txt)", "203.0.113.66")
    k = script(known, str(tmp_path / "known.sh"))
    d = semantic_diff(k.rulesets, b.rulesets)
    assert d.changes and all(any("depends on script line" in x for x in c.new.depends) for c in d.changes)
    # the CLI: explain says so, and audit refuses what the lab cannot load
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(path), "--packet",
                        "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "verdict: UNKNOWN" in r.stdout and "depends on script line 3" in r.stdout
    with pytest.raises(Incomplete):
        run_audit(str(path), read(path.read_text(), str(path)))


def test_findings_are_never_about_what_an_unknown_program_may_have_done():
    from stockade.semantics.findings import lint

    text = ("iptables -F\niptables -P INPUT DROP\niptables -A INPUT -i lo -j ACCEPT\n"
            "iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n/usr/local/sbin/vendor-fw --apply\n"
            "iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n")
    b = script(text)
    found = lint(b, "#!/bin/sh\n" + text, "fw.sh", script=True)
    assert not [f for f in found if f.origin.line == 6 and f.name in ("shadowed-rule", "maybe-shadowed",
                                                                      "redundant-rule")]
    assert [f for f in found if f.name == "shadowed-rule" and f.origin.line == 7]  # the duplicate, surely
    (v6,) = [f for f in found if f.name == "ipv6-open"]
    assert v6.message.endswith("(unless what line 6 runs does)") and v6.origin.line == 4


def test_a_rule_under_a_condition_stockade_cannot_decide_may_or_may_not_be_there(tmp_path):
    b = script("iptables -P INPUT DROP\nif [ -f /etc/firewall/allow-web ]; then\n"
               "  iptables -A INPUT -p tcp --dport 80 -j ACCEPT\nfi\niptables -A INPUT -p tcp --dport 22 -j ACCEPT\n")
    v, why = verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:80 SYN")
    assert v == "UNKNOWN" and "depends on script line 3 (stockade cannot tell whether the script gets here)" in why
    assert verdict(b, "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN")[0] == "ACCEPT"
    # parse prints the rule as read (the condition read as true, with a warning), as before
    assert "-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT" in render_save(b.rulesets[Family.IPV4])


def test_rules_behind_and_or_lists_with_an_unknown_status_may_or_may_not_be_there():
    b = script("iptables -P INPUT ACCEPT\n"
               "grep -q 198.51.100.9 /etc/fw/whitelist || iptables -A INPUT -s 198.51.100.9 -j DROP\n"
               "pidof sshd && iptables -A INPUT -p tcp --dport 22 -j DROP\n"
               "[ -n \"$(cat /etc/fw/iface)\" ] || IFACE=eth0\niptables -A INPUT -i \"$IFACE\" -j DROP\n")
    v, why = verdict(b, "udp 198.51.100.9:40000 > 192.0.2.1:53")
    assert v == "UNKNOWN" and "depends on script line 3 (stockade cannot tell whether the script gets here)" in why
    v, why = verdict(b, "tcp 192.0.2.7:40000 > 192.0.2.1:22 SYN")
    assert v == "UNKNOWN" and "depends on script line 4 " in why
    text = render_save(b.rulesets[Family.IPV4])
    assert "198.51.100.9" not in text  # the reading parse prints: `||` not run, `&&` run (as before)
    assert "--dport 22 -j DROP" in text
    assert "-i eth0" not in text  # the `||` branch's assignment does not leak into the path read


def test_a_chain_a_missing_sourced_file_may_have_made_is_no_error():
    b = script(". /etc/gate/global.sh\niptables -F FORWARD_ACCEPT\niptables -A FORWARD_ACCEPT -d $GATE -j ACCEPT\n")
    assert not [d for d in b.diagnostics if d.severity == "error"]
    (w,) = [d for d in b.diagnostics if d.code == "unknown-chain"]
    assert w.severity == "warning" and "line 2, which stockade cannot look into, may have made it" in w.message
    cannot = [d for d in b.diagnostics if d.code == "cannot-expand"]
    assert cannot and "`$GATE`: the script does not set it, and `. /etc/gate/global.sh` (line 2)" in cannot[0].message
