"""`stockade diff`: the packet classes whose verdict differs between two rulesets or policies."""
from __future__ import annotations

import json
import sys

import click

from ..parse.script import Invocation
from . import options
from .exitcodes import FINDINGS, OK
from .inputs import load_any


@click.command("diff")
@click.argument("old")
@click.argument("new")
@options.as_json("machine-readable output (shape: semantics/diff.py)")
@options.FROM_NFT
@options.script
def command(old: str, new: str, as_json: bool, fmt: str, how: Invocation) -> None:
    """Packet classes whose verdict differs between OLD and NEW (each a dump, a script, a policy .toml or
    an nftables ruleset: nft JSON or an nft text file, e.g. iptables-restore-translate's output): exit 0
    if none, 1 if some or if an input has errors, 2 if an input is unreadable. `--from` applies to both."""
    from ..semantics.diff import semantic_diff

    sides = []
    for path in (old, new):
        rulesets, diags = load_any(path, fmt, how)
        for d in diags:
            if d.severity == "error":
                click.echo(str(d), err=True)
        sides.append(rulesets)
    d = semantic_diff(*sides, progress=lambda m: click.echo(f"stockade: comparing {m}", err=True))
    click.echo(json.dumps(d.to_json(), indent=2) if as_json else d.text(), nl=as_json)
    sys.exit(FINDINGS if d.changes else OK)
