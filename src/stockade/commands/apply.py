"""`stockade apply`: a policy made live atomically, with a rollback timer until confirmed."""
from __future__ import annotations

import json

import click

from . import options
from .inputs import load_policy
from .kernelstep import alarms, kernel_step


@click.command("apply")
@click.argument("policy")
@options.NETNS
@click.option("--confirm-timeout", default=60, show_default=True, type=click.IntRange(0, 86400),
              help="seconds until the previous ruleset comes back unless `stockade confirm` (0: no timer)")
@click.option("--force", is_flag=True, help="apply even if the SSH clients or admins would lose access")
@click.option("--backend", type=click.Choice(["auto", "nftables", "iptables-nft", "iptables-legacy"]), default="auto",
              show_default=True)
@click.option("--check", "dry", is_flag=True, help="change nothing: say whether the live part differs from the "
              "policy's, what the SSH clients and admins would get, and the packet classes that would change")
@options.as_json()
def command(policy: str, netns: str | None, confirm_timeout: int, force: bool, backend: str, dry: bool,
            as_json: bool) -> None:
    """Apply POLICY atomically; roll back after --confirm-timeout seconds unless confirmed."""
    from ..kernel.apply import apply_policy, plan_policy
    from ..kernel.feeds import stored_lists

    c = load_policy(policy, feeds=kernel_step(stored_lists, netns))  # the feeds keep what they hold
    if dry:
        plan = kernel_step(plan_policy, c, netns, backend, as_json=as_json)
        click.echo(json.dumps(plan.to_json(), indent=2) if as_json else plan.text(), nl=as_json)
        alarms(netns)
        return
    done = kernel_step(apply_policy, c, policy, netns, confirm_timeout, force, backend, as_json=as_json,
                       progress=lambda m: click.echo(f"stockade: {m}", err=True))
    click.echo(json.dumps(done.to_json(), indent=2) if as_json else done.text(), nl=as_json)
    alarms(netns)
