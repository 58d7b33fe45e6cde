"""Issue 6, Must show "Coexistence": with Docker-style chains (DOCKER, DOCKER-USER, the isolation
stages, nat DOCKER with a published port) and a fail2ban-style f2b-sshd chain hooked from INPUT,
plus another tool's nft table, `stockade apply` and `stockade rollback` leave all of them byte
for byte as they were: their iptables-save lines (both families) and `nft list` of the other
table. After the rollback the whole ruleset is what it was before stockade came. Where
DOCKER-USER exists, stockade's only line there is its hook, first, to stk-docker.
The nftables backend is run with the fail2ban chains (iptables-nft) and the other nft table; with
Docker present it refuses (its forward chain would drop what Docker forwards)."""
from __future__ import annotations

import re

import pytest

from stockade.kernel.netns import Netns

from .applylab import full_text, policies, stockade

DOCKER_F2B = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 203.0.113.0/24 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 203.0.113.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER -d 203.0.113.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
-A f2b-sshd -s 203.0.113.9/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
"""
F2B_ONLY = """*filter
:INPUT ACCEPT [0:0]
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A f2b-sshd -s 203.0.113.9/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
"""
OTHER_NFT = """table inet othertool {
\tchain input {
\t\ttype filter hook input priority 10; policy accept;
\t\ttcp dport 7 counter accept comment "another tool's rule"
\t}
}
"""


def _tables(ns, kind: str) -> str:
    """Other tools' part of iptables-save (both families): every line but stockade's chains, its hooks
    and the filter policies it sets; chain counters dropped; a table with nothing of theirs left out
    (stockade may create an empty one)."""
    out = []
    for tool in (f"iptables-{kind}-save", f"ip6tables-{kind}-save"):
        for block in ns.run([tool]).stdout.split("COMMIT\n"):
            lines = []
            for line in block.splitlines():
                if line.startswith(("#", ":stk-", "-A stk-")) or re.search(r" -[jg] stk-", line):
                    continue
                if re.match(r":(INPUT|FORWARD|OUTPUT) ", line):
                    line = line.split()[0]
                lines.append(re.sub(r" \[\d+:\d+\]$", "", line))
            if any(ln.startswith("-A ") or ln.endswith(" -") for ln in lines):
                out += [*lines, "COMMIT"]
    return "\n".join(out)


def _other_nft(ns) -> str:
    return ns.run(["nft", "list", "table", "inet", "othertool"]).stdout


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy", "nftables"])
def test_other_tools_untouched(kernel_ok, tmp_path, backend):
    old, _ = policies(tmp_path)
    state = tmp_path / "state"
    kind = "nft" if backend == "nftables" else backend.split("-", 1)[1]
    with Netns() as ns:
        ns.run([f"iptables-{kind}-restore"], input=F2B_ONLY if backend == "nftables" else DOCKER_F2B)
        if backend != "nftables":
            ns.run([f"ip6tables-{kind}-restore"], input=DOCKER_F2B.split("*filter")[0].replace(
                "203.0.113.0/24", "2001:db8:3::/64").replace("127.0.0.0/8", "::1/128").replace(
                "--to-destination 203.0.113.2:80", "--to-destination [2001:db8:3::2]:80") + "*filter" +
                DOCKER_F2B.split("*filter")[1].replace("203.0.113.2/32", "2001:db8:3::2/128").replace(
                "203.0.113.9/32", "2001:db8:4::9/128").replace("icmp-port-unreachable", "icmp6-port-unreachable"))
        ns.run(["nft", "-f", "-"], input=OTHER_NFT)
        before = _tables(ns, kind)
        whole = full_text(ns, "iptables-" + kind) + ns.run(["nft", "-s", "list", "ruleset"]).stdout
        other = _other_nft(ns)

        out = stockade(["apply", str(old), "--netns", ns.name, "--confirm-timeout", "0", "--backend", backend], state)
        assert _tables(ns, kind) == before
        assert _other_nft(ns) == other
        save4 = ns.run([f"iptables-{kind}-save"]).stdout
        if backend == "nftables":
            assert "table inet stockade" in ns.run(["nft", "list", "tables"]).stdout
            assert "stk-" not in save4
        else:
            rules = [ln for ln in save4.splitlines() if ln.startswith("-A ")]
            assert [ln for ln in rules if ln.startswith("-A DOCKER-USER")] == [
                "-A DOCKER-USER -m comment --comment stockade -j stk-docker", "-A DOCKER-USER -j RETURN"]
            inputs = [ln for ln in rules if ln.startswith("-A INPUT")]
            assert inputs[0].endswith("-j f2b-sshd") and inputs[1].endswith("-j stk-input")  # fail2ban still first
            assert "note: DOCKER-USER found (IPv4): inbound checks hooked there" in out.stdout

        stockade(["rollback", "--netns", ns.name], state)
        assert _tables(ns, kind) == before
        assert _other_nft(ns) == other
        assert full_text(ns, "iptables-" + kind) + ns.run(["nft", "-s", "list", "ruleset"]).stdout == whole


def test_nftables_refused_next_to_docker(kernel_ok, tmp_path):
    old, _ = policies(tmp_path)
    with Netns() as ns:
        ns.run(["iptables-nft-restore"], input=DOCKER_F2B)
        before = ns.run(["nft", "-s", "list", "ruleset"]).stdout
        r = stockade(["apply", str(old), "--netns", ns.name, "--backend", "nftables"], tmp_path / "state", check=False)
        assert r.returncode == 2 and "Docker" in r.stderr and "Traceback" not in r.stderr
        assert ns.run(["nft", "-s", "list", "ruleset"]).stdout == before
        r = stockade(["apply", str(old), "--netns", ns.name, "--confirm-timeout", "0", "--json"], tmp_path / "state")
        assert '"backend": "iptables-nft"' in r.stdout  # auto follows Docker into iptables-nft


PUBLISHED = """*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER ! -i out0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.51.100.2:80
-A DOCKER ! -i out0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 198.51.100.2:81
COMMIT
*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o out0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o out0 -j DOCKER
-A FORWARD -i out0 ! -o out0 -j ACCEPT
-A DOCKER -d 198.51.100.2/32 ! -i out0 -o out0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 198.51.100.2/32 ! -i out0 -o out0 -p tcp -m tcp --dport 81 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
"""
PUBLISH_POLICY = """[server]
interfaces = ["in0"]
[[allow]]
service = ["8080/tcp", "http"]
"""


def test_published_ports_obey_the_policy(kernel_ok, tmp_path):
    """Docker-style publishing (the far host plays the container behind out0): 8080 -> :80 and
    8081 -> :81 both answer before stockade; with a policy that allows 8080 (and http, port 80, which
    must not open 8081's container port 81 nor match 8081 by the container's port) only 8080 answers;
    after rollback both answer again. Real connections from the client."""
    from stockade.lab.topology import SERVER_V4, Topology

    from .applylab import connects, listen

    policy = tmp_path / "publish.toml"
    policy.write_text(PUBLISH_POLICY)
    with Topology(forward=True) as t:
        listen(t.far, [80, 81])
        t.server.run(["iptables-nft-restore", "--noflush"], input=PUBLISHED)
        assert connects(t.client, SERVER_V4, 8080) and connects(t.client, SERVER_V4, 8081)
        before = _tables(t.server, "nft")
        stockade(["apply", str(policy), "--netns", t.server.name, "--confirm-timeout", "0"], tmp_path / "state")
        assert _tables(t.server, "nft") == before
        opened, closed = connects(t.client, SERVER_V4, 8080), connects(t.client, SERVER_V4, 8081, timeout=0.5)
        print(f"published ports under the policy: 8080 (allowed) {'answers' if opened else 'DROPPED'}, "
              f"8081 (not allowed) {'ANSWERS' if closed else 'dropped'}")
        assert opened and not closed
        stockade(["rollback", "--netns", t.server.name], tmp_path / "state")
        assert connects(t.client, SERVER_V4, 8080) and connects(t.client, SERVER_V4, 8081)
