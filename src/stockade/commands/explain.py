"""`stockade explain`: what the kernel does with a packet (or a file of packets) under a ruleset."""
from __future__ import annotations

import sys
from collections.abc import Callable

import click
import orjson

from ..model import Origin
from ..model.diagnostics import Unreadable
from ..model.packet import Packet, SpecError
from ..parse.read import decode
from . import options
from .exitcodes import OK, UNUSABLE
from .inputs import Loaded, Source, load, read_bytes

Runner = Callable[[Packet], object]  # a packet to its simulate.Result (or semantics.nft.NftResult)


@click.command("explain")
@click.argument("ruleset", required=False)
@click.option("--packet", "spec", help='JSON object or short form, e.g. "tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN"')
@click.option("--packets", "batch", metavar="FILE", help="JSON Lines file (- for stdin): one packet spec per line")
@options.as_json("machine-readable output (one line per packet in batch mode)")
@options.reading
def command(ruleset: str | None, spec: str | None, batch: str | None, as_json: bool, src: Source) -> None:
    """What the kernel does with a packet (or a JSON Lines file of packets) under RULESET (a dump, a
    script, a policy, an nftables ruleset: nft JSON or an nft text file) or the kernel's ruleset now
    (--live)."""
    if (spec is None) == (batch is None):
        raise click.UsageError("give exactly one of --packet and --packets")
    got = load(ruleset, src, nft=True)
    for d in got.builder.for_analysis():
        if d.severity == "error" or d.code == "unread-value":  # a refused rule is not in the ruleset explained
            click.echo(str(d), err=True)
    runner = _runner(got)
    if spec is not None:
        sys.exit(_one(runner.run, spec, as_json))
    sys.exit(_batch(runner, batch, _packet_lines(batch), as_json))


def _runner(got: Loaded):
    """The simulator for the input (its `run` a Runner): nftables base chains composed with the iptables
    tables beside them (semantics/nft.py), or the iptables rulesets alone (semantics/explain.py)."""
    if got.nft is not None:
        from ..semantics.nft import NftSimulator

        return NftSimulator(got.nft, got.rulesets or None)
    from ..semantics.explain import Explainer

    return Explainer(got.rulesets)


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
        click.echo(orjson.dumps(res.to_json()).decode())
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


FLUSH = 1 << 20  # bytes of answers written at a time (a million packets' traces would not fit in memory at once)
CLASSES = 1 << 17  # answers kept by packet class; the cache starts again when full
TRIAL = 4096  # packets walked before classes are given up if fewer than 1 in 16 of them was classwise


def _batch(runner, name: str, lines: list[bytes], as_json: bool) -> int:
    """Every line answered in order; a line that is no packet spec (or not UTF-8) is answered with its
    error, `file:line:col: error: ...`, and the exit status is 2. Answers go out through one buffer: a
    list of 4,096 answers freed at once can make glibc trim its heap each time (3 us a packet in a loop
    of orjson.dumps alone; a few per cent of a real batch). An iptables runner gives packets their class
    (semantics/classes.py): a packet of a class whose answer is known gets it without a walk."""
    from ..model.packet import from_json
    from ..semantics.explain import json_object, parse_spec

    bad = 0
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    stdout = click.get_binary_stream("stdout")
    buf = bytearray()
    run, classify, known, walked, kept = runner.run, getattr(runner, "key", None), {}, 0, 0
    for n, raw in enumerate(lines, 1):
        if len(buf) >= FLUSH:
            stdout.write(buf)
            buf.clear()
        key = None
        try:
            spec = json_object(raw)
            if spec is not None:
                if classify is not None and (key := classify(spec)) is not None:
                    try:
                        hit = known.get(key)
                    except TypeError:  # a list in a list: unhashable
                        hit = key = None
                    if hit is not None:
                        buf += hit if as_json else f"{n}: {hit}\n".encode()
                        continue
                out = run(from_json(spec)).to_json()
            else:
                line = decode(raw, name)
                if not line.strip():
                    continue
                out = run(parse_spec(line)).to_json()
        except Unreadable as e:
            where = Origin(name, n, e.diagnostic.origin.col)
            out, bad = {"error": f"{where}: error: {e.diagnostic.message.removeprefix('cannot read input: ')}"}, bad + 1
            key = None
        except SpecError as e:
            out, bad, key = {"error": f"{Origin(name, n, e.col)}: error: {e}"}, bad + 1, None
        if as_json:
            answer = dumps(out, option=newline)
            buf += answer
        else:
            answer = out.get("verdict", out.get("error"))
            buf += f"{n}: {answer}\n".encode()
        if key is not None:
            walked += 1
            if runner.classwise:
                kept += 1
                if len(known) >= CLASSES:
                    known.clear()
                known[key] = answer
            if walked == TRIAL and kept * 16 < walked:  # e.g. every packet meets a -m recent: keys cost, never pay
                classify = None
    stdout.write(buf)
    stdout.flush()
    return UNUSABLE if bad else OK
