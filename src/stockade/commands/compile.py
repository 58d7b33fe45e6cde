"""`stockade compile`: a policy to the files iptables-restore, ipset or nft load."""
from __future__ import annotations

from pathlib import Path

import click

from .inputs import load_policy


@click.command("compile")
@click.argument("policy")
@click.option("--target", type=click.Choice(["iptables", "nftables"]), default="iptables", show_default=True)
@click.option("--out", "out_dir", required=True, metavar="DIR", help="directory to write into")
def command(policy: str, target: str, out_dir: str) -> None:
    """Compile POLICY: rules.v4, rules.v6 and ipsets (iptables) or ruleset.nft (nftables)."""
    from ..policy.output import write_outputs

    c = load_policy(policy)
    written = write_outputs(c, target, Path(out_dir))  # WriteError: nothing of anyone else's replaced (errors.py)
    for path in written:
        click.echo(str(path))
