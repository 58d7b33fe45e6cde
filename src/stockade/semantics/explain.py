"""`stockade explain`: run packet specs through a ruleset and print what happens."""
from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import click

from ..model import Family, Origin
from ..parse.command import Builder
from ..parse.read import NUL_NAME
from .packet import Packet, SpecError, from_json, from_short
from .simulate import Simulator


def parse_spec(text: str) -> Packet:
    """A packet from a JSON object or the short form; SpecError (with its column if known) otherwise."""
    indent = len(text) - len(text.lstrip())
    text = text.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"packet spec is not valid JSON: {e.msg}", col=indent + e.colno) from None
        if not isinstance(spec, dict):
            raise SpecError("packet spec must be a JSON object")
        return from_json(spec)
    return from_short(text)


class Explainer:
    """One simulator per family, created on first use; stateful memory persists across packets."""

    def __init__(self, b: Builder):
        self.b = b
        self.sims: dict[Family, Simulator] = {}

    def run(self, pkt: Packet):
        if pkt.family not in self.sims:
            rs = self.b.rulesets.get(pkt.family)
            if rs is None:
                raise SpecError(f"the ruleset has no {pkt.family.cmd} rules for an IPv{int(pkt.family)} packet")
            self.sims[pkt.family] = Simulator(rs)
        return self.sims[pkt.family].run(pkt)


def explain_one(b: Builder, spec: str, as_json: bool) -> int:
    try:
        pkt = parse_spec(spec)
        res = Explainer(b).run(pkt)
    except SpecError as e:
        click.echo(f"--packet:1:{e.col}: error: {e}", err=True)
        return 2
    if as_json:
        click.echo(json.dumps(res.to_json()))
        return 0
    click.echo(f"packet: {spec}")
    click.echo(f"conntrack state: {res.ctstate or 'not tracked (no rule loads conntrack)'}")
    for step in res.trace:
        where = f"{step['table']}/{step['chain']}"
        if "policy" in step:
            click.echo(f"  {where} policy {step['policy']}")
        else:
            click.echo(f"  {where} rule {step['rule']:<4} -> {step['target'] or '(no target)':<12} "
                       f"{step.get('origin') or ''}")
    for note in res.notes:
        click.echo(f"   note: {note}")
    click.echo(f"verdict: {res.verdict}" + (f"  ({res.reason})" if res.reason else ""))
    click.echo(f"rules evaluated: {res.evaluated}")
    return 0


def explain_batch(b: Builder, path: str, as_json: bool) -> int:
    """One result per line of a JSON Lines file (`-`: stdin); a bad line is an error `file:line:col: ...`
    in its place; exit 2 if any line is bad or the file cannot be read."""
    try:
        with open_input(path) as lines:
            return _batch(b, lines, path, as_json)
    except OSError as e:
        click.echo(f"{path}: error: cannot read input: {e.strerror or e}", err=True)
        return 2


@contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """The file's bytes, or stdin's for `-`; OSError (a NUL in the name included) if it cannot be opened."""
    if path == "-":
        yield click.get_binary_stream("stdin")
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except ValueError:
        raise OSError(errno.EINVAL, NUL_NAME) from None
    with f:
        yield f


def _batch(b: Builder, lines: IO[bytes], name: str, as_json: bool) -> int:
    ex = Explainer(b)
    bad = 0
    for n, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            where = Origin(name, n, len(raw[:e.start].decode("utf-8", "replace")) + 1)
            out, bad = {"error": f"{where}: error: byte 0x{raw[e.start]:02x} is not UTF-8"}, bad + 1
        else:
            if not line.strip():
                continue
            try:
                out = ex.run(parse_spec(line)).to_json()
            except SpecError as e:
                out, bad = {"error": f"{Origin(name, n, e.col)}: error: {e}"}, bad + 1
        click.echo(json.dumps(out) if as_json else f"{n}: {out.get('verdict', out.get('error'))}")
    return 2 if bad else 0
