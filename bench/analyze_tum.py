"""`stockade analyze` on the TUM dumps (issue 15: 2015-05-15 tcp/22 + tcp/80 < 1.0 s; 2016-06-27
IPv4 and IPv6, all its services, < 3 s).

For each case: the analysis (`semantics.analyze.analyze_ruleset`: flatten FORWARD, one service
matrix per service, as `stockade analyze --chain FORWARD` computes them) in CPU seconds of this
process, the median of REPEAT runs (the machine is shared: wall-clock time, shown beside it with
the load average, would measure other jobs too). "All its services" are analyze's defaults: the
ports the chain names (at most 12) plus tcp/22.

Baseline, measured in the same run: parsing the same dump, which the analysis needs first and
which is not counted in its figure. The dumps are anonymised (every MAC XX:XX:XX:XX:XX:XX); as in
bench/matrix_tum.py one valid placeholder MAC keeps the ~1,900 `-m mac` rules in.

Usage: .venv/bin/python bench/analyze_tum.py [REPEAT [CASE ...]]   (CASE: 2015, 2016; default 3 and
both; the corpus is ../shared/corpus or $STOCKADE_SHARED/corpus; exit 0 if every limit holds)
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from stockade.parse.read import read
from stockade.semantics.analyze import Options, analyze_ruleset

SHARED = Path(os.environ.get("STOCKADE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
TUM = SHARED / "corpus/net-network/configs_chair_for_Network_Architectures_and_Services"
ANON_MAC, PLACEHOLDER = "XX:XX:XX:XX:XX:XX", "02:00:00:00:00:00"
# name -> (label, dumps analysed together, services (None: analyze's defaults), limit in seconds)
CASES = {
    "2015": ("2015-05-15 tcp/22+tcp/80", ("iptables-save-2015-05-15_15-23-41",), ["tcp/22", "tcp/80"], 1.0),
    "2016": ("2016-06-27 v4+v6 all services",
             ("iptables-save-2016-06-27_16-29-01", "ip6tables-save-2016-06-27_16-29-01"), None, 3.0),
}


def load(name: str):
    text = (TUM / name).read_text().replace(ANON_MAC, PLACEHOLDER)
    t0 = time.process_time()
    rs = next(iter(read(text, name).rulesets.values()))
    return rs, time.process_time() - t0


def main(repeat: int, cases: list[str]) -> int:
    if not TUM.exists():
        print(f"TUM corpus not found at {TUM}")
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of {repeat}; CPU seconds")
    print(f"{'case':<32} {'services':>8} {'classes':>8} {'parse s':>8} {'analyze s':>9} {'wall s':>7} {'limit':>6}")
    ok = True
    for label, dumps, services, limit in (CASES[c] for c in cases):
        loaded = [load(d) for d in dumps]
        parse_s = sum(p for _, p in loaded)
        runs, walls, shown = [], [], 0
        for _ in range(repeat):
            w0, t0 = time.perf_counter(), time.process_time()
            results = [analyze_ruleset(rs, Options(chain="FORWARD", services=list(services or []), ports=False))
                       for rs, _ in loaded]
            runs.append(time.process_time() - t0)
            walls.append(time.perf_counter() - w0)
            shown = sum(len(m["classes"]) for r in results for m in r["service_matrix"].values())
        n_services = sum(len(r["service_matrix"]) for r in results)
        took = statistics.median(runs)
        ok &= took < limit
        print(f"{label:<32} {n_services:>8} {shown:>8} {parse_s:>8.2f} {took:>9.2f} {statistics.median(walls):>7.2f} "
              f"{limit:>5.1f}s")
    print("OK" if ok else "TOO SLOW")
    return 0 if ok else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(int(args[0]) if args else 3, args[1:] or list(CASES)))
