"""Batch `stockade explain` throughput on the largest net-network dump (issue 3: 100,000 packets < 60 s).

Baseline, measured in the same run: the same packets through a one-rule ruleset, so the
ratio is what the 5,500 rules cost on top of reading specs and writing JSON.
Usage: .venv/bin/python bench/explain_batch.py [N]
"""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT.parent / "shared/corpus/net-network/configs_chair_for_Network_Architectures_and_Services" \
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


def run(ruleset: Path, specs: Path) -> tuple[float, list[str]]:
    t = time.perf_counter()
    r = subprocess.run([str(ROOT / ".venv/bin/stockade"), "explain", str(ruleset), "--packets", str(specs),
                        "--json"], capture_output=True, text=True, check=True)
    return time.perf_counter() - t, r.stdout.splitlines()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    text = DUMP.read_text()
    rules = sum(line.startswith("-A ") for line in text.splitlines())
    with tempfile.TemporaryDirectory() as tmp:
        specs, base = Path(tmp, "packets.jsonl"), Path(tmp, "baseline.rules")
        specs.write_text("\n".join(packets(n, text)) + "\n")
        base.write_text(BASELINE)
        t_base, _ = run(base, specs)
        t_dump, lines = run(DUMP, specs)
    verdicts: dict[str, int] = {}
    evaluated = []
    for line in lines:
        out = json.loads(line)
        verdicts[out.get("verdict", "error")] = verdicts.get(out.get("verdict", "error"), 0) + 1
        evaluated.append(out.get("evaluated", 0))
    print(f"packets: {n}, rules in dump: {rules}")
    print(f"baseline (1 rule):   {t_base:7.2f} s  {n / t_base:9.0f} packets/s")
    print(f"TUM dump ({rules} rules): {t_dump:7.2f} s  {n / t_dump:9.0f} packets/s  (target < 60 s)")
    print(f"ratio dump/baseline: {t_dump / t_base:.2f}x")
    print(f"verdicts: {verdicts}")
    print(f"rules evaluated per packet: mean {sum(evaluated) / len(evaluated):.1f}, max {max(evaluated)}")


if __name__ == "__main__":
    main()
