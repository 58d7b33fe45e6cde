"""`stockade lint`: defects in a ruleset and findings about what its rules do."""
from __future__ import annotations

import ipaddress
import json
import sys

import click

from ..parse.script import Invocation
from . import options
from .exitcodes import FINDINGS, OK
from .inputs import load_any, load_ruleset, read_text


@click.command("lint")
@click.argument("file")
@options.FROM_NFT
@options.as_json("machine-readable output")
@click.option("--notes", is_flag=True, help="also show notes (skipped commands)")
@click.option("--admin", "admins", multiple=True, metavar="ADDR",
              help="an address that must reach SSH (tcp/22); repeatable")
@options.script
def command(file: str, fmt: str, as_json: bool, notes: bool, admins: tuple[str, ...],
            how: Invocation) -> None:
    """Report defects in FILE and findings about what its rules do: exit 0 if clean, 1 if there
    are errors, 2 if unreadable."""
    from ..parse.read import guess_format
    from ..semantics.findings import lint as find

    try:
        addresses = [str(ipaddress.ip_address(a)) for a in admins]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--admin") from None
    if fmt == "nft" or (fmt == "auto" and _is_nft(file)):
        sys.exit(_nft(file, as_json))
    b, text = load_ruleset(file, fmt, how=how)
    found = find(b, text, file, script=(fmt if fmt != "auto" else guess_format(text)) == "script", admins=addresses)
    shown = [d for d in b.diagnostics if notes or as_json or d.severity != "note"]
    errors = sum(d.severity == "error" for d in b.diagnostics) + sum(f.severity == "error" for f in found)
    warnings = sum(d.severity == "warning" for d in b.diagnostics) + sum(f.severity == "warning" for f in found)
    if as_json:
        click.echo(json.dumps({"file": file, "errors": errors, "warnings": warnings,
                               "rules": sum(len(c.rules) for rs in b.rulesets.values()
                                            for t in rs.tables.values() for c in t.chains.values()),
                               "diagnostics": [d.to_json() for d in shown],
                               "findings": [f.to_json() for f in found]}, indent=2))
    else:
        for d in shown:
            click.echo(str(d))
        for f in found:
            click.echo(str(f))
        click.echo(f"{file}: {errors} error(s), {warnings} warning(s)", err=True)
    sys.exit(FINDINGS if errors else OK)


def _is_nft(path: str) -> bool:
    from ..parse.nft import looks_like_nft
    from ..parse.read import BOM

    return looks_like_nft(read_text(path).removeprefix(BOM))


def _nft(file: str, as_json: bool) -> int:
    """Findings on an nftables ruleset (semantics/findings/nft.py)."""
    from ..semantics.findings.nft import nft_findings

    nft, _ = load_any(file, "nft")
    found = nft_findings(nft, file)
    errors = sum(f.severity == "error" for f in found)
    warnings = sum(f.severity == "warning" for f in found)
    if as_json:
        click.echo(json.dumps({"file": file, "errors": errors, "warnings": warnings,
                               "rules": sum(len(c.rules) for t in nft.tables for c in t.chains.values()),
                               "diagnostics": [], "findings": [f.to_json() for f in found]}, indent=2))
    else:
        for f in found:
            click.echo(str(f))
        click.echo(f"{file}: {errors} error(s), {warnings} warning(s)", err=True)
    return FINDINGS if errors else OK
