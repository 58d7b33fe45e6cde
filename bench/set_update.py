"""A 1,000,000-entry blocklist changed in place by 10,000 entries (issue 16's feed update, issue 15 item 6's
re-apply: both end in kernel/sets.py), on both back ends, in throwaway namespaces.

Per back end, the policy of bench/blocklist_load.py is applied with list A (three addresses to one /24
network), then the live sets are changed to list B (A without its first CHANGES/2 entries, plus CHANGES/2
new addresses) and back, REPEAT times each way, as `feeds update` and a re-apply change them:
`sets.change` (the diff: stockade's Python) then `sets.update` (the kernel step: one `ipset restore`
of the difference, or one nf_tables netlink batch). Printed: the median wall time of each part, the
CPU stockade's own process spent (and, for ipset, its child's), and the machine's load. After the
runs the live sets are read back and must hold exactly the list last applied.

Floor, measured in the same run and namespace: the bare tool applying the same change with nothing
of stockade around it: `ipset restore` of the same add/del lines; `nft -f` of the same `add element`
/ `delete element` commands for the hash set and the interval set's added ranges, plus ONE deleted
range (nft 1.0.6 deletes from an interval set in time proportional to the set per element, so the
change's full delete list through nft takes minutes at this size; the per-delete cost is printed).

Usage: .venv/bin/python bench/set_update.py [ENTRIES [CHANGES [REPEAT]]]
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from blocklist_load import blocklist, policy
from stockade.kernel import sets
from stockade.kernel.backend import TABLE
from stockade.kernel.host import Host
from stockade.kernel.live import read_part
from stockade.kernel.netns import Netns
from stockade.kernel.part import desired
from stockade.kernel.transaction import apply
from stockade.model import Family
from stockade.policy.compile import compile_policy

TARGET = 1.0  # seconds for the change (issue 16, issue 15 item 6)
NAMES = ("stk-blocked-ip4", "stk-blocked-net4")


def members(path: Path) -> dict[str, list[str]]:
    v4 = compile_policy(path).rulesets[Family.IPV4].sets
    return {n: v4[n].members for n in NAMES}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def step(host: Host, backend: str, old: dict, new: dict) -> tuple[float, float, float, float, list]:
    """(diff wall, diff CPU, kernel step wall, kernel step CPU of stockade and its children, changes)."""
    t0, c0 = time.perf_counter(), own_cpu()
    changes = [sets.change(n, old[n], new[n], backend) for n in NAMES]
    t1, c1, k1 = time.perf_counter(), own_cpu(), children_cpu()
    sets.update(host, backend, changes)
    t2, c2, k2 = time.perf_counter(), own_cpu(), children_cpu()
    return t1 - t0, c1 - c0, t2 - t1, (c2 - c1) + (k2 - k1), changes


def bare(host: Host, backend: str, changes: list[sets.SetChange], want: dict) -> tuple[float, str]:
    """Seconds the bare tool takes for the same change (see the module's docstring) and what it ran; the
    sets end holding `want` (nft: the interval deletes it skipped made by stockade, against the kernel's
    listing, as nft may have split ranges on its way)."""
    if backend != "nftables":
        live = sets.headers(host)
        phys = {c.name: sets.live_generation(c.name, live) for c in changes}
        text = "".join(f"add {phys[c.name]} {m} -exist\n" for c in changes for m in c.add) + \
            "".join(f"del {phys[c.name]} {m} -exist\n" for c in changes for m in c.delete)
        t = time.perf_counter()
        host.run(["ipset", "restore"], input=text)
        return time.perf_counter() - t, f"`ipset restore` of the same {sum(map(len, changes))} add/del lines"
    lines, one, skipped = [], [], 0
    for c in changes:
        name = sets.nft_name(c.name)
        for verb, items in (("delete", [] if c.interval else c.delete), ("add", c.add)):
            lines += [f"{verb} element inet {TABLE} {name} {{ {', '.join(items[i:i + 2000])} }}"
                      for i in range(0, len(items), 2000)]
        if c.interval and c.delete:
            one, skipped = [f"delete element inet {TABLE} {name} {{ {c.delete[0]} }}"], len(c.delete)
    t = time.perf_counter()
    host.run(["nft", "-f", "-"], input="\n".join(lines) + "\n")
    took = time.perf_counter() - t
    per = None
    if one:
        t = time.perf_counter()
        host.run(["nft", "-f", "-"], input=one[0] + "\n")
        per = time.perf_counter() - t
    sets.update(host, backend, [sets.change(c.name, sets.live_members(host, backend, c.name), want[c.name], backend,
                                            listed=True) for c in changes if c.interval])
    n = sum(map(len, changes)) - skipped
    return took, (f"`nft -f` of the same change but its {skipped} interval deletes ({n} element adds/deletes)"
                  + (f"; one interval delete through nft alone took {per:.2f} s" if per is not None else ""))


def run(backend: str, a: Path, b: Path, repeat: int) -> bool:
    """Loads, changes, prints; whether the median change was under the target."""
    lists = {"A": members(a), "B": members(b)}
    with Netns() as ns:
        host = Host(ns.name)
        t = time.perf_counter()
        apply(host, read_part(host, backend), desired(compile_policy(a), backend, {}))
        print(f"  {backend}: loaded list A in {time.perf_counter() - t:.1f} s", flush=True)
        runs, floors = [], []
        for _ in range(repeat):  # A->B, B->A timed; the bare tool's A->B; back to A
            forward = []
            for old, new in (("A", "B"), ("B", "A")):
                d, dc, k, kc, changes = step(host, backend, lists[old], lists[new])
                runs.append((d + k, d, dc, k, kc, sum(map(len, changes))))
                forward = forward or changes
            floors.append(bare(host, backend, forward, lists["B"]))
            step(host, backend, lists["B"], lists["A"])
        total, d, dc, k, kc, n = sorted(runs)[len(runs) // 2]
        print(f"  {backend}: {n} members changed in place: {total:.3f} s (median of {len(runs)}: diff {d:.3f} s wall / "
              f"{dc:.3f} s CPU + kernel step {k:.3f} s wall / {kc:.3f} s CPU); "
              f"{'under' if total < TARGET else 'OVER'} the {TARGET:.0f} s target; runs "
              f"{', '.join(f'{r[0]:.2f}' for r in runs)}; load {os.getloadavg()[0]:.1f}", flush=True)
        print(f"  {backend}: floor {statistics.median(f for f, _ in floors):.3f} s (median of {len(floors)}): "
              f"bare {floors[len(floors) // 2][1]}", flush=True)
        step(host, backend, lists["A"], lists["B"])
        held = {n: sets.live_members(host, backend, n) for n in NAMES}
        want = lists["B"]
        if backend == "nftables":
            ok = set(held[NAMES[0]]) == set(want[NAMES[0]]) and held[NAMES[1]] == sets.merged(want[NAMES[1]])
        else:
            ok = all(set(held[n]) == set(want[n]) for n in NAMES)
        print(f"  {backend}: the live sets hold exactly list B after it: {'yes' if ok else 'NO'}", flush=True)
        if not ok:
            sys.exit(2)
        return total < TARGET


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    changes = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    first = blocklist(n)
    second = first[changes // 2:] + [f"203.0.{i // 250 % 256}.{i % 250 + 1}" if i < 64000 else
                                     f"198.{18 + i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(changes // 2)]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        a, b = policy(Path(tmp) / "a", first), policy(Path(tmp) / "b", second)
        print(f"{n} entries, {changes} changed ({changes // 2} gone, {changes // 2} new), "
              f"A->B and B->A {repeat} times each:", flush=True)
        fast = [run(backend, a, b, repeat) for backend in ("iptables-nft", "nftables")]
    print("OK" if all(fast) else "TOO SLOW")
    sys.exit(0 if all(fast) else 1)


if __name__ == "__main__":
    main()
