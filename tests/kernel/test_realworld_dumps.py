"""The dump differential: real-world dumps read exactly as the kernel reads them.

Each file of the dump store (collected from public repositories; see
tests/realworld/SOURCES.md) is loaded unchanged with the machine's
iptables-restore / ip6tables-restore (1.8, nft variant) in a throwaway network
namespace and read back with iptables-save / ip6tables-save. `stockade parse
FILE --to iptables-save` must print the same text, comments and counters aside.
A file the kernel refuses must be refused by stockade at the same line.

The family is chosen as a user would: ip6tables for a file named as an IPv6
dump (rules.v6, user6.rules, ip6tables...). Sets a dump matches on are created
empty first (hash:net, or hash:ip,port for two directions), as the admin's
ipset restore would have done.

The store is third-party data and is not committed (the workplace keeps fetched files out of
commits): the tests read it from $STOCKADE_REALWORLD_DUMPS, by default
../shared/corpus/realworld-dumps, and skip saying so where it is absent.
"""
from __future__ import annotations

import difflib
import os
import re
import secrets
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from stockade.kernel.netns import IP, remove

pytestmark = pytest.mark.kernel

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DUMPS = Path(os.environ.get("STOCKADE_REALWORLD_DUMPS", SHARED / "corpus" / "realworld-dumps"))
FILES = sorted(p.name for p in DUMPS.iterdir()) if DUMPS.is_dir() else []
NO_STORE = pytest.mark.skipif(not FILES, reason=f"no dump store at {DUMPS}: set STOCKADE_REALWORLD_DUMPS (see SOURCES.md)")
IPV6_NAME = re.compile(r"(\.v6|6\.rules|ip6tables)")
COUNTERS = re.compile(r"\s*\[\d+:\d+\]")
KERNEL_LINE = re.compile(r"(?:line:? (\d+)(?: failed)?)")


def family_of(name: str) -> str:
    return "6" if IPV6_NAME.search(name) else "4"


def canonical(text: str) -> list[str]:
    """Save output without comment lines and counters."""
    return [COUNTERS.sub("", ln) for ln in text.splitlines() if ln and not ln.startswith("#")]


@contextmanager
def throwaway_netns():
    """A namespace named sk-rw-PID-HEX for one file, removed whatever happens."""
    name = f"sk-rw-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run([IP, "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        remove(name)
        assert not Path("/run/netns", name).exists(), f"namespace {name} left behind"


def run_in(ns: str, argv: list[str], input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([IP, "netns", "exec", ns, *argv], input=input, capture_output=True, check=False)


def kernel_load(ns: str, data: bytes, family: str) -> tuple[int | None, str]:
    """(refused line or None, the kernel's save output or the refusal message)."""
    cmd = "ip6tables" if family == "6" else "iptables"
    text = data.decode("utf-8", "replace")
    for name, dims in sorted(set(re.findall(r"--match-set\s+(\S+)\s+(\S+)", text))):
        settype = "hash:ip,port" if "," in dims else "hash:net"
        run_in(ns, ["ipset", "-exist", "create", name, settype, "family", "inet6" if family == "6" else "inet"])
    proc = run_in(ns, [f"{cmd}-restore"], input=data)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        m = KERNEL_LINE.search(err)
        assert m, f"{cmd}-restore failed without naming a line: {err}"
        return int(m.group(1)), err
    save = run_in(ns, [f"{cmd}-save"])
    assert save.returncode == 0, save.stderr
    return None, save.stdout.decode()


def stockade_parse(path: Path, family: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    return subprocess.run([sys.executable, "-m", "stockade.cli", "parse", str(path), "--from", "save",
                           "--family", family, "--to", "iptables-save"],
                          capture_output=True, text=True, env=env, check=False)


@NO_STORE
def test_enough_dumps():
    assert len(FILES) >= 40


# Forms measured against iptables-restore 1.8.9 (nft): orders, tolerated headers, refusals.
# Each is checked against the real tool here, so the measurement is repeated on every run.
FORMS = {
    "order-tables-chains": "*nat\n:POSTROUTING ACCEPT [0:0]\n:ZED - [0:0]\n:ALPHA - [0:0]\n-A ZED -j RETURN\n"
                           "-A POSTROUTING -j ALPHA\nCOMMIT\n*filter\n:zz - [0:0]\n:Zeta - [0:0]\n:a-1 - [0:0]\n"
                           ":a_1 - [0:0]\n:9z - [0:0]\n:FORWARD DROP [0:0]\n-A zz -j ACCEPT\n-A INPUT -j zz\n"
                           "-A FORWARD -j Zeta\n-A INPUT -j a-1\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
                           "*security\n:INPUT ACCEPT [0:0]\nCOMMIT\n*mangle\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    "user-chain-header-forms": "*filter\n:A [0:0]\n:B - DROP [0:0]\n:C -\n:D DROP\n:E foo [1:2] extra\n"
                               ":F\t-\t[0:0]\n:G ACCEPT\nCOMMIT\n",
    "builtin-keeps-policy-with-dash": "*filter\n:INPUT DROP [0:0]\n:INPUT - [0:0]\n:OUTPUT DROP junk [0:0]\n"
                                      "COMMIT\n",
    "redeclared-chain-is-flushed": "*filter\n:X - [0:0]\n-A X -j ACCEPT\n:X - [0:0]\n-A X -j DROP\nCOMMIT\n",
    "undeclared-builtins-appear": "*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n*mangle\n-N M\nCOMMIT\n",
    "second-block-replaces-table": "*filter\n:X - [0:0]\n-A INPUT -j X\nCOMMIT\n*filter\n-A INPUT -j DROP\nCOMMIT\n",
    "block-creating-nothing-leaves-no-table": "*filter\n:INPUT DROP [0:0]\nCOMMIT\n*filter\n-F\nCOMMIT\n"
                                              "*raw\n-X\n-Z\nCOMMIT\n",
    "refused-header-without-policy": "*filter\n:INPUT ACCEPT [0:0]\n:X\nCOMMIT\n",
    "refused-builtin-bad-policy": "*filter\n:INPUT RETURN [0:0]\nCOMMIT\n",
    "refused-chain-named-like-verdict": "*filter\n:ACCEPT - [0:0]\nCOMMIT\n",
    "refused-chain-name-dash": "*filter\n:-x - [0:0]\nCOMMIT\n",
    "refused-chain-name-too-long": "*filter\n:ABCDEFGHIJKLMNOPQRSTUVWXYZABC - [0:0]\nCOMMIT\n",
    "accepted-chain-name-28": "*filter\n:ABCDEFGHIJKLMNOPQRSTUVWXYZAB - [0:0]\nCOMMIT\n",
    "refused-jump-before-declaration": "*filter\n-A INPUT -j X\n-A INPUT -j ACCEPT\n:X - [0:0]\nCOMMIT\n",
    "refused-jump-to-chain-of-replaced-block": "*filter\n:X - [0:0]\nCOMMIT\n*filter\n-A INPUT -j X\nCOMMIT\n",
    "refused-append-to-undeclared-chain": "*filter\n-A X -j ACCEPT\nCOMMIT\n",
    "refused-new-chain-declared-by-header": "*filter\n:X - [0:0]\n-N X\nCOMMIT\n",
    "refused-missing-commit": "*filter\n-A INPUT -j ACCEPT\n",
    "refused-missing-commit-no-newline": "*filter\n-A INPUT -j ACCEPT",
    "refused-crlf": "# Generated by iptables-save\r\n*filter\r\n:INPUT ACCEPT [0:0]\r\nCOMMIT\r\n",
    "nat-input-drop-policy": "*nat\n:INPUT DROP [0:0]\nCOMMIT\n",
    "indented-rule": "*filter\n  -A INPUT -j ACCEPT\nCOMMIT\n",
    "table-name-then-words": "*filter junk\n-A INPUT -j ACCEPT\nCOMMIT\n",
    "rule-counters-and-tabs": "*filter\n[5:6] -A\tINPUT\t-p tcp\t--dport 22\t-j ACCEPT\nCOMMIT\n",
    "commands-in-restore": "*filter\n:X - [0:0]\n-A INPUT -j ACCEPT\n-I INPUT 1 -j DROP\n-D INPUT 2\n"
                           "-P FORWARD DROP\n-N Y\n-A Y -j RETURN\n-Z\n-F X\n-X X\n-A OUTPUT -j Y\nCOMMIT\n",
    "builtin-header-again-sets-policy": "*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
    "cr-in-user-chain-header": "*filter\n:X -\r\nCOMMIT\n",
    "empty-and-comment-only": "# nothing here\n",
    "refused-indented-header": "*filter\n  :X - [0:0]\n-A INPUT -j X\nCOMMIT\n",
    "refused-indented-table": "  *filter\n-A INPUT -j ACCEPT\nCOMMIT\n",
    "refused-indented-comment": "*filter\n  # hi\n-A INPUT -j ACCEPT\nCOMMIT\n",
    "refused-space-after-commit": "*filter\n-A INPUT -j ACCEPT\nCOMMIT \n",
    "refused-space-only-line": "*filter\n \t \n-A INPUT -j ACCEPT\nCOMMIT\n",
    "refused-cr-after-rule": "*filter\n-A INPUT -j ACCEPT\r\nCOMMIT\n",
    "refused-cr-in-builtin-policy": "*filter\n:INPUT ACCEPT\r\nCOMMIT\n",
    "refused-rename-in-restore": "*filter\n:X - [0:0]\n-E X Z\nCOMMIT\n",
    "refused-jump-to-builtin": "*filter\n-A INPUT -j OUTPUT\nCOMMIT\n",
    "refused-goto-undeclared": "*filter\n-A INPUT -g X\nCOMMIT\n",
    "refused-rule-outside-table": "-A INPUT -j ACCEPT\n",
    "refused-unknown-table": "*foo\nCOMMIT\n",
    "zero-resets-policies": "*filter\n:OUTPUT DROP [0:0]\n-P FORWARD DROP\n-A INPUT -j ACCEPT\n-Z\nCOMMIT\n",
    "zero-named-chain-resets-its-policy": "*filter\n:INPUT DROP [0:0]\n-P FORWARD DROP\n-Z FORWARD\n"
                                          ":X - [0:0]\n-Z X\nCOMMIT\n",
    "refused-zero-of-unnamed-builtin": "*filter\n:INPUT ACCEPT [0:0]\n-Z OUTPUT\nCOMMIT\n",
    "refused-zero-before-table-exists": "*filter\n-Z INPUT\nCOMMIT\n",
}


@pytest.mark.parametrize("name", sorted(FORMS))
def test_restore_form_as_kernel_reads_it(name, kernel_ok, tmp_path):
    path = tmp_path / name
    path.write_bytes(FORMS[name].encode())
    check_against_kernel(path, "4")


@pytest.mark.parametrize("name", FILES)
def test_dump_as_kernel_reads_it(name, kernel_ok):
    check_against_kernel(DUMPS / name, family_of(name))


def check_against_kernel(path: Path, family: str) -> None:
    """Same output as the kernel's save after loading `path`, or refused at the same line."""
    with throwaway_netns() as ns:
        refused_at, kernel = kernel_load(ns, path.read_bytes(), family)
    ours = stockade_parse(path, family)
    assert "Traceback" not in ours.stderr, ours.stderr
    errors = [ln for ln in ours.stderr.splitlines() if ": error:" in ln]
    if refused_at is not None:
        assert errors, f"the kernel refused line {refused_at} ({kernel.strip()}); stockade accepted the file"
        first = int(errors[0].split(":")[1])
        assert first == refused_at, f"kernel refused line {refused_at} ({kernel.strip()}); stockade: {errors[0]}"
        assert ours.returncode == 1
        return
    assert not errors, "the kernel loaded it; stockade refused:\n" + "\n".join(errors[:10])
    assert ours.returncode == 0, ours.stderr
    assert canonical(ours.stdout) == canonical(kernel), "\n".join(
        difflib.unified_diff(canonical(kernel), canonical(ours.stdout), "kernel", "stockade", lineterm=""))
