"""`stockade explain`: what the kernel does with a packet (or a file of packets) under a ruleset."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from ..model import Origin
from ..model.packet import Packet, SpecError
from ..parse.read import BOM, Unreadable, decode, read
from ..parse.script import Invocation
from . import options
from .exitcodes import OK, UNUSABLE
from .inputs import load_nft, read_bytes, read_text

Runner = Callable[[Packet], object]  # a packet to its simulate.Result (or semantics.nft.NftResult)


@click.command("explain")
@click.argument("ruleset")
@click.option("--packet", "spec", help='JSON object or short form, e.g. "tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN"')
@click.option("--packets", "batch", metavar="FILE", help="JSON Lines file (- for stdin): one packet spec per line")
@options.as_json("machine-readable output (one line per packet in batch mode)")
@options.FROM_NFT
@options.script
def command(ruleset: str, spec: str | None, batch: str | None, as_json: bool, fmt: str,
            how: Invocation) -> None:
    """What the kernel does with a packet (or a JSON Lines file of packets) under RULESET: an
    iptables-save dump, a script, or an nftables ruleset (nft JSON or an nft text file)."""
    if (spec is None) == (batch is None):
        raise click.UsageError("give exactly one of --packet and --packets")
    run = _runner(ruleset, fmt, how)
    if spec is not None:
        sys.exit(_one(run, spec, as_json))
    sys.exit(_batch(run, batch, _packet_lines(batch), as_json))


def _runner(path: str, fmt: str, how: Invocation) -> Runner:
    """The simulator for the file's kind: nftables (semantics/nft.py) or iptables (semantics/explain.py)."""
    from ..parse.nft import looks_like_nft

    text = read_text(path)
    if fmt == "nft" or (fmt == "auto" and looks_like_nft(text.removeprefix(BOM))):
        from ..semantics.nft import NftSimulator

        return NftSimulator(load_nft(path, text)).run
    from ..semantics.explain import Explainer

    return Explainer(read(text, path, fmt, how=how).rulesets).run


def _packet_lines(path: str) -> list[bytes]:
    """The lines of a packets file (`-`: stdin) as bytes: each is decoded on its own, so a bad byte costs
    only its line."""
    if path == "-":
        return click.get_binary_stream("stdin").read().splitlines()
    return read_bytes(path, "packets file").splitlines()


def _one(run: Runner, spec: str, as_json: bool) -> int:
    """A packet spec that is no packet is a usage error (exit 2): the ruleset is the input."""
    from ..semantics.explain import parse_spec

    try:
        res = run(parse_spec(spec))
    except SpecError as e:
        click.echo(f"--packet:1:{e.col}: error: {e}", err=True)
        return UNUSABLE
    if as_json:
        click.echo(json.dumps(res.to_json()))
        return OK
    click.echo(f"packet: {spec}")
    click.echo(f"conntrack state: {res.ctstate or 'not tracked (no rule loads conntrack)'}")
    for step in res.trace:
        where = f"{step['table']}/{step['chain']}"
        if "family" in step:  # an nftables chain: named by family, table, chain and rule handle
            where = f"{step['family']} {step['table']} {step['chain']}"
            if "policy" in step:
                click.echo(f"  {where} policy {step['policy']}")
            else:
                click.echo(f"  {where} handle {step['handle']} -> {step['verdict'] or '(no verdict)'} "
                           f"{step.get('origin') or ''}".rstrip())
        elif "policy" in step:
            click.echo(f"  {where} policy {step['policy']}")
        else:
            click.echo(f"  {where} rule {step['rule']:<4} -> {step['target'] or '(no target)':<12} "
                       f"{step.get('origin') or ''}")
    for note in res.notes:
        click.echo(f"   note: {note}")
    click.echo(f"verdict: {res.verdict}" + (f"  ({res.reason})" if res.reason else ""))
    click.echo(f"rules evaluated: {res.evaluated}")
    return OK


def _batch(run: Runner, name: str, lines: list[bytes], as_json: bool) -> int:
    """Every line answered in order; a line that is no packet spec (or not UTF-8) is answered with its
    error, `file:line:col: error: ...`, and the exit status is 2."""
    from ..semantics.explain import parse_spec

    bad = 0
    for n, raw in enumerate(lines, 1):
        try:
            line = decode(raw, name)
        except Unreadable as e:
            where = Origin(name, n, e.diagnostic.origin.col)
            out, bad = {"error": f"{where}: error: {e.diagnostic.message.removeprefix('cannot read input: ')}"}, bad + 1
        else:
            if not line.strip():
                continue
            try:
                out = run(parse_spec(line)).to_json()
            except SpecError as e:
                out, bad = {"error": f"{Origin(name, n, e.col)}: error: {e}"}, bad + 1
        click.echo(json.dumps(out) if as_json else f"{n}: {out.get('verdict', out.get('error'))}")
    return UNUSABLE if bad else OK
