"""`stockade lint`: defects in a ruleset and findings about what its rules do."""
from __future__ import annotations

import ipaddress
import json
import sys

import click

from . import options
from .exitcodes import FINDINGS, OK
from .inputs import Loaded, Source, load


@click.command("lint")
@click.argument("file", required=False)
@options.as_json("machine-readable output")
@click.option("--notes", is_flag=True, help="also show notes (skipped commands)")
@click.option("--admin", "admins", multiple=True, metavar="ADDR",
              help="an address that must reach SSH (tcp/22); repeatable")
@options.reading
def command(file: str | None, as_json: bool, notes: bool, admins: tuple[str, ...], src: Source) -> None:
    """Report defects in FILE (or the kernel's ruleset) and findings about what its rules do: exit 0 if
    clean, 1 if there are errors, 2 if unreadable."""
    from ..semantics.findings import check, lint

    try:
        addresses = [str(ipaddress.ip_address(a)) for a in admins]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--admin") from None
    got = load(file, src, nft=True)
    if got.nft is not None:
        sys.exit(_nft(got, as_json))
    b, file = got.builder, got.name
    if got.kind in ("save", "script"):  # findings of the script as meant, too
        found = lint(b, got.text, file, script=got.kind == "script", admins=addresses)
    else:
        found = check(b.rulesets, file, admins=addresses)
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


def _nft(got: Loaded, as_json: bool) -> int:
    """Findings on an nftables ruleset (semantics/findings/nft.py)."""
    from ..semantics.findings.nft import nft_findings

    nft, file = got.nft, got.name
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
