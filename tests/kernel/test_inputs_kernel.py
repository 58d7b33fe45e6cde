"""Issue 12, "Must show": `explain POLICY`, `explain rules.v4 --ipsets ipsets` and `explain --live --netns X`
give the kernel's verdicts, with the compiled ruleset loaded, for packets that set rules decide too.

examples/003-web-mail-ssh-dns.toml (interface eth0 read as the lab server's in0) is compiled by
`stockade compile` to rules.v4, rules.v6 and ipsets; those files are loaded into a lab server namespace
with `ipset restore` and iptables-restore/ip6tables-restore (test_policy_backends.Backend: its raw table
makes every packet observable). Each packet is sent as a real frame and the kernel's verdict read from
counters (ACCEPT, DROP, REJECT/rst, REJECT/icmp). The same packets, as one `--packets` file, go through
four real `stockade explain --json` processes: the policy, each rules file with the ipsets file, and the
live ruleset of the server namespace. Every answer must be the kernel's; without `--ipsets` the packets
a set rule decides are UNKNOWN (the set's members are not known), which is why --ipsets exists.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from stockade.lab.topology import SERVER_V4, SERVER_V6
from stockade.model import Family
from stockade.model.packet import from_json

from .test_policy_backends import Backend, raw_table, split_raw

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "003-web-mail-ssh-dns.toml"


def _tcp(src: str, dport: int) -> dict:
    return {"proto": "tcp", "src": src, "dst": SERVER_V6 if ":" in src else SERVER_V4, "sport": 40000,
            "dport": dport, "tcp_flags": ["SYN"], "iif": "in0"}


def _udp(src: str, dport: int) -> dict:
    return {"proto": "udp", "src": src, "dst": SERVER_V6 if ":" in src else SERVER_V4, "sport": 40000,
            "dport": dport, "iif": "in0"}


# (packet, decided by a set rule): admins (stk-admins-ip4 / -net6) may use SSH only, adminhost
# (stk-adminhost-ip4) everything; everyone else the public services.
PACKETS = [
    (_tcp("198.51.100.7", 22), True), (_tcp("198.51.100.7", 8080), False), (_tcp("198.51.100.33", 8080), True),
    (_tcp("198.51.100.33", 22), True), (_tcp("203.0.113.5", 22), False), (_tcp("203.0.113.5", 80), False),
    (_tcp("203.0.113.5", 8080), False), (_udp("203.0.113.5", 53), False), (_udp("198.51.100.7", 5353), False),
    (_udp("198.51.100.33", 5353), True),
    ({"proto": "icmp", "src": "203.0.113.5", "dst": SERVER_V4, "icmp_type": 8, "iif": "in0"}, False),
    (_tcp("2001:db8:1::5", 22), True), (_tcp("2001:db8:2::5", 22), False), (_tcp("2001:db8:2::5", 443), False),
    (_tcp("2001:db8:1::5", 8080), False), (_udp("2001:db8:2::5", 5353), False),
]


def kernel_view(out: dict) -> str:
    """What the kernel shows of an explain answer: a REJECT that answers nothing looks like DROP."""
    if out["verdict"] != "REJECT":
        return out["verdict"]
    note = next(n for n in out["notes"] if n.startswith("REJECT with "))
    if "nothing is sent back" in note:
        return "DROP"
    return "REJECT/rst" if note.startswith("REJECT with tcp-reset") else "REJECT/icmp"


def explain(packets: Path, *args: str) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", "--json", "--packets", str(packets), *args],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_explain_of_every_input_kind_gives_the_kernels_verdict(kernel_ok, tmp_path):
    policy = tmp_path / "003.toml"
    policy.write_text(EXAMPLE.read_text().replace('interfaces = ["eth0"]', 'interfaces = ["in0"]'))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "compile", str(policy), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    specs = [p for p, _ in PACKETS]
    by_family = {fam: [i for i, s in enumerate(specs) if from_json(s).family is fam] for fam in Family}
    files = {}
    for fam in Family:
        files[fam] = tmp_path / f"packets.v{int(fam)}"
        files[fam].write_text("".join(json.dumps(specs[i]) + "\n" for i in by_family[fam]))
    every = tmp_path / "packets"
    every.write_text("".join(json.dumps(s) + "\n" for s in specs))

    with Backend("iptables") as b:
        p = b.probe
        p.server.run(["ipset", "restore"], input=(out / "ipsets").read_text())
        for fam in Family:
            raw, rest = split_raw((out / f"rules.v{int(fam)}").read_text())
            b.snap[fam] = p.load(fam, raw_table(fam, raw) + rest)
        kernel = [b.send(from_json(s)) for s in specs]
        live = explain(every, "--live", "--netns", p.server.name)

    answers = {"policy": explain(every, str(policy)), "live": live}
    dump = [None] * len(specs)
    for fam in Family:
        got = explain(files[fam], str(out / f"rules.v{int(fam)}"), "--ipsets", str(out / "ipsets"))
        for i, res in zip(by_family[fam], got):
            dump[i] = res
    answers["rules + ipsets"] = dump
    failures = [f"{name}: {kernel_view(res)}, kernel {k}: {json.dumps(s)}"
                for name, got in answers.items() for s, res, k in zip(specs, got, kernel) if kernel_view(res) != k]
    assert not failures, "\n".join(failures)
    assert {"ACCEPT", "REJECT/rst", "REJECT/icmp"} <= set(kernel), kernel
    # the set rules decide: the same port, opposite verdicts for a member and a stranger
    assert kernel[specs.index(_tcp("198.51.100.7", 22))] == "ACCEPT" != kernel[specs.index(_tcp("203.0.113.5", 22))]
    assert kernel[specs.index(_tcp("2001:db8:1::5", 22))] == "ACCEPT" != kernel[specs.index(_tcp("2001:db8:2::5", 22))]
    # without the ipsets file every packet a set rule looks at is undecided
    blind = explain(files[Family.IPV4], str(out / "rules.v4"))
    assert all(res["verdict"] == "UNKNOWN" for res in blind), blind
    # the packets marked so are the ones an admin set's rule decided (the trace's last rule looks one up)
    for (s, by_set), res in zip(PACKETS, dump):
        file, line = res["trace"][-1]["origin"].rsplit(":", 2)[:2]
        decided = Path(file).read_text().splitlines()[int(line) - 1]
        assert ("--match-set stk-admin" in decided) == by_set, (s, decided)
    print(f"\n{len(specs)} packets, kernel verdicts {Counter(kernel)}; "
          "policy, rules + ipsets and live explain agree with each")


SSH_FROM_STRANGER = "tcp 203.0.113.5:40000 > 192.0.2.1:22 SYN iif eth0"


def stockade(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_every_reading_command_reads_the_live_ruleset(netns, tmp_path):
    """The compiled policy loaded into a namespace (no harness around it) is what `--live` reads: the same
    rules as the files (parse), no packet class the policy or the files with their sets decide otherwise
    (diff), and lint and analyze read it whole. A namespace with an nftables table of its own is read composed
    (explain), or refused where a command does not read nftables (parse)."""
    out = tmp_path / "out"
    assert stockade("compile", str(EXAMPLE), "--out", str(out)).returncode == 0
    netns.run(["ipset", "restore"], input=(out / "ipsets").read_text())
    for fam in Family:
        netns.run([f"{fam.cmd}-restore"], input=(out / f"rules.v{int(fam)}").read_text())
    live = ["--live", "--netns", netns.name]

    r = stockade("parse", *live)
    assert r.returncode == 0, r.stderr
    files = [stockade("parse", str(out / f"rules.v{int(fam)}")) for fam in Family]
    rules = {line for f in files for line in f.stdout.splitlines() if line.startswith("-A ")}
    assert rules and {line for line in r.stdout.splitlines() if line.startswith("-A ")} == rules

    r = stockade("diff", *live, str(EXAMPLE))
    assert r.returncode == 0 and "no packet class changes its verdict" in r.stdout, r.stdout + r.stderr
    r = stockade("diff", *live, "--family", "4", str(out / "rules.v4"), "--ipsets", str(out / "ipsets"))
    assert r.returncode == 0 and "no packet class changes its verdict" in r.stdout, r.stdout + r.stderr
    r = stockade("diff", *live, "--family", "4", str(out / "rules.v4"))  # the file's set rules undecided
    assert r.returncode == 1, r.stdout + r.stderr

    r = stockade("explain", "--from", "live", "--netns", netns.name, "--json", "--packet", SSH_FROM_STRANGER)
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "REJECT", r.stdout + r.stderr
    r = stockade("lint", *live, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["rules"] > 20, r.stdout + r.stderr
    r = stockade("analyze", *live, "--json", "--service", "tcp/22", "--family", "6")
    assert r.returncode == 0 and json.loads(r.stdout)["family"] == 6, r.stdout + r.stderr

    netns.run(["nft", "add", "table", "inet", "mine"])  # a table of its own: read composed, or refused
    r = stockade("explain", *live, "--json", "--packet", SSH_FROM_STRANGER)
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "REJECT", r.stdout + r.stderr
    r = stockade("parse", *live)
    assert r.returncode == 2 and "this command does not read nftables" in r.stderr, r.stderr


def test_audit_reads_a_dump_with_its_ipsets_and_a_policy(kernel_ok, tmp_path):
    """audit of rules.v4 with --ipsets: the lab loads the sets too and probes from their members (the
    admins), every probe as the simulator predicts; audit of the policy (no .toml suffix) runs its lab."""
    out = tmp_path / "out"
    assert stockade("compile", str(EXAMPLE), "--out", str(out)).returncode == 0
    r = stockade("audit", str(out / "rules.v4"), "--ipsets", str(out / "ipsets"), "--family", "4", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert not [row for row in rows if row["status"] in ("MISMATCH", "unpredictable")]
    ssh = {row["source"]: row["observed"] for row in rows if (row["service"], row["probe"]) == ("22/tcp", "syn")}
    assert ssh["admins"].startswith("ACCEPT") and not ssh["outsider"].startswith("ACCEPT"), ssh
    policy = tmp_path / "policy"
    policy.write_text(EXAMPLE.read_text())
    r = stockade("audit", str(policy), "--family", "4", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["rows"], r.stdout[-2000:] + r.stderr


IPSET_CASES = [
    "# saved\ncreate a hash:ip family inet hashsize 1024 maxelem 65536\nadd a 192.0.2.1\n-A a 192.0.2.2 -exist\n"
    "del a 192.0.2.1\ncreate b hash:net family inet6 -exist\nadd b 2001:db8::/32\nCOMMIT\n",
    "create a hash:ip\ncreate b hash:ip\nadd b 192.0.2.5\nrename a c\nswap c b\n",
    "create a hash:ip\n-E a z\n-W z z\ne z y\n",
    "create a hash:ip\nadd a 192.0.2.9\nflush a\ncreate d hash:ip\ndestroy d\nadd a 192.0.2.7\n",
    "create a hash:ip\nadd a 192.0.2.1\nadd a 192.0.2.1\n",
    "create a hash:ip\ndel a 192.0.2.1\n",
    "create a hash:ip\ncreate a hash:ip\n",
    "create a hash:ip\ncreate a hash:ip -exist\nadd a 192.0.2.1 -exist\nadd a 192.0.2.1 -exist\n",
    "create a hash:ip\nadd b 192.0.2.1\n",
    "create a hash:ip\nrename a a\n",
    "create a hash:ip\nswap a b\n",
    "create a hash:ip\nadd a 192.0.2.1\nlist a\nsave\n-L\ntest a 192.0.2.1\nadd a 192.0.2.2\n",
    "create a hash:ip\ntest a 192.0.2.1\n",
    "create a hash:ip\nversion\n",
    "create a hash:ip\nbogus a\n",
]


def test_ipsets_files_are_read_as_ipset_restore_reads_them(netns):
    """parse/ipset.py against the real `ipset restore`: the same sets and members where it loads a file,
    refused where it refuses one, at the line it names (it names none for a command invalid in restore
    mode or a failed test)."""
    import re

    from stockade.model.diagnostics import Unreadable
    from stockade.parse.ipset import read_ipsets

    for text in IPSET_CASES:
        netns.run(["ipset", "destroy"])
        proc = netns.run(["ipset", "restore"], input=text, check=False)
        kernel: dict[str, list[str]] = {}
        for line in netns.run(["ipset", "save"]).stdout.splitlines():
            word, name, *rest = line.split()
            kernel.setdefault(name, []).extend([" ".join(rest)] if word == "add" else [])
        try:
            ours = {name: s.members for name, s in read_ipsets(text, "sets").items()}
        except Unreadable as e:  # refused: at the same line where ipset names one
            refused = re.search(r"Error in line (\d+)", proc.stderr)
            assert proc.returncode != 0, (text, str(e))
            assert refused is None or int(refused.group(1)) == e.diagnostic.origin.line, (text, proc.stderr, str(e))
            continue
        assert proc.returncode == 0, (text, proc.stderr)
        assert ours == kernel, text
