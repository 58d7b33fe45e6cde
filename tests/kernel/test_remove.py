"""Issue 17, `state: absent`: `stockade remove` takes stockade's part out of a real kernel (its chains,
hooks, sets and ban sets, or its nft table) and its lines out of the boot files, and leaves other
tools' rules (Docker, fail2ban, another nft table) and the admin's boot lines as they were: after
it the namespace holds exactly what it held before stockade came. `--check` changes nothing; a
second run has nothing to do; a pending apply's timer does not bring stockade back."""
from __future__ import annotations

import json
import re
import time

import pytest

from stockade.kernel.netns import Netns

from .applylab import full_text, stockade
from .test_apply_coexist import DOCKER_F2B, F2B_ONLY, OTHER_NFT

POLICY = """admin = ["admins"]
[server]
interfaces = ["in0"]
[groups]
admins = ["192.0.2.2", "2001:db8::2"]
blocked = ["198.51.100.0/24", "203.0.113.66"]
[bans]
timeout = 900
[blocklist]
inbound = ["blocked"]
[[allow]]
service = "http"
"""
ADMIN_V4 = ("*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 198.51.100.0/24 -j MASQUERADE\nCOMMIT\n"
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            "-A INPUT -p udp -m udp --dport 1194 -j ACCEPT\nCOMMIT\n")
ADMIN_NFT = "#!/usr/sbin/nft -f\ntable inet admin {\n\tchain input {\n" \
            "\t\ttype filter hook input priority 10; policy accept;\n\t\tudp dport 1194 accept\n\t}\n}\n"


def _whole(ns, backend: str) -> str:
    """Everything the namespace holds, without tables that hold nothing: a table iptables made when
    stockade came stays when it goes, empty with ACCEPT policies (the kernel passes every packet
    through it as through none); anything else in it would show."""
    kind = "nft" if backend == "nftables" else backend.split("-", 1)[1]
    saved = [b for b in full_text(ns, "iptables-" + kind).split("COMMIT\n") if b.strip()]
    saved = [b for b in saved if not all(re.fullmatch(r"\*\w+|:[A-Z]+ ACCEPT \[0:0\]", ln) for ln in b.splitlines())]
    tables = re.split(r"(?m)^(?=table )", ns.run(["nft", "-s", "list", "ruleset"]).stdout)
    empty = re.compile(r"\s*chain \w+ \{\s*type filter hook \w+ priority filter; policy accept;\s*\}")
    tables = [t for t in tables if not re.fullmatch(rf"table ip6? filter \{{({empty.pattern})*\s*\}}\s*", t)]
    return "COMMIT\n".join(saved) + "".join(tables)


def _stk_sets(ns) -> list[str]:
    return re.findall(r"^create (stk-\S+)", ns.run(["ipset", "save"]).stdout, re.MULTILINE)


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy", "nftables"])
def test_remove_leaves_what_was_there_before(kernel_ok, tmp_path, backend):
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    state, root = tmp_path / "state", tmp_path / "root"
    kind = "nft" if backend == "nftables" else backend.split("-", 1)[1]
    if backend == "nftables":
        (root / "etc").mkdir(parents=True)
        (root / "etc/nftables.conf").write_text(ADMIN_NFT)
    else:
        (root / "etc/iptables").mkdir(parents=True)
        (root / "etc/iptables/rules.v4").write_text(ADMIN_V4)
    admin_files = {p: p.read_text() for p in root.rglob("*") if p.is_file()}
    with Netns() as ns:
        ns.run([f"iptables-{kind}-restore"], input=F2B_ONLY if backend == "nftables" else DOCKER_F2B)
        ns.run(["nft", "-f", "-"], input=OTHER_NFT)
        before = _whole(ns, backend)
        on = ["--netns", ns.name]
        stockade(["apply", str(policy), *on, "--confirm-timeout", "0", "--backend", backend], state)
        stockade(["ban", "203.0.113.9", *on], state)
        stockade(["persist", *on, "--root", str(root)], state)
        applied = _whole(ns, backend)
        assert applied != before and any("stockade" in p.read_text() for p in root.rglob("*") if p.is_file())
        if backend != "nftables":
            assert _stk_sets(ns)

        check = json.loads(stockade(["remove", *on, "--root", str(root), "--check", "--json"], state).stdout)
        assert check["changed"] and check["removed"] and check["files"]
        assert _whole(ns, backend) == applied  # --check changes nothing

        out = json.loads(stockade(["remove", *on, "--root", str(root), "--json"], state).stdout)
        assert out["changed"] and out["removed"] == check["removed"] and out["files"] == check["files"]
        assert _whole(ns, backend) == before
        assert not _stk_sets(ns)
        files = {p: p.read_text() for p in root.rglob("*") if p.is_file() or p.is_symlink()}
        assert not any("stockade" in text for text in files.values()), files
        assert set(files) == set(admin_files)
        for p, text in admin_files.items():  # the admin's lines are all still there, in their order
            assert [ln for ln in files[p].splitlines() if ln.strip()] == [ln for ln in text.splitlines() if ln.strip()
                                                                        ] or ("*raw" in files[p] or "*mangle" in files[p])
        again = json.loads(stockade(["remove", *on, "--root", str(root), "--json"], state).stdout)
        assert not again["changed"]
        status = stockade(["status", *on, "--json"], state, check=False)
        assert "Traceback" not in status.stderr


def test_remove_ends_a_pending_apply(kernel_ok, tmp_path):
    """The unconfirmed apply's timer stands down: it does not put the confirmed ruleset back when it
    expires (without remove it would: the previous ruleset is a confirmed one, not nothing)."""
    policy, other = tmp_path / "policy.toml", tmp_path / "other.toml"
    policy.write_text(POLICY)
    other.write_text(POLICY.replace('service = "http"', 'service = "https"'))
    state = tmp_path / "state"
    with Netns() as ns:
        before = _whole(ns, "iptables-nft")
        on = ["--netns", ns.name]
        stockade(["apply", str(policy), *on, "--confirm-timeout", "0", "--backend", "iptables-nft"], state)
        stockade(["apply", str(other), *on, "--confirm-timeout", "2"], state)
        text = stockade(["remove", *on], state).stdout
        assert "ended the unconfirmed apply" in text and "INPUT ACCEPT" in text, text
        time.sleep(3)
        assert _whole(ns, "iptables-nft") == before
        assert not json.loads(stockade(["status", *on, "--json"], state).stdout).get("pending")
