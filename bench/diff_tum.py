"""`stockade diff` between TUM dumps (issue 15: 2015-05-15 vs 2016-06-27 < 60 s with the full list of
changed classes; consecutive dumps < 2 s).

For each pair: the semantic diff (`semantics.diff.semantic_diff`, every filter hook of the
family) in CPU seconds of this process, the median of REPEAT runs (the machine is shared: the
wall-clock time is shown beside it, with the load average), the classes compared and the
changed classes listed. A run that has not finished within its budget (TIMEOUT, default
10x the limit, in CPU seconds) is stopped and reported as not finished.

Baselines, measured in the same run: parsing both dumps, and the diff of the old dump with itself
(the fixed cost: flattening, aligning, the classes every side walks alike), median of REPEAT.
The dumps are anonymised (every MAC XX:XX:XX:XX:XX:XX); as in bench/matrix_tum.py one valid
placeholder MAC keeps the `-m mac` rules.
"blocklist" (no corpus needed) compares bench/lint_scale.py's 300-address dump with the same
dump blocking 10 more addresses. "Consecutive" are the two dumps of 2015-05-15 14:14 and 15:23,
whose rules differ by two moved jumps (`-i eth1.110 -j NOTFROMHERE`, `-i eth1.1024 -j
NOTFROMHERE`) in INPUT and FORWARD.

Usage: .venv/bin/python bench/diff_tum.py [REPEAT [PAIR ...]]   (PAIR: consecutive, year, blocklist;
default 3 and all; the corpus is ../shared/corpus or $STOCKADE_SHARED/corpus)
"""
from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from pathlib import Path

from lint_scale import blocklist_dump
from stockade.parse.read import read
from stockade.semantics.diff import semantic_diff

SHARED = Path(os.environ.get("STOCKADE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
TUM = SHARED / "corpus/net-network/configs_chair_for_Network_Architectures_and_Services"
ANON_MAC, PLACEHOLDER = "XX:XX:XX:XX:XX:XX", "02:00:00:00:00:00"
PAIRS = {  # name -> (old, new, limit in seconds)
    "consecutive": ("iptables-save-2015-05-15_14-14-46", "iptables-save-2015-05-15_15-23-41", 2.0),
    "year": ("iptables-save-2015-05-15_15-23-41", "iptables-save-2016-06-27_16-29-01", 60.0),
    "blocklist": ("300", "300+10", 2.0),  # no corpus: bench/lint_scale.py's dump, then 10 more addresses
}
BUDGET = 10  # times the limit, in CPU seconds, before a run is stopped


class OverBudget(Exception):
    pass


def _over(*_args) -> None:
    raise OverBudget


def load(name: str):
    if name[0].isdigit():
        base, _, more = name.partition("+")
        text = blocklist_dump(int(base))
        if more:  # the next addresses of the same sequence, before the SSH accept
            extra = blocklist_dump(int(base) + int(more)).splitlines()[4 + int(base):4 + int(base) + int(more)]
            lines = text.splitlines()
            text = "\n".join(lines[:4 + int(base)] + extra + lines[4 + int(base):]) + "\n"
    else:
        text = (TUM / name).read_text().replace(ANON_MAC, PLACEHOLDER)
    t0 = time.process_time()
    rulesets = read(text, name).rulesets
    return rulesets, time.process_time() - t0


def run(old, new, budget: float):
    """(CPU s, wall s, Diff), or None if the diff used more than `budget` CPU seconds."""
    signal.signal(signal.SIGPROF, _over)
    signal.setitimer(signal.ITIMER_PROF, budget)  # counts this process's CPU time
    try:
        w0, t0 = time.perf_counter(), time.process_time()
        d = semantic_diff(old, new)
        return time.process_time() - t0, time.perf_counter() - w0, d
    except OverBudget:
        return None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def main(repeat: int, pairs: list[str]) -> int:
    if not TUM.exists() and any(not PAIRS[p][0][0].isdigit() for p in pairs):
        print(f"TUM corpus not found at {TUM}")
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of {repeat}; CPU seconds")
    print(f"{'pair':<12} {'parse s':>8} {'self s':>8} {'diff s':>8} {'wall s':>8} {'classes':>8} {'changed':>8} "
          f"{'limit':>6}")
    ok = True
    for name in pairs:
        a, b, limit = PAIRS[name]
        (old, pa), (new, pb) = load(a), load(b)
        selfs = [run(old, old, limit * BUDGET) for _ in range(repeat)]
        self_s = f"{statistics.median(r[0] for r in selfs):.2f}" if all(selfs) else "-"
        runs = []
        for _ in range(repeat):
            got = run(old, new, limit * BUDGET)
            if got is None:
                break
            runs.append(got)
        if len(runs) < repeat:
            ok = False
            stopped = "> " + str(int(limit * BUDGET))
            print(f"{name:<12} {pa + pb:>8.2f} {self_s:>8} {stopped:>8} {'':>8} {'':>8} {'':>8} "
                  f"{limit:>5.0f}s  (not finished: stopped after {limit * BUDGET:.0f} CPU s)")
            continue
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        d = runs[0][2]
        ok &= cpu < limit
        print(f"{name:<12} {pa + pb:>8.2f} {self_s:>8} {cpu:>8.2f} {wall:>8.2f} {d.classes:>8} {len(d.changes):>8} "
              f"{limit:>5.0f}s")
    print("OK" if ok else "TOO SLOW")
    return 0 if ok else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(int(args[0]) if args else 3, args[1:] or list(PAIRS)))
