"""`stockade compile`: a policy to the files iptables-restore, ipset or nft load."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..files import WriteError
from .exitcodes import UNUSABLE
from .inputs import load_policy


@click.command("compile")
@click.argument("policy")
@click.option("--target", type=click.Choice(["iptables", "nftables"]), default="iptables", show_default=True)
@click.option("--out", "out_dir", required=True, metavar="DIR", help="directory to write into")
def command(policy: str, target: str, out_dir: str) -> None:
    """Compile POLICY: rules.v4, rules.v6 and ipsets (iptables) or ruleset.nft (nftables)."""
    from ..policy.output import write_outputs

    c = load_policy(policy)
    try:
        written = write_outputs(c, target, Path(out_dir))
    except WriteError as e:  # nothing of anyone else's replaced, the previous files whole
        click.echo(f"{e.path}: error: cannot write: {e.reason}", err=True)
        sys.exit(UNUSABLE)
    for path in written:
        click.echo(str(path))
