"""Loading a policy with a 1,000,000-entry blocklist (issue 4: under 5 s end to end, either back end).

End to end, per back end: compile the policy (reading and checking the list), render stockade's part
(kernel/part.py `desired`, what `apply` hands its worker), and apply it into a fresh namespace with
stockade's own transaction (kernel/transaction.py `apply`, the live part read first: iptables-nft loads
the sets under a new generation's names, several sets at once, then `iptables-restore` and
`ip6tables-restore`; nftables one `nft -f`). Each is timed REPEAT times; the median run is shown, with
the CPU seconds of this process and its children.

Floor, measured in the same run: the bare tools loading the same entries into a fresh namespace, with
nothing of stockade around them: `ipset restore` of one hash:ip and one hash:net set, and `nft -f` of a
table holding the same two sets (a hash set and an auto-merged interval set, as stockade declares them).
Issue 15 asks for stockade end to end within 1.25x of it.

Re-applied with CHANGES entries changed (iptables-nft and nftables): the kernel step of the in-place
update (transaction.apply finding only set members changed: one `ipset restore` of the difference, or
one nf_tables netlink batch; the diff included), which issue 15 wants under 1 s at a million entries.
bench/set_update.py times the same change against the bare tools' floor.

Baseline, measured in the same run: the seeds' way, one `iptables -A INPUT -s ADDR -j DROP` command
per entry, at 10,000 entries.

Packet cost: the time per round trip of a ping flood from a client namespace to the server namespace
through the loaded policy, with the blocklist at 10 and at ENTRIES entries, per back end; through the
baseline's 10,000 linear rules; and with no rules at all (the cost of everything but the firewall).
The server does not track connections (a `notrack` table at raw priority): the policy accepts packets
of known connections before its blocklist, so with tracking a ping flood would meet the blocklist
once and measure nothing. Untracked, every echo request is looked up in the blocklist sets.
Addresses are random data loaded into sets; nothing is ever sent to them.

Usage: .venv/bin/python bench/blocklist_load.py [ENTRIES [REPEAT [BASELINE [PARTS]]]]
PARTS: which measurements, comma-separated, of load (with its floor), reapply, baseline, packets (default all).
"""
from __future__ import annotations

import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from stockade.kernel.netns import Netns
from stockade.policy.compile import compile_policy
from stockade.policy.output import render_outputs

TARGET = 5.0  # seconds, end to end
FLOOR_FACTOR = 1.25  # end to end within this factor of the bare tools (issue 15)
CHANGES = 10_000  # entries changed for the in-place re-apply
BASELINE = 10_000  # entries loaded the seeds' way
PINGS = 20_000
POLICY = '[server]\ninterfaces = ["veth-s"]\n[groups]\nblocked = { file = "blocked.txt" }\n' \
         '[blocklist]\ninbound = ["blocked"]\n[icmp]\nping = "allow"\n'
NOTRACK = "table inet bench {\n\tchain pre { type filter hook prerouting priority raw; notrack; }\n" \
          "\tchain out { type filter hook output priority raw; notrack; }\n}\n"
CLIENT, SERVER = "192.0.2.1", "192.0.2.2"


def blocklist(n: int, seed: int = 7) -> list[str]:
    """`n` random entries, every fourth a /24 network; never the lab's own 192.0.2.0/24."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        a = rng.getrandbits(32)
        if a >> 8 == 0xC00002:
            continue
        addr = ".".join(str(a >> s & 255) for s in (24, 16, 8, 0))
        out.append(addr if len(out) % 4 else f"{addr.rsplit('.', 1)[0]}.0/24")
    return out


def policy(tmp: Path, entries: list[str]) -> Path:
    (tmp / "blocked.txt").write_text("\n".join(entries) + "\n")
    (tmp / "p.toml").write_text(POLICY)
    return tmp / "p.toml"


def load(ns: Netns, backend: str, out: dict[str, str]) -> None:
    if backend == "iptables":
        ns.run(["ipset", "restore"], input=out["ipsets"])
        ns.run(["iptables-restore"], input=out["rules.v4"])
        ns.run(["ip6tables-restore"], input=out["rules.v6"])
    else:
        ns.run(["nft", "-f", "-"], input=out["ruleset.nft"])


def floor_inputs(entries: list[str]) -> dict[str, str]:
    """The same entries as bare `ipset restore` and `nft -f` input: the tools' own cost, nothing else."""
    ips, nets = [e for e in entries if "/" not in e], [e for e in entries if "/" in e]
    size = 2 * max(len(ips), len(nets), 65536)
    ipset = (f"create f-ip hash:ip family inet hashsize {1 << (len(ips) // 2).bit_length()} maxelem {size}\n"
             + "".join(f"add f-ip {e} -exist\n" for e in ips)
             + f"create f-net hash:net family inet hashsize {1 << (len(nets) // 2).bit_length()} maxelem {size}\n"
             + "".join(f"add f-net {e} -exist\n" for e in nets))
    nets.sort(key=lambda m: tuple(map(int, m.split("/")[0].split("."))))
    nft = (f"table inet floor {{\n\tset f_ip {{ type ipv4_addr; size {size}; elements = {{ {', '.join(ips)} }} }}\n"
           f"\tset f_net {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {', '.join(nets)} }} }}\n}}\n")
    return {"iptables": ipset, "nftables": nft}


def floor(text: str, backend: str) -> tuple[float, float]:
    """(seconds, CPU seconds) the bare tool takes to load `text` into a fresh namespace."""
    with Netns() as ns:
        t, c = time.perf_counter(), cpu()
        ns.run(["ipset", "restore"] if backend == "iptables" else ["nft", "-f", "-"], input=text)
        return time.perf_counter() - t, cpu() - c


def reapply(tmp: Path, entries: list[str], backend: str) -> tuple[float, float, int]:
    """(seconds, CPU seconds of this process and its children, members changed) of the kernel step
    re-applying the policy with CHANGES entries changed: transaction.apply finding only set members
    changed (nftables: against the applied record, as the apply worker writes it)."""
    from stockade.kernel.host import Host
    from stockade.kernel.live import read_part
    from stockade.kernel.part import desired
    from stockade.kernel.state import State
    from stockade.kernel.transaction import apply, members_only, nft_members_only, nft_shape

    changed = entries[CHANGES // 2:] + [f"203.0.{i // 250}.{i % 250 + 1}" for i in range(CHANGES // 2)]
    with Netns() as ns:
        host, state = Host(ns.name), State.for_netns(ns.name, str(tmp / "root"))
        path = policy(tmp, entries)
        target = desired(compile_policy(path), backend, {})
        apply(host, read_part(host, backend), target)
        live = read_part(host, backend)
        state.write("applied", {"version": live.digest, "backend": backend, "part": live.to_json(),
                                "shape": nft_shape(target.text.get("nft", ""))})
        path = policy(tmp, changed)
        target = desired(compile_policy(path), backend, {})
        changes = nft_members_only(live, target, state) if backend == "nftables" else members_only(live, target)
        if changes is None:
            raise RuntimeError(f"{backend}: the re-apply was not found to change members only")
        t, c = time.perf_counter(), cpu()
        apply(host, live, target, state)  # finds the same changes again: the diff is part of the kernel step
        return time.perf_counter() - t, cpu() - c, sum(map(len, changes))


def end_to_end(path: Path, backend: str) -> tuple[float, float, float, float]:
    """(compile, render, kernel step, CPU) seconds for one back end, applied into a fresh namespace."""
    from stockade.kernel.host import Host
    from stockade.kernel.live import read_part
    from stockade.kernel.part import desired
    from stockade.kernel.transaction import apply

    variant = "iptables-nft" if backend == "iptables" else backend
    with Netns() as ns:
        host = Host(ns.name)
        c0, t0 = cpu(), time.perf_counter()
        compiled = compile_policy(path)
        t1 = time.perf_counter()
        target = desired(compiled, variant, {})
        t2 = time.perf_counter()
        apply(host, read_part(host, variant), target)
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, cpu() - c0


def cpu() -> float:
    """CPU seconds of this process and its waited-for children."""
    return sum(r.ru_utime + r.ru_stime
               for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def seed_loop(entries: list[str]) -> float:
    """Seconds to load `entries` the seeds' way: one iptables command, one process, per entry."""
    with Netns() as ns:
        t = time.perf_counter()
        for e in entries:
            ns.run(["iptables", "-A", "INPUT", "-s", e, "-j", "DROP"])
        return time.perf_counter() - t


def pair(server: Netns, client: Netns) -> None:
    """A veth between the two namespaces: client 192.0.2.1, server 192.0.2.2 on veth-s."""
    subprocess.run(["ip", "link", "add", "veth-c", "netns", client.name, "type", "veth", "peer", "name",
                    "veth-s", "netns", server.name], check=True)
    for ns, dev, addr in ((client, "veth-c", CLIENT), (server, "veth-s", SERVER)):
        ns.run(["ip", "addr", "add", f"{addr}/24", "dev", dev])
        ns.run(["ip", "link", "set", dev, "up"])


def flood(client: Netns) -> float:
    """Microseconds per round trip of a ping flood: its total time over its pings (ping's own average
    is printed to whole microseconds)."""
    out = client.run(["ping", "-q", "-f", "-c", str(PINGS), SERVER]).stdout
    if f"{PINGS} received" not in out:
        raise RuntimeError(f"pings were lost: {out}")
    return int(re.search(r"time (\d+)ms", out).group(1)) * 1000 / PINGS


def packet_costs(setups: dict) -> dict[str, float]:
    """Per setup (label -> function loading a server namespace), the median of three ping floods
    through it. All servers are up at once and take turns, so that other work on the machine slows
    each setup alike."""
    with ExitStack() as stack:
        clients = {}
        for label, setup in setups.items():
            server, client = stack.enter_context(Netns()), stack.enter_context(Netns())
            pair(server, client)
            server.run(["nft", "-f", "-"], input=NOTRACK)
            setup(server)
            client.run(["ping", "-q", "-c", "3", "-i", "0.2", SERVER])  # neighbours resolved, paths warm
            clients[label] = client
        runs: dict[str, list[float]] = {label: [] for label in setups}
        for _ in range(3):
            for label, client in clients.items():
                runs[label].append(flood(client))
        return {label: statistics.median(r) for label, r in runs.items()}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    baseline = int(sys.argv[3]) if len(sys.argv) > 3 else BASELINE
    parts = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else {"load", "reapply", "baseline", "packets"}
    entries = blocklist(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = policy(Path(tmp), entries)
        print(f"{n} entries ({sum('/' in e for e in entries)} of them /24 networks), median of {repeat} runs:")
        per_entry = {}
        bare = floor_inputs(entries)
        for backend in ("iptables", "nftables") if "load" in parts else ():
            runs = sorted((end_to_end(path, backend) for _ in range(repeat)), key=lambda x: sum(x[:3]))
            c, r, ld, used = runs[len(runs) // 2]
            total = c + r + ld
            per_entry[backend] = total / n
            tool = "ipset restore" if backend == "iptables" else "nft -f"
            fl, fl_cpu = sorted(floor(bare[backend], backend) for _ in range(repeat))[repeat // 2]
            print(f"  {backend:8}: compile {c:.2f} s + render {r:.2f} s + kernel step {ld:.2f} s = {total:.2f} s "
                  f"end to end, {used:.2f} s CPU ({'under' if total < TARGET else 'OVER'} the {TARGET:.0f} s target; "
                  f"runs {', '.join(f'{sum(x[:3]):.2f}' for x in runs)}; load {os.getloadavg()[0]:.1f})")
            print(f"  {'':8}  floor, bare `{tool}` of the same entries: {fl:.2f} s, {fl_cpu:.2f} s CPU; end to end is "
                  f"{total / fl:.2f}x the floor ({used / fl_cpu:.2f}x its CPU; "
                  f"{'within' if total <= FLOOR_FACTOR * fl else 'OVER'} the {FLOOR_FACTOR}x target)")

        for backend in ("iptables-nft", "nftables") if "reapply" in parts else ():
            (Path(tmp) / f"re-{backend}").mkdir()
            took, cpu, changed = reapply(Path(tmp) / f"re-{backend}", entries, backend)
            print(f"  re-applied with {changed} members changed ({backend}, in place): {took:.2f} s kernel step, "
                  f"{cpu:.2f} s CPU ({'under' if took < 1 else 'OVER'} the 1 s target; load {os.getloadavg()[0]:.1f})")

        base = blocklist(baseline)
        if "baseline" not in parts:
            return
        t_seed = seed_loop(base)
        print(f"baseline, {baseline} seed-style `iptables -A` commands: {t_seed:.1f} s, "
              f"{t_seed / baseline * 1e3:.2f} ms per entry; stockade per entry: "
              + ", ".join(f"{b} {s * 1e6:.2f} us ({t_seed / baseline / s:.0f}x faster)" for b, s in per_entry.items()))

        if "packets" not in parts:
            return
        (Path(tmp) / "small").mkdir()
        small = policy(Path(tmp) / "small", entries[:10])
        setups = {"no rules at all": lambda ns: None}
        for backend in ("iptables", "nftables"):
            for size, p in ((10, small), (n, path)):
                out = render_outputs(compile_policy(p), backend)
                setups[f"{backend} policy, blocklist of {size:>7} entries"] = \
                    lambda ns, backend=backend, out=out: load(ns, backend, out)
        linear = "*filter\n:INPUT ACCEPT [0:0]\n" + "".join(f"-A INPUT -s {e} -j DROP\n" for e in base) + "COMMIT\n"
        setups[f"seed-style {baseline} linear rules (iptables)"] = \
            lambda ns: ns.run(["iptables-restore"], input=linear)
        print(f"packet cost, time per round trip of a {PINGS}-ping flood (untracked; median of 3):")
        costs = packet_costs(setups)
        for label, cost in costs.items():
            print(f"  {label}: {cost:.2f} us (rules' share {cost - costs['no rules at all']:+.2f} us)")


if __name__ == "__main__":
    main()
