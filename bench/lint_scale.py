"""`stockade lint` on seed-style blocklists of growing size (issue 15: linear, 10,000 addresses < 2 s).

A seed-style blocklist dump: one `-A INPUT -s ADDR/32 -j DROP` per address, then an SSH accept
(the shape the seeds build with a loop of `iptables -A`). For each size, the time to parse
the dump and the time of `lint` (every finding) on it, each the median of REPEAT runs. The
growth exponent is the slope of log(time) over log(size) from the smallest to the largest
size: 1 is linear, 2 quadratic; the issue asks for <= 1.15.

Baseline, measured in the same run: parsing the same dump (`parse`), which is linear; lint's
own work is shown beside it, and the exponent is given for both. Times are CPU seconds of this
process (time.process_time: the machine is shared, and other jobs' load would otherwise be
measured too); the wall-clock total is shown beside them, with the load average. With the TUM corpus present
(../shared/corpus, or $STOCKADE_SHARED/corpus), the 5,500-rule TUM dump 2016-06-27 is linted too.
Addresses are random data in a dump that is only read; nothing is sent to them.

Usage: .venv/bin/python bench/lint_scale.py [SIZE ...]   (default 1000 10000 50000; REPEAT=3)
"""
from __future__ import annotations

import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

from stockade.parse.read import read
from stockade.semantics.findings import lint

REPEAT = 3
LIMITS = {10_000: 2.0, 50_000: 15.0}  # seconds, parse + lint
TUM_LIMIT = 2.0
MAX_EXPONENT = 1.15
SHARED = Path(os.environ.get("STOCKADE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
TUM = SHARED / "corpus/net-network/configs_chair_for_Network_Architectures_and_Services" \
    / "iptables-save-2016-06-27_16-29-01"
ANON_MAC, PLACEHOLDER = "XX:XX:XX:XX:XX:XX", "02:00:00:00:00:00"  # see bench/matrix_tum.py


def blocklist_dump(n: int, seed: int = 7) -> str:
    """`n` distinct random addresses (never the documentation range 192.0.2.0/24), then SSH."""
    rng = random.Random(seed)
    seen: set[int] = set()
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    while len(seen) < n:
        a = rng.getrandbits(32)
        if a >> 8 == 0xC00002 or a in seen:
            continue
        seen.add(a)
        lines.append(f"-A INPUT -s {'.'.join(str(a >> s & 255) for s in (24, 16, 8, 0))}/32 -j DROP")
    return "\n".join(lines + ["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "COMMIT", ""])


def measure(text: str, name: str) -> tuple[float, float, float, int]:
    """Median parse and lint CPU seconds and wall-clock total over REPEAT runs, and the number of findings."""
    parse_s, lint_s, wall, found = [], [], [], 0
    for _ in range(REPEAT):
        w0, t0 = time.perf_counter(), time.process_time()
        b = read(text, name)
        t1 = time.process_time()
        found = len(lint(b, text, name, script=False))
        t2 = time.process_time()
        parse_s.append(t1 - t0)
        lint_s.append(t2 - t1)
        wall.append(time.perf_counter() - w0)
    return statistics.median(parse_s), statistics.median(lint_s), statistics.median(wall), found


def exponent(sizes: list[int], times: list[float]) -> float:
    return math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0])


def main(sizes: list[int]) -> int:
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of {REPEAT}")
    print(f"{'input':<28} {'rules':>6} {'parse s':>8} {'lint s':>8} {'total s':>8} {'wall s':>8} {'findings':>8} "
          f"{'limit':>6}")
    ok = True
    totals, lints, parses = [], [], []
    for n in sizes:
        p, li, w, found = measure(blocklist_dump(n), f"blocklist-{n}.rules")
        limit = LIMITS.get(n)
        ok &= limit is None or p + li < limit
        print(f"{'blocklist ' + str(n):<28} {n + 1:>6} {p:>8.2f} {li:>8.2f} {p + li:>8.2f} {w:>8.2f} {found:>8} "
              f"{'' if limit is None else f'{limit:.0f} s':>6}")
        parses.append(p)
        lints.append(li)
        totals.append(p + li)
    if TUM.exists():
        text = TUM.read_text().replace(ANON_MAC, PLACEHOLDER)
        p, li, w, found = measure(text, TUM.name)
        ok &= p + li < TUM_LIMIT
        print(f"{'TUM 2016-06-27':<28} {text.count(chr(10) + '-A'):>6} {p:>8.2f} {li:>8.2f} {p + li:>8.2f} "
              f"{w:>8.2f} {found:>8} {f'{TUM_LIMIT:.0f} s':>6}")
    else:
        print(f"(TUM dump not found at {TUM}: skipped)")
    if len(sizes) > 1:
        e_total, e_lint, e_parse = exponent(sizes, totals), exponent(sizes, lints), exponent(sizes, parses)
        ok &= e_total <= MAX_EXPONENT
        print(f"growth exponent {sizes[0]}..{sizes[-1]}: total {e_total:.2f}, lint {e_lint:.2f}, "
              f"parse (baseline) {e_parse:.2f}; limit {MAX_EXPONENT}")
    print("OK" if ok else "TOO SLOW")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [1000, 10_000, 50_000]))
