"""`stockade diff`: the packet classes whose verdict differs between two rulesets or policies."""
from __future__ import annotations

import json
import sys
from dataclasses import replace

import click

from . import options
from .exitcodes import FINDINGS, OK
from .inputs import Source, load


@click.command("diff")
@click.argument("files", nargs=-1, metavar="OLD NEW")
@options.as_json("machine-readable output (shape: semantics/diff.py)")
@options.reading
def command(files: tuple[str, ...], as_json: bool, src: Source) -> None:
    """Packet classes whose verdict differs between OLD and NEW (each a dump, a script, a policy or an
    nftables ruleset, e.g. iptables-restore-translate's output; with
    --live, OLD is the kernel's ruleset now and only NEW is given): exit 0 if none, 1 if some or if an
    input has errors, 2 if an input is unreadable. --from and --family apply to the files, --ipsets to
    those that are dumps or scripts."""
    from ..semantics.diff import semantic_diff

    if len(files) != (1 if src.live else 2):
        raise click.UsageError("give OLD and NEW" if not src.live else "with --live, give NEW only")
    inputs = [(None, replace(src, ipsets=None)), (files[0], replace(src, fmt="auto", netns=None))] if src.live else \
        [(path, src) for path in files]
    sides = []
    for path, source in inputs:
        got = load(path, source, whole=True, shared_sets=True, nft=True)
        for d in got.builder.for_analysis():
            if d.severity == "error" or d.code == "unread-value":
                click.echo(str(d), err=True)
        sides.append(got.side())
    d = semantic_diff(*sides, progress=lambda m: click.echo(f"stockade: comparing {m}", err=True))
    click.echo(json.dumps(d.to_json(), indent=2) if as_json else d.text(), nl=as_json)
    sys.exit(FINDINGS if d.changes else OK)
