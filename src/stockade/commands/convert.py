"""`stockade convert`: a script or dump turned into a policy, proven with the semantic diff."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..files import write_atomic
from . import options
from .exitcodes import FINDINGS, OK
from .inputs import Source, load


@click.command("convert")
@click.argument("ruleset", required=False)
@click.option("--to", "target", type=click.Choice(["policy"]), default="policy", show_default=True,
              help="what to write")
@click.option("--out", "out", metavar="FILE", help="write the policy here (default: standard output)")
@options.as_json("machine-readable result: the policy, its deliberate differences, every changed class")
@options.reading
def command(ruleset: str | None, target: str, out: str | None, as_json: bool, src: Source) -> None:
    """Write a policy that does what RULESET (a script or an iptables-save dump) does, then prove it:
    the semantic diff of RULESET and the policy may list only the policy's deliberate differences,
    each named in the policy's comments with the script line and the reason. Exit 0 if every changed
    packet class is explained, 1 if some is not."""
    from ..policy.convert import convert, prove

    got = load(ruleset, src, whole=True)
    rulesets, ruleset = got.builder.loaded(), got.name
    for d in got.builder.for_analysis():
        if d.severity == "error":
            click.echo(f"{d}\n  note: that line is left out, as the kernel would refuse it", err=True)
    conv = convert(rulesets, ruleset)
    name = out or "converted-policy.toml"
    draft = conv.toml()
    proof = prove(conv, rulesets, name, draft,
                  progress=None if as_json else lambda m: click.echo(f"stockade: comparing {m}", err=True))
    text = conv.toml(proof.used(conv))
    if out is not None:
        write_atomic(Path(out), text, 0o644)  # WriteError: `PATH: error: cannot write: ...`, exit 2 (errors.py)
    bad = proof.unexplained
    if as_json:
        click.echo(json.dumps({
            "policy": text, "out": out,
            "deviations": [conv.deviations[i].to_json() | {"classes": n} for i, n in proof.used(conv).items()],
            "classes": proof.diff.classes, "changed": len(proof.diff.changes), "unexplained": len(bad),
            "changes": [e.to_json() for e in proof.explained]}, indent=2))
    else:
        if out is None:
            click.echo(text)
        for e in proof.explained:  # every class that differs: the script's verdict and line, and why
            c = e.change
            why = "; ".join(f"{d.topic}: {d.reason}" for d in e.deviations) or "UNEXPLAINED"
            click.echo(f"  IPv{int(c.family)} {c.hook} {c.state} {c.text()}: {c.old.verdict} "
                       f"({c.old.rule or 'no rule'}) \u2192 {c.new.verdict}: {why}", err=True)
        click.echo(f"{ruleset}: {len(proof.diff.changes)} of {proof.diff.classes} packet classes differ from the "
                   f"policy; {len(proof.diff.changes) - len(bad)} by the deliberate differences listed in its "
                   f"header, {len(bad)} unexplained", err=True)
    sys.exit(FINDINGS if bad else OK)
