"""`stockade convert`: a script turned into a policy whose semantic diff against the script lists only
the differences the policy names on purpose. Each seed and the demo script convert with 0 unexplained
packet classes; a policy with an entry removed or widened is caught (the explanations are narrow)."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.resources import files

import pytest

from stockade.commands.inputs import load
from stockade.policy.convert import convert, prove

from .corpus import SEEDS

DEMO = str(files("stockade.data").joinpath("demo-firewall.sh"))
INPUTS = sorted(str(p) for p in SEEDS.glob("*.txt")) + [DEMO]


def converted(path: str, tmp_path, edit=None):
    rulesets = load(str(path), whole=True).builder.loaded()
    conv = convert(rulesets, path)
    if edit:
        edit(conv.policy)
    out = tmp_path / "policy.toml"
    text = conv.toml()
    out.write_text(text)
    return conv, rulesets, prove(conv, rulesets, str(out), text)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.rsplit("/", 1)[-1][:3])
def test_every_changed_class_is_a_deliberate_difference(path, tmp_path):
    conv, _, proof = converted(path, tmp_path)
    assert proof.diff.changes, "a policy always differs somewhere (IPv6, FORWARD)"
    assert [e.change.text() for e in proof.unexplained] == []
    used = proof.used(conv)
    assert sum(used.values()) >= len(proof.diff.changes)
    text = conv.toml(used)
    data = tomllib.loads(text)
    assert data["allow"]
    for i in used:  # each deviation used is in the header, with its script line
        d = conv.deviations[i]
        assert f"{d.topic} ({d.script};" in text


def _seed(prefix: str) -> str:
    return next(p for p in INPUTS if p.rsplit("/", 1)[-1].startswith(prefix))


def test_what_the_seeds_open_is_what_the_policy_opens(tmp_path):
    opened = {}
    for prefix in ("000", "002", "003", "004"):
        conv, _, _ = converted(_seed(prefix), tmp_path)
        opened[prefix] = {(s if isinstance(e["service"], list) else e["service"], str(e["from"]))
                          for e in conv.policy["allow"] for s in (e["service"] if isinstance(e["service"], list)
                                                                  else [e["service"]])}
        opened[prefix] = {(s, f) for s, f in opened[prefix]}
    assert opened["002"] == {("smtp", "everyone"), ("http", "everyone")}
    assert opened["004"] == {(s, "everyone") for s in ("http", "https", "pop3", "imap", "imaps", "ssh")}
    assert {s for s, _ in opened["003"]} == {"http", "smtp", "imap", "imaps", "ssh", "53/udp"}
    conv, _, _ = converted(_seed("003"), tmp_path)
    assert conv.policy["groups"][conv.policy["admin"][0]] == ["192.168.1.33"]  # `-s 192.168.1.33 -j ACCEPT`
    conv, _, _ = converted(_seed("000"), tmp_path)
    assert conv.policy["groups"]["blocked"] == ["202.54.20.22"]
    assert conv.policy["blocklist"] == {"inbound": ["blocked"], "outbound": ["blocked"]}
    tcp53 = next(e for e in conv.policy["allow"] if e["service"] == "53/tcp")  # the zone transfer: secondary only
    assert tcp53["from"] == ["tcp53-clients"] and conv.policy["groups"]["tcp53-clients"] == ["202.54.10.2"]
    assert conv.policy["protect"]["syn_flood"] == {"rate": "1/second", "burst": 3}


def test_the_demo_scripts_admins_keep_ssh(tmp_path):
    conv, _, _ = converted(DEMO, tmp_path)
    ssh = next(e for e in conv.policy["allow"] if e["service"] == "ssh")
    assert conv.policy["groups"][ssh["from"][0]] == ["198.51.100.7", "198.51.100.8"]


def test_a_missing_entry_is_unexplained(tmp_path):
    """The explanations cover classes by what they are, not by being different: a policy that loses a
    service, or opens one wider than the script, leaves classes no deviation explains."""
    def drop_ssh(p):
        (entry,) = p["allow"]
        entry["service"].remove("ssh")
    _, _, proof = converted(_seed("004"), tmp_path, drop_ssh)
    assert any("tcp/22" in e.change.text() for e in proof.unexplained)

    def widen(p):
        for e in p["allow"]:
            if e["service"] == "ssh":
                e["from"] = "everyone"
    _, _, proof = converted(DEMO, tmp_path, widen)
    assert any("tcp/22" in e.change.text() and e.change.new.verdict == "ACCEPT" for e in proof.unexplained)


def stockade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True, check=False)


def test_the_command_writes_the_policy_and_diff_agrees(tmp_path):
    out = tmp_path / "p.toml"
    r = stockade("convert", _seed("002"), "--to", "policy", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "0 unexplained" in r.stderr and "Traceback" not in r.stderr
    listed = [line for line in r.stderr.splitlines() if line.startswith("  IPv") and "\u2192" in line]
    assert listed and all("UNEXPLAINED" not in line for line in listed)  # each class: script line, reason
    assert any("(FORWARD policy) \u2192 DROP: forward:" in line for line in listed)
    assert tomllib.loads(out.read_text())["allow"] == [{"service": ["smtp", "http"], "from": "everyone"}]
    r = stockade("convert", _seed("002"), "--json")
    got = json.loads(r.stdout)
    assert r.returncode == 0 and got["unexplained"] == 0 and got["changed"] == len(got["changes"])
    assert all(c["explained_by"] and c["reasons"] for c in got["changes"])
    assert {d["topic"] for d in got["deviations"]} >= {"ipv6", "forward"}
    r = stockade("diff", _seed("002"), str(out), "--json")
    assert r.returncode == 1 and len(json.loads(r.stdout)["changes"]) == got["changed"]


def test_bad_input_is_an_error_not_a_traceback(tmp_path):
    binary = tmp_path / "x.sh"
    binary.write_bytes(b"iptables -A INPUT\0\n")
    r = stockade("convert", str(binary))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = stockade("convert", _seed("002"), "--out", str(tmp_path / "no" / "dir.toml"))
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr
    empty = tmp_path / "empty.sh"
    empty.write_text("#!/bin/sh\n")
    r = stockade("convert", str(empty))
    assert r.returncode == 0 and "Traceback" not in r.stderr


DUAL = """#!/bin/sh
for ipt in iptables ip6tables; do
  $ipt -P INPUT DROP
  $ipt -A INPUT -i lo -j ACCEPT
  $ipt -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  $ipt -A INPUT -p tcp --dport 443 -j ACCEPT
done
iptables -A INPUT -s 198.51.100.7 -p tcp --dport 22 -j ACCEPT
ip6tables -A INPUT -s 2001:db8:1::/48 -p tcp --dport 22 -j ACCEPT
ip6tables -A INPUT -p ipv6-icmp -j ACCEPT
"""


def test_both_families_in_one_policy(tmp_path):
    """A script for IPv4 and IPv6: one group holds both families' sources; where a policy setting is one
    for both (ping) and the script differs per family, that is a deliberate difference, not a silent one."""
    script = tmp_path / "dual.sh"
    script.write_text(DUAL)
    conv, _, proof = converted(str(script), tmp_path)
    ssh = next(e for e in conv.policy["allow"] if e["service"] == "ssh")
    assert conv.policy["groups"][ssh["from"][0]] == ["198.51.100.7", "2001:db8:1::/48"]
    assert proof.unexplained == []
    used = {conv.deviations[i].topic for i in proof.used(conv)}
    assert "ping" in used and "ipv6" not in used


@pytest.mark.parametrize("text, topic", [
    ("iptables -t nat -A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 8080\n", "closed"),
    ("ipset create bad hash:net\nipset add bad 192.0.2.0/24\n"
     "iptables -A INPUT -m set --match-set bad src -j DROP\niptables -A INPUT -p tcp --dport 80 -j ACCEPT\n"
     "iptables -P INPUT DROP\n", None),
    ("iptables -A INPUT -m set --match-set unseen src -j DROP\niptables -A INPUT -p tcp --dport 80 -j ACCEPT\n"
     "iptables -P INPUT DROP\n", "not-converted"),
], ids=["nat-only", "set-shown", "set-unseen"])
def test_what_a_policy_cannot_hold_is_named(text, topic, tmp_path):
    """A nat-only script has no filter table; a rule on a set whose members the script never shows cannot
    become a group: each is a named deliberate difference, never a traceback or an unexplained class."""
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n" + text)
    conv, _, proof = converted(str(script), tmp_path)
    assert [e.change.text() for e in proof.unexplained] == []
    used = {conv.deviations[i].topic for i in proof.used(conv)}
    assert topic is None or topic in used, used
