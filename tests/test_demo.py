"""`stockade demo` (the README's main command) runs and names every planted defect."""
import subprocess
import sys


def test_demo_finds_each_planted_defect():
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "demo"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for expected in ("30:26: error: `–dport` starts with an en-dash",
                     "31:13: error: chain INPUT-p does not exist; did you mean `INPUT -p`?",
                     "38:29: error: `x.x.x.x` is a placeholder",
                     "42:19: error: option --dport needs a protocol"):
        assert expected in r.stdout
    assert "-A syn_flood -m limit --limit 1/sec --limit-burst 3 -j RETURN" in r.stdout
