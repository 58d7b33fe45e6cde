"""Issue 12 item 4: every reading command reads every input kind through commands/inputs.py `load`.

Kinds by content (a policy without a .toml suffix too), `--from` overriding, `--ipsets` giving a dump's
set rules their members, `--family`, and the files stockade does not read (JSON, nftables, prose,
binary): exit 2 with a positioned message from every command, never "0 errors". `--live` itself is
shown in the kernel (tests/kernel/test_inputs_kernel.py); here only its usage errors.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stockade.cli import main
from stockade.commands.inputs import kind_of
from stockade.model import Family, Ruleset
from stockade.model.diagnostics import Unreadable
from stockade.parse.ipset import add_ipsets, read_ipsets

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "003-web-mail-ssh-dns.toml"
READING = ("parse", "lint", "explain", "analyze", "diff", "audit")
SSH_FROM_ADMIN = "tcp 198.51.100.7:40000 > 192.0.2.1:22 SYN iif eth0"
SSH_FROM_STRANGER = "tcp 203.0.113.5:40000 > 192.0.2.1:22 SYN iif eth0"
SSH6_FROM_ADMIN = "tcp [2001:db8:1::5]:40000 > [2001:db8::1]:22 SYN iif eth0"
NEUTRAL = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
V6_ONLY = NEUTRAL.replace("-A INPUT -p tcp --dport 22 -j ACCEPT", "-A INPUT -p ipv6-icmp -j ACCEPT")
NFT = "#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n  chain input {\n    type filter hook input priority 0;\n  }\n}\n"


def run(*args: str, stdin: str | None = None):
    r = CliRunner().invoke(main, list(args), input=stdin)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    return r


def argv(command: str, path: str, *extra: str) -> list[str]:
    """The command line of a reading command on one input (diff compares it with itself)."""
    rest = {"explain": ["--packet", SSH_FROM_STRANGER], "diff": [path]}.get(command, [])
    return [command, path, *rest, *extra]


@pytest.fixture
def policy(tmp_path) -> Path:
    p = tmp_path / "policy"  # no .toml suffix: found by its content
    p.write_text(EXAMPLE.read_text())
    return p


@pytest.fixture
def compiled(tmp_path, policy) -> Path:
    out = tmp_path / "out"
    r = run("compile", str(policy), "--out", str(out))
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("name, text, kind", [
    ("p.toml", "", "policy"),
    ("policy", "# mine\n[server]\ninterfaces = ['eth0']\n", "policy"),
    ("policy", "[[allow]]\nservice = 'ssh'\n", "policy"),
    ("rules.v4", NEUTRAL, "save"),
    ("fw", "#!/bin/sh\necho hello\n", "script"),
    ("fw", "Open SSH:\niptables -A INPUT -p tcp --dport 22 -j ACCEPT\n", "script"),
    ("fw.sh", ". ./lib.sh\n", "script"),
    ("empty", "", "script"),
    ("r.nft", NFT, "nft"),
    ("r", "table ip filter {\n}\n", "nft"),
    ("r", "add rule inet filter input tcp dport 22 accept\n", "nft"),
    ("x.json", '{"rulesets": []}', "json"),
    ("x", "[1, 2]\n", "json"),
    ("README", "Hello.\nThis is not a firewall.\n", "text"),
    ("fw", "#!/bin/bash\ncat > /etc/nftables.conf <<EOF\ntable inet filter {\n}\nEOF\n", "script"),
    ("fw", "#!/bin/sh\ncat > stockade.toml <<EOF\n[server]\nEOF\n", "script"),
])
def test_kind_by_content(name, text, kind):
    assert kind_of(name, text) == kind


@pytest.mark.parametrize("command", ["parse", "lint", "explain", "analyze", "diff"])
def test_a_policy_is_compiled_by_every_reading_command(command, policy):
    r = run(*argv(command, str(policy)))
    assert r.exit_code == 0, r.output
    out = r.output
    if command == "parse":
        assert "ip6tables-save" in out and "--match-set stk-admins-ip4 src" in out
    elif command == "lint":
        assert "0 error(s)" in out
        doc = json.loads(run("lint", str(policy), "--json").output.split("\n" + str(policy) + ":")[0])
        assert doc["rules"] > 20
    elif command == "explain":
        assert "verdict: REJECT" in out and "stk-syn" in out
    elif command == "analyze":
        assert "tcp/22" in out and "no rules" not in out
    else:
        assert "no packet class changes its verdict" in out


def test_explain_a_policy_answers_with_its_sets(policy):
    for spec, verdict in ((SSH_FROM_ADMIN, "ACCEPT"), (SSH_FROM_STRANGER, "REJECT"), (SSH6_FROM_ADMIN, "ACCEPT")):
        r = run("explain", str(policy), "--json", "--packet", spec)
        assert r.exit_code == 0 and json.loads(r.output)["verdict"] == verdict, (spec, r.output)


def test_lint_of_a_policy_that_allows_nothing_reads_its_default_rules(tmp_path):
    """A policy with nothing allowed is still a policy: its default rules are read, not "0 rules"."""
    p = tmp_path / "p.toml"
    p.write_text("[server]\ninterfaces = ['eth0']\n")
    r = run("lint", str(p), "--json")
    assert json.loads(r.output.split("\n" + str(p) + ":")[0])["rules"] > 0


def test_from_overrides_the_detected_kind(tmp_path, policy):
    prose = tmp_path / "notes"
    prose.write_text("just words\n")
    assert run("lint", str(prose)).exit_code == 2
    assert run("lint", str(prose), "--from", "script").exit_code == 0  # read as the empty script it is
    r = run("parse", str(policy), "--from", "save")  # a policy read as a dump: iptables-restore's errors
    assert r.exit_code == 1 and "error" in r.output
    r = run("explain", str(policy), "--from", "policy", "--packet", SSH_FROM_ADMIN)
    assert r.exit_code == 0 and "verdict: ACCEPT" in r.output


def test_ipsets_give_set_rules_their_members(compiled):
    v4, sets = str(compiled / "rules.v4"), str(compiled / "ipsets")
    blind = json.loads(run("explain", v4, "--json", "--packet", SSH_FROM_ADMIN).output)
    assert blind["verdict"] == "UNKNOWN" and "set" in blind["reason"]
    for spec, verdict in ((SSH_FROM_ADMIN, "ACCEPT"), (SSH_FROM_STRANGER, "REJECT")):
        r = run("explain", v4, "--ipsets", sets, "--json", "--packet", spec)
        assert json.loads(r.output)["verdict"] == verdict, r.output
    r = run("explain", str(compiled / "rules.v6"), "--ipsets", sets, "--json", "--packet", SSH6_FROM_ADMIN)
    assert json.loads(r.output)["verdict"] == "ACCEPT", r.output


def test_ipsets_through_analyze_lint_parse_and_diff(compiled, policy, tmp_path):
    dump, sets = tmp_path / "d.v4", tmp_path / "sets"
    dump.write_text("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                    "-A INPUT -p tcp --dport 22 -m set --match-set admins src -j ACCEPT\nCOMMIT\n")
    sets.write_text("create admins hash:ip family inet\nadd admins 198.51.100.7\n")
    matrix = {}
    for extra in ([], ["--ipsets", str(sets)]):
        r = run("analyze", str(dump), *extra, "--json", "--service", "tcp/22")
        assert r.exit_code == 0, r.output
        matrix[bool(extra)] = json.loads(r.output)["service_matrix"]["tcp/22"]
    assert matrix[False]["undecided"] and not matrix[True]["undecided"]
    admin = next(name for name, ranges in matrix[True]["classes"].items() if ranges == ["198.51.100.7"])
    assert {e[0] for e in matrix[True]["always"]} == {admin}  # only the set's member may open SSH
    for command in ("lint", "parse"):
        assert run(command, str(dump), "--ipsets", str(sets)).exit_code == 0
    # the compiled files are the policy: no packet class differs (the policy keeps its own sets)
    v4 = str(compiled / "rules.v4")
    r = run("diff", str(policy), v4, "--family", "4", "--ipsets", str(compiled / "ipsets"))
    assert r.exit_code == 0 and "no packet class changes its verdict" in r.output, r.output
    r = run("diff", str(policy), v4, "--family", "4")  # without the sets, the set rules are undecided
    assert r.exit_code == 1, r.output


def test_a_set_the_ipsets_file_lacks_is_the_kernels_error(compiled, tmp_path):
    few = tmp_path / "few"
    few.write_text("create stk-admins-ip4 hash:ip family inet\nadd stk-admins-ip4 198.51.100.7\n")
    r = run("explain", str(compiled / "rules.v4"), "--ipsets", str(few), "--packet", SSH_FROM_ADMIN)
    assert "ipset `stk-bogons-net4` does not exist" in r.output
    assert run("lint", str(compiled / "rules.v4"), "--ipsets", str(few)).exit_code == 1


@pytest.mark.parametrize("text, where", [
    ("create a hash:ip\nadd b 192.0.2.1\n", ":2:1: error: set b does not exist"),
    ("create a hash:ip\ncreate a hash:ip\n", ":2:1: error: set a is created twice"),
    ("create a hash:ip\nbogus a\n", ":2:1: error: `bogus` is not an ipset command"),
    ("-exist\n", ":1:1: error: `-exist` is not an ipset command"),
    ("create a hash:ip\ntest a 192.0.2.1\n", ":2:1: error: element 192.0.2.1 is not in set a"),
])
def test_a_bad_ipsets_file_is_exit_2_at_its_line(compiled, tmp_path, text, where):
    bad = tmp_path / "bad"
    bad.write_text(text)
    r = run("explain", str(compiled / "rules.v4"), "--ipsets", str(bad), "--packet", SSH_FROM_ADMIN)
    assert r.exit_code == 2 and f"{bad}{where}" in r.output, r.output


def test_ipsets_with_a_policy_or_live_is_an_error(policy, compiled):
    r = run("explain", str(policy), "--ipsets", str(compiled / "ipsets"), "--packet", SSH_FROM_ADMIN)
    assert r.exit_code == 2 and "a policy defines its own sets" in r.output
    r = run("explain", "--live", "--netns", "sk-none", "--ipsets", str(compiled / "ipsets"), "--packet", SSH_FROM_ADMIN)
    assert r.exit_code == 2 and "--ipsets is for a dump or a script" in r.output


def test_read_ipsets_as_ipset_restore_does():
    sets = read_ipsets("# saved\ncreate a hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n"
                       "add a 192.0.2.1\n-A a 192.0.2.2 -exist\nadd a 192.0.2.3\ndel a 192.0.2.2\n"
                       "create b hash:net family inet6 -exist\nadd b 2001:db8::/32\ncreate c bitmap:port range 1-1024\n"
                       "create d hash:ip\nadd d 192.0.2.9\nflush d\ncreate e hash:ip\ndestroy e\n"
                       "create a hash:ip -exist\nCOMMIT\n", "sets")
    assert sorted(sets) == ["a", "b", "c", "d"]
    assert sets["a"].members == ["192.0.2.1", "192.0.2.3"] and sets["d"].members == []
    assert sets["a"].options[:2] == ("family", "inet")
    rulesets = {f: Ruleset(f) for f in Family}
    add_ipsets(rulesets, sets)
    assert sorted(rulesets[Family.IPV4].sets) == ["a", "c", "d"]  # bitmap:port serves both families
    assert sorted(rulesets[Family.IPV6].sets) == ["b", "c"]
    with pytest.raises(Unreadable) as e:
        read_ipsets("add a 'unclosed\n", "sets")
    assert e.value.diagnostic.origin.line == 1


@pytest.mark.parametrize("command", READING)
@pytest.mark.parametrize("name, content, message", [
    ("x.json", b'{"rulesets": []}\n', ":1:1: error: cannot read input: a JSON document is not a ruleset"),
    ("README", b"Hello.\nThis is not a firewall.\n", ":1:1: error: cannot read input: text with no iptables"),
    ("blob", b"\x7fELF\x02\x01\x01\x00\x00", ":1:8: error: cannot read input: binary data"),
])
def test_an_unsupported_kind_is_exit_2_from_every_reading_command(tmp_path, command, name, content, message):
    p = tmp_path / name
    p.write_bytes(content)
    r = run(*argv(command, str(p)))
    assert r.exit_code == 2 and f"{p}{message}" in r.output and "0 error(s)" not in r.output, r.output


@pytest.mark.parametrize("command", [c for c in READING if c not in ("explain", "analyze", "diff", "lint")])
def test_nftables_is_refused_by_the_commands_that_do_not_read_it(tmp_path, command):
    p = tmp_path / "rules.nft"
    p.write_bytes(NFT.encode())
    r = run(*argv(command, str(p)))
    assert r.exit_code == 2 and f"{p}:1:1: error: cannot read input: this command does not read nftables" \
        in r.output, r.output
    q = tmp_path / "rules.v4"
    q.write_text(NEUTRAL)
    r = run(*argv(command, str(q), "--from", "nft"))
    assert r.exit_code == 2 and "this command does not read nftables" in r.output, r.output


def test_families_of_a_dump(tmp_path):
    neutral, v6 = tmp_path / "neutral", tmp_path / "v6"
    neutral.write_text(NEUTRAL)
    v6.write_text(V6_ONLY)
    # a dump without family-specific content serves both families
    for spec in ("tcp 203.0.113.5:40000 > 192.0.2.1:22 SYN", "tcp [2001:db8::5]:40000 > [2001:db8::1]:22 SYN"):
        r = run("explain", str(neutral), "--json", "--packet", spec)
        assert json.loads(r.output)["verdict"] == "ACCEPT", r.output
    r = run("parse", str(neutral), "--family", "6")
    assert "# ip6tables-save" in r.output and "# iptables-save" not in r.output
    # one whose only IPv6 mark is -p ipv6-icmp is IPv6
    r = run("explain", str(v6), "--json", "--packet", '{"proto": "ipv6-icmp", "src": "2001:db8::5", '
            '"dst": "2001:db8::1", "icmp_type": 128}')
    assert json.loads(r.output)["verdict"] == "ACCEPT", r.output
    r = run("parse", str(v6))
    assert "# ip6tables-save" in r.output and "# iptables-save" not in r.output
    # --family keeps one family of a policy
    r = run("analyze", str(EXAMPLE), "--family", "6", "--json", "--service", "tcp/22")
    assert json.loads(r.output)["family"] == 6 and "ipv6" not in json.loads(r.output)


@pytest.mark.parametrize("args, message", [
    (["explain", "x", "--live", "--packet", SSH_FROM_ADMIN], "--live reads the kernel's ruleset: give no file"),
    (["explain", "x", "--netns", "sk-x", "--packet", SSH_FROM_ADMIN], "--netns names the namespace --live reads"),
    (["lint", "--live", "--from", "save"], "--live reads the kernel's ruleset, --from save a file"),
    (["parse"], "give a file to read, or --live"),
    (["diff", "--live", "a", "b"], "with --live, give NEW only"),
    (["analyze", "--live", "--netns", "sk-no-such-namespace"], "there is no network namespace named"),
])
def test_live_usage(args, message):
    r = run(*args)
    assert r.exit_code == 2 and message in r.output, r.output


SCRIPT = """#!/bin/sh
ADMINS=admins
iptables -P INPUT DROP
iptables -A INPUT -p tcp --dport 22 -m set --match-set $ADMINS src -j ACCEPT
iptables -A INPUT -p tcp --dport 80 -j ACCEPT
"""
DUMP = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -m set --match-set admins src -j ACCEPT
-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
"""


@pytest.mark.parametrize("command", ["parse", "lint", "explain", "analyze", "diff"])
def test_a_script_and_a_dump_with_ipsets_through_every_command(tmp_path, command):
    """The same rules as a script and as a dump, with one sets file: every command reads both, and they
    answer alike (the set's member may use SSH, a stranger not)."""
    script, dump, sets = tmp_path / "fw", tmp_path / "rules", tmp_path / "sets"
    script.write_text(SCRIPT)
    dump.write_text(DUMP)
    sets.write_text("create admins hash:ip family inet\nadd admins 198.51.100.7\n")
    outputs = []
    for path in (script, dump):
        if command == "diff":
            r = run("diff", str(path), str(dump if path == script else script), "--ipsets", str(sets), "--family", "4")
            assert r.exit_code == 0 and "no packet class changes its verdict" in r.output, r.output
            continue
        if command == "explain":
            got = [json.loads(run("explain", str(path), "--ipsets", str(sets), "--json", "--packet",
                                  spec).output)["verdict"]
                   for spec in (SSH_FROM_ADMIN, SSH_FROM_STRANGER)]
            assert got == ["ACCEPT", "DROP"], got
            continue
        if command == "lint":  # the script's own findings (IPv6 left open) aside, both read whole
            r = run("lint", str(path), "--ipsets", str(sets), "--family", "4", "--json")
            assert json.loads(r.output.split("\n" + str(path) + ":")[0])["rules"] == 2, r.output
            continue
        r = run(command, str(path), "--ipsets", str(sets), "--family", "4",
                *(["--json", "--service", "tcp/22"] if command == "analyze" else []))
        assert r.exit_code == 0, r.output
        outputs.append(r.output.replace(str(path), "FILE"))
    if command == "parse":
        assert outputs[0].splitlines()[1:] == outputs[1].splitlines()[1:]
    elif command == "analyze":
        matrices = [json.loads(o)["service_matrix"]["tcp/22"] for o in outputs]
        assert matrices[0]["always"] == matrices[1]["always"] and not matrices[0]["undecided"]


def test_an_endless_input_is_refused_at_the_size_cap_not_read_forever():
    r = run("parse", "/dev/zero")
    assert r.exit_code == 2 and "larger than 256 MiB" in r.output
