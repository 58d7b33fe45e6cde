"""`stockade parse`: a ruleset in canonical iptables-save form or JSON."""
from __future__ import annotations

import json
import sys

import click

from ..heap import collector_paused
from ..render.ipset import render_ipset_save
from ..render.json import ruleset_json
from ..render.save import render_save
from . import options
from .exitcodes import FINDINGS, OK
from .inputs import Source, load


@click.command("parse")
@click.argument("file", required=False)
@click.option("--to", "out", type=click.Choice(["iptables-save", "json"]), default="iptables-save",
              show_default=True)
@options.reading
def command(file: str | None, out: str, src: Source) -> None:
    """Read FILE (or the kernel's ruleset) and print it in canonical iptables-save form (or JSON)."""
    # The collector is paused throughout: everything the run makes lives until it ends (a 200,000-rule
    # dump is millions of objects, which each collection walks), and is freed by reference counting when
    # _print returns, before the collector runs again.
    with collector_paused():
        failed = _print(file, out, src)
    sys.exit(FINDINGS if failed else OK)


def _print(file: str | None, out: str, src: Source) -> bool:
    """Print the ruleset (and what is wrong with it); whether the input has errors."""
    b = load(file, src).builder
    for d in b.diagnostics:
        if d.severity != "note":
            click.echo(str(d), err=True)
    rulesets = [rs for _, rs in sorted(b.rulesets.items())]
    if out == "json":
        click.echo(json.dumps({"rulesets": [ruleset_json(rs) for rs in rulesets],
                               "diagnostics": [d.to_json() for d in b.diagnostics]}, indent=2))
    else:
        for rs in rulesets:
            click.echo(f"# {rs.family.cmd}-save (canonical, by stockade)")
            click.echo(render_save(rs), nl=False)
        if b.sets:  # the sets a script's `ipset` commands made
            click.echo("# ipset save (canonical, by stockade)")
            click.echo(render_ipset_save(list(b.sets.values())), nl=False)
    return any(d.severity == "error" for d in b.diagnostics)
