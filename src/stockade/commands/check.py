"""`stockade check`: a policy validated, compiled, checked by the real tools, and what it opens."""
from __future__ import annotations

import json
import sys

import click

from . import options
from .exitcodes import FINDINGS, OK
from .inputs import load_policy


@click.command("check")
@click.argument("policy")
@options.as_json()
def command(policy: str, as_json: bool) -> None:
    """Validate and compile POLICY, have the real tools check it in a throwaway namespace, show what is open."""
    from ..kernel.check import check_with_tools
    from ..policy.summary import egress_table, service_table

    c = load_policy(policy)
    problems = check_with_tools(c)
    rows, out = service_table(c.policy), egress_table(c.policy)
    if as_json:
        click.echo(json.dumps({"policy": policy, "ok": not problems, "problems": problems, "services": rows,
                               "egress": out}, indent=2))
    else:
        click.echo(f"{'service':<12} {'ports':<18} {'from':<28} limit")
        for r in rows:
            click.echo(f"{r['service']:<12} {r['ports']:<18} {r['from']:<28} {r['limit'] or ''}")
        click.echo(f"\n{'outbound':<12} {'ports':<18} to")
        for r in out:
            click.echo(f"{r['service']:<12} {r['ports']:<18} {r['to']}")
        for prob in problems:
            click.echo(f"{policy}: error: {prob}", err=True)
        click.echo(f"{policy}: {'ok' if not problems else 'REFUSED by the real tools'}", err=True)
    sys.exit(FINDINGS if problems else OK)
