"""Run the script differential over every case and print the results as a Markdown table.

    PYTHONPATH=src python -m tests.realworld.report [--update] [NAME ...]

As root (it uses network namespaces). `--update` writes each measured outcome into scripts.toml's
`expect`, and a reason (the first difference and what stockade said) where the outcome changed:
do it when stockade changed on purpose, and read the diff.
"""
from __future__ import annotations

import re
import sys

from .scriptrun import MANIFEST, OUTCOMES, Differential, cases, differential, stockade_options

HEADER = ("| case | expected | measured | run | first difference, stockade's first diagnostic | cause (scripts.toml) |\n"
          "|---|---|---|---|---|---|")


def row(d: Differential) -> str:
    k = d.kernel
    status = "timeout" if k.timed_out else f"exit {k.rc}"
    cells = [c.replace("|", "\\|").replace("\n", " ") for c in (d.summary(), d.case.reason)]
    return (f"| {d.case.name} | {d.case.expect} | **{d.outcome}** | bash {status}, "
            f"{len(k.calls)} stubbed call(s); stockade exit {d.reading.rc} | {cells[0]} | {cells[1]} |")


def reason(d: Differential) -> str:
    return "" if d.outcome == "identical" else d.summary().split(": ", 1)[1]


def update(results: list[Differential]) -> None:
    """Rewrite `expect` and `reason` of the measured cases in the manifest, keeping everything else."""
    text = MANIFEST.read_text()
    for d in results:
        block = re.search(rf'(?ms)^\[\[script\]\]\nname = "{re.escape(d.case.name)}"\n.*?(?=^\[\[script\]\]|\Z)', text)
        body = re.sub(r'(?m)^(expect|reason) = .*\n', "", block.group(0)).rstrip("\n")
        body += f'\nexpect = "{d.outcome}"\n'
        if d.outcome != "identical":   # a reason written for this same outcome is kept
            why = d.case.reason if d.outcome == d.case.expect and d.case.reason else reason(d)
            escaped = why.replace("\\", "\\\\").replace('"', '\\"')
            body += f'reason = "{escaped}"\n'
        text = text[:block.start()] + body + "\n" + text[block.end():]
    MANIFEST.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("--")]
    options = stockade_options()
    results = []
    print(HEADER)
    for case in cases():
        if names and case.name not in names:
            continue
        d = differential(case, options)
        results.append(d)
        print(row(d), flush=True)
    counts = {o: sum(d.outcome == o for d in results) for o in OUTCOMES}
    print(f"\n{len(results)} case(s): " + ", ".join(f"{n} {o}" for o, n in counts.items()))
    if "--update" in argv:
        update(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
