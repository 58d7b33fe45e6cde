"""Issue 6, Must show "Crash safety": 50 applies, each SIGKILLed at a random moment (seeded) while
it runs, every other time together with every process in the namespace (the detached worker and
the iptables/nft/ipset it runs); afterwards (once the lock is free and, where a journal says a
transaction was left half done or a rollback timer died with the worker, `stockade repair` has undone it) the whole live ruleset is exactly the old or the new one, never a
mix of the two, never empty, and the lock is never left stuck. Half the applies use
iptables-nft (sets, IPv4 and IPv6 in three steps), half nftables (one transaction), each backend
in its own namespace, the two run side by side."""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from stockade.kernel.lock import held
from stockade.kernel.netns import Netns

from .applylab import STOCKADE, env, full_text, policies, stockade, wait_until

APPLIES = 50
SEED = 6


def _series(backend: str, n: int, base, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    tmp = base / backend
    tmp.mkdir()
    state = tmp / "state"
    old, new = policies(tmp)
    with Netns() as ns:
        texts, took = {}, 0.0
        for p in (old, new):  # what each policy looks like live, and how long an apply takes here
            started = time.monotonic()
            stockade(["apply", str(p), "--netns", ns.name, "--confirm-timeout", "0", "--backend", backend], state)
            took = max(took, time.monotonic() - started)
            texts[p] = full_text(ns, backend)
        assert texts[old] != texts[new]
        lock = state / ns.name / "lock"
        results = []
        for i in range(n):
            before = full_text(ns, backend)
            assert before in texts.values()
            target = new if before == texts[old] else old
            delay = rnd.uniform(0.2, 1.2) * took  # anywhere in an apply, a little after it too
            everything = i % 2 == 1  # also the worker and the tools it runs, not just `apply`
            proc = subprocess.Popen([STOCKADE, "apply", str(target), "--netns", ns.name, "--confirm-timeout", "0",
                                     "--force", "--backend", backend], env=env(state),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            if everything:
                for pid in ns.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            proc.wait()
            freed = wait_until(lambda: not held(lock), 10)
            repaired = any((state / ns.name / f).exists() for f in ("journal.json", "pending.json")) and bool(
                json.loads(stockade(["repair", "--netns", ns.name, "--json"], state).stdout)["repaired"])
            after = full_text(ns, backend)
            sets = re.findall(r"^create (\S+)", ns.run(["ipset", "save"]).stdout, re.MULTILINE)
            results.append({"i": i, "delay": round(delay, 3), "killed": "all" if everything else "apply",
                            "repaired": repaired, "lock_freed": freed is not None,
                            "outcome": "old" if after == before else "new" if after == texts[target] else "MIX",
                            "set_generations": sorted({s[-1] for s in sets})})
        # the lock works afterwards: a normal apply goes through
        stockade(["apply", str(old), "--netns", ns.name, "--confirm-timeout", "0", "--backend", backend], state)
        assert full_text(ns, backend) == texts[old]
    return results


def test_sigkill_at_random_moments(kernel_ok, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda a: _series(a[0], APPLIES // 2, tmp_path, SEED + a[1]),
                             [("iptables-nft", 0), ("nftables", 1)]))
    results = [dict(r, backend=b) for b, rs in zip(("iptables-nft", "nftables"), runs) for r in rs]
    for r in results:
        print(json.dumps(r))
    count = {k: sum(r["outcome"] == k for r in results) for k in ("old", "new", "MIX")}
    print(f"crash safety: {len(results)} applies killed ({sum(r['killed'] == 'all' for r in results)} together with "
          f"the worker): {count['old']} left the old ruleset, {count['new']} the new, {count['MIX']} a mix; "
          f"{sum(r['repaired'] for r in results)} half-done transactions repaired; "
          f"lock freed every time: {all(r['lock_freed'] for r in results)}")
    assert count["MIX"] == 0 and all(r["lock_freed"] for r in results)
    assert count["old"] and count["new"], "the kill moments did not cover both outcomes"
    assert all(len(r["set_generations"]) <= 1 for r in results), "sets of two generations left behind"


def test_repair_after_a_kill_between_the_family_commits(kernel_ok, tmp_path):
    """An apply killed after IPv4's commit and before IPv6's leaves OLD's IPv6 admin set (NEW has none) in
    the kernel with no rule using it; repair puts NEW back whole and leaves one generation of sets (it
    counts the journal's target's sets as stockade's: the random kills above met this once in CI)."""
    from stockade.kernel import transaction
    from stockade.kernel.host import Host
    from stockade.kernel.live import read_part
    from stockade.kernel.part import desired
    from stockade.kernel.state import State
    from stockade.policy.compile import compile_policy

    old, new = policies(tmp_path)
    state = tmp_path / "state"
    with Netns() as ns:
        stockade(["apply", str(new), "--netns", ns.name, "--confirm-timeout", "0", "--backend", "iptables-nft"], state)
        before = full_text(ns, "iptables-nft")
        live = read_part(Host(ns.name), "iptables-nft")
        target = desired(compile_policy(old), "iptables-nft", {})
        assert "stk-admins-ip6" in target.text["sets"] and "stk-admins-ip6" not in live.text["sets"]
        gen = next(g for g in "abc" if f"-{g} " not in ns.run(["iptables-nft-save"]).stdout)
        State(state / ns.name).write("journal", {"from": live.to_json(), "to": target.to_json()})
        ns.run(["ipset", "restore"], input=transaction._physical(target.text["sets"], gen))
        ns.run(["iptables-nft-restore", "--noflush"],
               input=transaction.restore_text(live.text["4"], target.text["4"], gen))
        assert full_text(ns, "iptables-nft") != before
        assert json.loads(stockade(["repair", "--netns", ns.name, "--json"], state).stdout)["repaired"]
        assert full_text(ns, "iptables-nft") == before
        sets = re.findall(r"^create (\S+)", ns.run(["ipset", "save"]).stdout, re.MULTILINE)
        assert len({s[-1] for s in sets}) == 1, sets
