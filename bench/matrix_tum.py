"""Service matrix for ssh and http on the largest TUM dumps (issue 5: under 10 s each).

For each dump (IPv4 and IPv6, FORWARD, about 5,500 / 6,200 rules) and each service,
the time to flatten the chain and compute the matrix (parsing is shown apart).
Baseline, measured in the same run: the brute-force way to the same matrix, the
simulator on one packet per pair of elementary address ranges (the pieces the
rules' boundaries cut the address space into). It is timed on a random sample of
pairs and extrapolated to all of them; the ratio is baseline / matrix.
The dumps are anonymised: every MAC reads XX:XX:XX:XX:XX:XX, which iptables (and stockade's
parser) refuse. They are replaced by one valid placeholder MAC so the ~1,900 `-m mac` rules
stay in; the analysis treats every MAC test as undecided, so the value does not matter.
Usage: .venv/bin/python bench/matrix_tum.py [SAMPLE]
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from stockade.parse.read import read
from stockade.semantics.flatten import flatten
from stockade.semantics.matrix import Service, service_matrix, setting
from stockade.semantics.simulate import Simulator

TUM = Path(__file__).resolve().parents[1].parent / "shared/corpus/net-network" \
    / "configs_chair_for_Network_Architectures_and_Services"
DUMPS = ("iptables-save-2016-06-27_16-29-01", "ip6tables-save-2016-06-27_16-29-01")
LIMIT_S = 10.0
ANON_MAC, PLACEHOLDER = "XX:XX:XX:XX:XX:XX", "02:00:00:00:00:00"


def main(sample: int) -> int:
    rnd = random.Random(1)
    print(f"{'dump':<38} {'service':<7} {'rules':>5} {'flat':>5} {'cuts':>5} {'classes':>7} {'matrix s':>8} "
          f"{'brute-force s (extrapolated)':>29} {'ratio':>7}")
    worst = 0.0
    for name in DUMPS:
        t0 = time.perf_counter()
        rs = next(iter(read((TUM / name).read_text().replace(ANON_MAC, PLACEHOLDER), name).rulesets.values()))
        parse_s = time.perf_counter() - t0
        n_rules = sum(len(c.rules) for c in rs.tables["filter"].chains.values())
        sim = Simulator(rs)
        for port in (22, 80):
            service = Service(6, port, 40000)
            t0 = time.perf_counter()
            flat = flatten(rs, "filter", "FORWARD")
            m = service_matrix(flat, service, s=setting(flat, None))
            took = time.perf_counter() - t0
            worst = max(worst, took)
            cuts = m.elementary
            t1 = time.perf_counter()
            for _ in range(sample):
                pkt = service.packet(rs.family, "FORWARD", rnd.choice(cuts), rnd.choice(cuts), iif="eth1.96",
                                     oif="eth1.110")
                sim.run(pkt)
            per_packet = (time.perf_counter() - t1) / sample
            brute = per_packet * len(cuts) ** 2
            print(f"{name:<38} tcp/{port:<3} {n_rules:>5} {len(flat.rules):>5} {len(cuts):>5} {len(m.classes):>7} "
                  f"{took:>8.2f} {brute:>29.0f} {brute / took:>6.0f}x")
        print(f"{'':<38} (parsing the dump: {parse_s:.2f} s)")
    print(f"slowest matrix: {worst:.2f} s (limit {LIMIT_S:.0f} s): {'OK' if worst < LIMIT_S else 'TOO SLOW'}")
    return 0 if worst < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
