"""Batch `stockade explain` throughput on the largest net-network dump (issue 15: 1,000,000 packets < 10 s,
the one-rule baseline at least 300,000 packets/s).

Baseline, measured in the same run: the same packets through a one-rule ruleset, so the
difference is what the 5,500 rules cost on top of reading specs and writing JSON.
Each figure is the median of --runs runs of the CLI (a fresh process: parsing the dump is included).
Usage: python bench/explain_batch.py [N] [--runs 3]   (STOCKADE_SHARED: where corpus/ is)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STOCKADE_SHARED", ROOT.parent / "shared"))
DUMP = SHARED / "corpus/net-network/configs_chair_for_Network_Architectures_and_Services" \
    / "iptables-save-2016-06-27_16-29-01"
BASELINE = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n"


def packets(n: int, text: str, seed: int = 1) -> list[str]:
    """Specs drawn from the dump's own addresses, interfaces and ports, so rules really get hit."""
    rng = random.Random(seed)
    nets = re.findall(r"-[sd] (\d+\.\d+\.\d+\.\d+)/(\d+)", text) or [("192.0.2.0", "24")]
    ifaces = sorted(set(re.findall(r"-[io] (\w[\w.]*)", text))) or ["eth0"]
    ports = [int(p) for p in re.findall(r"--dports? (\d+)", text)] or [22]
    out = []
    for _ in range(n):
        def addr():
            base, plen = rng.choice(nets)
            a = sum(int(x) << (24 - 8 * i) for i, x in enumerate(base.split(".")))
            a |= rng.getrandbits(32 - int(plen)) if int(plen) < 32 else 0
            return ".".join(str(a >> s & 255) for s in (24, 16, 8, 0))
        proto = rng.choice(["tcp", "tcp", "tcp", "udp", "icmp"])
        spec = {"proto": proto, "src": addr(), "dst": addr(), "hook": "FORWARD",
                "iif": rng.choice(ifaces), "oif": rng.choice(ifaces)}
        if proto == "icmp":
            spec["icmp_type"] = rng.choice([0, 3, 8, 11])
        else:
            spec["dport"] = rng.choice(ports + [rng.randrange(1, 65536)])
            spec["sport"] = rng.randrange(1024, 65536)
            if proto == "tcp":
                spec["tcp_flags"] = rng.choice([["SYN"], ["ACK"], ["SYN"], ["FIN", "ACK"]])
        out.append(json.dumps(spec))
    return out


def run(ruleset: Path, specs: Path, out: Path) -> tuple[float, float]:
    """Seconds, wall and CPU (user + system), for one `stockade explain --packets --json` process, its answers
    written to `out`. CPU time says what the process cost on a machine other jobs share."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with out.open("wb") as sink:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(ruleset), "--packets", str(specs),
                            "--json"], stdout=sink, stderr=subprocess.PIPE, env=env, check=False)
        if r.returncode != 0:  # the dump's warnings are left out of the figures' output, not its errors
            sys.exit(f"explain failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.n
    text = DUMP.read_text()
    rules = sum(line.startswith("-A ") for line in text.splitlines())
    with tempfile.TemporaryDirectory() as tmp:
        specs, base, answers = Path(tmp, "packets.jsonl"), Path(tmp, "baseline.rules"), Path(tmp, "answers.jsonl")
        specs.write_text("\n".join(packets(n, text)) + "\n")
        base.write_text(BASELINE)
        base_runs = [run(base, specs, answers) for _ in range(args.runs)]
        dump_runs = [run(DUMP, specs, answers) for _ in range(args.runs)]
        t_base, c_base = (statistics.median(r[i] for r in base_runs) for i in (0, 1))
        t_dump, c_dump = (statistics.median(r[i] for r in dump_runs) for i in (0, 1))
        verdicts: dict[str, int] = {}
        evaluated = []
        with answers.open("rb") as f:
            for line in f:
                out = json.loads(line)
                verdicts[out.get("verdict", "error")] = verdicts.get(out.get("verdict", "error"), 0) + 1
                evaluated.append(out.get("evaluated", 0))
    load = os.getloadavg()[0]
    print(f"packets: {n}, rules in dump: {rules}, median of {args.runs} runs, load average {load:.2f}")
    print(f"baseline (1 rule):      {t_base:7.2f} s  {n / t_base:9.0f} packets/s  (target >= 300000 packets/s);"
          f"  CPU {c_base:.2f} s, {n / c_base:.0f} packets per CPU second")
    print(f"TUM dump ({rules} rules): {t_dump:7.2f} s  {n / t_dump:9.0f} packets/s  (target >= 100000 packets/s);"
          f"  CPU {c_dump:.2f} s, {n / c_dump:.0f} packets per CPU second")
    print(f"dump - baseline: {t_dump - t_base:.2f} s, {1e6 * (t_dump - t_base) / n:.1f} us per packet")
    print(f"verdicts: {verdicts}")
    print(f"rules evaluated per packet: mean {sum(evaluated) / len(evaluated):.1f}, max {max(evaluated)}")


if __name__ == "__main__":
    main()
