"""`stockade remove`: stockade's part out of the kernel and its boot files (Ansible's `state: absent`)."""
from __future__ import annotations

import json

import click

from . import options
from .kernelstep import alarms, kernel_step


@click.command("remove")
@options.NETNS
@click.option("--root", type=click.Path(file_okay=False), help="file system root of the boot files (default: /)")
@click.option("--check", is_flag=True, help="only say what would be removed; change nothing")
@options.as_json()
def command(netns: str | None, root: str | None, check: bool, as_json: bool) -> None:
    """Take stockade's rules, sets and boot files out; the filter policies it set go back to ACCEPT
    (FORWARD stays where Docker runs). Other tools' rules stay."""
    from ..kernel.apply import remove

    out = kernel_step(remove, netns, root, check, as_json=as_json)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo("\n".join(_text(out, check)))
    alarms(netns)


def _text(out: dict, check: bool) -> list[str]:
    if not out["changed"]:
        return ["nothing of stockade's to remove"]
    verb = "would remove" if check else "removed"
    lines = [f"note: {n}" for n in out["notes"]]
    if out["removed"]:
        lines.append(f"{verb} stockade's part {out['removed']} ({out['backend']})")
    for fam, pol in sorted(out["policies"].items()):
        lines.append(f"IPv{fam} filter policies: " + ", ".join(f"{c} {p}" for c, p in pol.items()))
    if out["ended_pending"]:
        lines.append(f"{'would end' if check else 'ended'} the unconfirmed apply (its rollback timer stands down)")
    lines += [f"{'would change' if check else 'changed'} boot file {f}" for f in out["files"]]
    return lines
