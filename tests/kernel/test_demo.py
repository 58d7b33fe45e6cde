"""`./run demo`, the README's main command: exits 0 in under two minutes, and shows each step."""
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_demo_runs_the_whole_job():
    started = time.monotonic()
    r = subprocess.run([str(ROOT / "run"), "demo"], capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    print(f"\n./run demo: exit {r.returncode} in {took:.1f} s")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert took < 120
    for planted in ("30:26: error: `–dport` starts with an en-dash",
                    "31:13: error: chain INPUT-p does not exist; did you mean `INPUT -p`?",
                    "42:19: error: option --dport needs a protocol"):
        assert planted in r.stdout
    assert "0 mismatch(es); lockout rolled back" in r.stdout
    assert "$ stockade apply" in r.stdout and "connects" in r.stdout and "is blocked" in r.stdout
