"""CI smoke run of bench/parse_scale.py at a small size: the bench keeps working and its figures print."""
import re
import subprocess
import sys
from pathlib import Path

from stockade.parse.read import read

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_parse_scale_bench_runs_small():
    r = subprocess.run([sys.executable, str(BENCH / "parse_scale.py"), "2000", "--runs", "1"], capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert re.search(r"baseline \(read \+ split words\): +[\d.]+ s  peak RSS +[\d.]+ MiB", r.stdout), r.stdout
    assert re.search(r"stockade parse: +[\d.]+ s  peak RSS +[\d.]+ MiB", r.stdout), r.stdout


def test_the_generated_dump_is_read_without_errors():
    """The bench measures parsing, not error reporting: every generated rule is one stockade reads."""
    sys.path.insert(0, str(BENCH))
    from parse_scale import SHAPES, dump

    b = read(dump(len(SHAPES) * 6), "big.rules")
    assert not [d for d in b.diagnostics if d.severity == "error"], b.diagnostics[:3]
    rs = next(iter(b.rulesets.values()))
    assert sum(len(c.rules) for c in rs.tables["filter"].chains.values()) == len(SHAPES) * 6
