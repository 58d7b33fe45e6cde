"""The command line: exit codes, formats, and no tracebacks on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.corpus import SEEDS

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


@pytest.mark.parametrize("content, where", [(b"*filter\n-A INPUT \x00\n", ":2:10:"), (b"# ok\n  caf\xe9\n", ":2:6:")])
def test_unreadable_input_names_the_line_and_column(tmp_path, content, where):
    p = tmp_path / "x"
    p.write_bytes(content)
    r = stockade("parse", str(p))
    assert r.returncode == 2 and f"{p}{where} error: cannot read input" in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["compile", "check", "diff"])
def test_an_unreadable_policy_is_exit_2_and_a_bad_one_exit_1(tmp_path, command):
    def run(policy):
        rest = {"compile": ["--out", str(tmp_path / "out")], "check": [], "diff": [policy]}[command]
        return stockade(command, policy, *rest)
    r = run(str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml: error: cannot read input" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\ninterfaces = 3\n")
    r = run(str(bad))
    assert r.returncode == 1 and "bad.toml:2:1: error:" in r.stderr and "Traceback" not in r.stderr


def test_explain_human_and_json(dump):
    r = stockade("explain", str(dump), "--packet", "tcp 198.51.100.7:40000 > 203.0.113.1:22 SYN iif eth0")
    assert r.returncode == 0, r.stderr
    assert "filter/INPUT rule 1" in r.stdout and "verdict: ACCEPT" in r.stdout
    r = stockade("explain", str(dump), "--json", "--packet",
                 '{"proto": "tcp", "src": "203.0.113.9", "dst": "203.0.113.1", "dport": 22, "tcp_flags": ["SYN"]}')
    out = json.loads(r.stdout)
    assert (out["verdict"], out["matched"], out["evaluated"]) == ("DROP", [], 1)
    assert out["trace"] == [{"table": "filter", "chain": "INPUT", "policy": "DROP"}]


def test_explain_batch_one_line_per_packet(dump, tmp_path):
    batch = tmp_path / "p.jsonl"
    batch.write_text('{"proto": "udp", "src": "192.0.2.1", "dst": "192.0.2.2", "dport": 53}\n'
                     '{"proto": "tcp", "src": "198.51.100.7", "dst": "192.0.2.2", "dport": 22}\n'
                     '{"proto": "bogus"}\n')
    r = stockade("explain", str(dump), "--packets", str(batch), "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x.get("verdict") for x in lines] == ["DROP", "ACCEPT", None]
    assert "error" in lines[2] and r.returncode == 2 and "Traceback" not in r.stderr


def test_explain_batch_file_is_read_like_any_input(dump, tmp_path):
    batch = tmp_path / "p.jsonl"
    batch.write_bytes(b'{"proto": "udp", "src": "192.0.2.1", "dst": "192.0.2.2", "dport": 53}\n{"proto": "\xff"}\n')
    r = stockade("explain", str(dump), "--packets", str(batch))
    # the bad line is answered in its place (the others still are), positioned, and the exit status is 2
    assert r.returncode == 2 and f"{batch}:2:12: error: byte 0xff is not UTF-8" in r.stdout, r
    assert r.stdout.startswith("1: DROP"), r.stdout
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(dump), "--packets", "-", "--json"],
                       input='{"proto": "udp", "src": "192.0.2.1", "dst": "192.0.2.2", "dport": 53}\n',
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "DROP", r.stderr


def test_explain_bad_spec_is_an_error_not_a_traceback(dump):
    r = stockade("explain", str(dump), "--packet", "tcp nonsense")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error" in r.stderr


def test_every_command_module_is_a_wired_command():
    import importlib
    import pkgutil

    import stockade.commands
    from stockade.cli import main

    modules = {m.name for m in pkgutil.iter_modules(stockade.commands.__path__)}
    commands = {name for name in modules if hasattr(importlib.import_module(f"stockade.commands.{name}"), "command")}
    assert commands == set(stockade.commands.COMMANDS) == set(main.list_commands(None))


def test_each_deliberate_error_has_its_exit_code():
    from stockade.commands.exitcodes import FINDINGS, UNUSABLE, for_error
    from stockade.commands.inputs import InputError
    from stockade.kernel.apply import Refused
    from stockade.kernel.host import KernelError
    from stockade.kernel.netns import NetnsError
    from stockade.model import Origin
    from stockade.model.diagnostics import Diagnostic
    from stockade.model.packet import SpecError
    from stockade.policy.schema import PolicyError
    from stockade.semantics.flatten import FlatError

    d = Diagnostic("error", "x", "broken", Origin("f", 3, 4), "fix it")
    assert str(PolicyError([d])) == "f:3:4: error: broken\n  hint: fix it" == str(FlatError(d))
    cases = {PolicyError([d]): FINDINGS, FlatError(d): FINDINGS, Refused("would cut off", []): FINDINGS,
             InputError("f", "gone"): UNUSABLE, SpecError("no packet"): UNUSABLE, KernelError("not root"): UNUSABLE,
             NetnsError(["ip"], 1, "", "denied"): UNUSABLE}
    assert {type(e).__name__: for_error(e) for e in cases} == {type(e).__name__: c for e, c in cases.items()}


@pytest.mark.parametrize("seed", sorted(p.name for p in SEEDS.glob("*.txt")))
def test_parse_to_json_of_every_seed_is_json(seed):
    """Every value a rule holds has a JSON form (an address in -m recent's data once had none)."""
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "parse", "--to", "json", str(SEEDS / seed)],
                       capture_output=True, text=True)
    assert "Traceback" not in r.stderr, r.stderr
    assert json.loads(r.stdout)["rulesets"]
