"""nft text files (`/etc/nftables.conf` style: include, define, flush ruleset, comments) read by the real
nft, so stockade never parses nft's grammar itself: the file is loaded into a throwaway namespace with
`nft -f` and listed back with `nft -j list ruleset`, which parse/nft.py reads.

What comes back is what the kernel holds (defines expanded, includes followed, anonymous sets made),
with handles. The kernel keeps no source position, but nft's evaluation trace (`--debug=eval`) names
the place of every command it evaluates, in the order it sends them, and its echo (`-e -a`) names the
handle the kernel gave each rule, in the same order: the n-th rule of the one is the n-th of the other.
A rule is named by its `file:line:col` where the two agree in number; else (a file nft evaluates in a
way this pairing does not know, or whose trace is too long to read) by table, chain and handle only,
never by a guessed line.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..model import Origin
from ..model.diagnostics import DiagnosedError, Diagnostic
from ..model.nftables import NftRuleset
from ..parse.nft import RuleKey, read_nft_json
from .netns import Netns

_NFT_ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)(?:-\d+)?: Error: (?P<msg>.*)$", re.MULTILINE)


class NftFileError(DiagnosedError):
    """nft refused the file; each of its errors, `file:line:col: error: ...`."""


# One record of nft's evaluation trace: `FILE:LINE:COL-END: Evaluate WHAT`, then the source line.
_EVALUATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)(?:-[\d:]+)?: Evaluate (?P<what>\w+)\n(?P<src>.*)$",
                        re.MULTILINE)
# nft's trace repeats a statement's whole source line for each value it evaluates: a set of 100,000
# elements written on one line would print about 140 GB. Past this, rules keep their handles only.
TRACE_MAX = 64 << 20
_RULE_COMMAND = re.compile(r"(?:(?:add|insert|replace|create)\s+)?rule\s")


def read_nft_file(path: str, devices: Sequence[str] = ()) -> NftRuleset:
    """An nft text file as the kernel holds it, each rule named by its place in the file (or its handle)."""
    listing, origins = _load(path, devices)
    return read_nft_json(listing, path, positions=False, origins=origins)


def nft_json_of_file(path: str, devices: Sequence[str] = ()) -> str:
    """The `nft -j list ruleset` JSON of an nft text file (see _load)."""
    return _load(path, devices)[0]


def _load(path: str, devices: Sequence[str]) -> tuple[str, dict[RuleKey, Origin]]:
    """The `nft -j list ruleset` JSON of an nft text file, loaded into a throwaway namespace (the file's
    `flush ruleset` flushes only that namespace), and its rules' places. Relative includes resolve from
    the file's directory. A trace longer than TRACE_MAX is cut off, and the file loaded again without it."""
    where = Path(path).resolve()
    argv = ["-I", str(where.parent), "-f", str(where)]
    with _namespace(devices) as ns:
        traced = _traced(ns, argv)
        if traced is not None:
            code, out, err = traced
            if code != 0:
                raise NftFileError(_diagnostics(_EVALUATED.sub("", err), path, str(where)))
            return ns.run(["nft", "-j", "list", "ruleset"]).stdout, _origins(out, err, path, str(where))
    with _namespace(devices) as ns:
        proc = ns.run(["nft", *argv], check=False)
        if proc.returncode != 0:
            raise NftFileError(_diagnostics(proc.stderr, path, str(where)))
        return ns.run(["nft", "-j", "list", "ruleset"]).stdout, {}


@contextmanager
def _namespace(devices: Sequence[str]) -> Iterator[Netns]:
    """`devices`: interfaces of the machine the file was written for that it names where nft needs them to
    exist (`iif`/`oif`, which nft resolves to an index, a netdev chain's device); a veth of each name is
    made in the namespace first, and the listing names them back as the file did."""
    with Netns(lo_up=False) as ns:
        for n, dev in enumerate(devices):
            ns.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", f"skp{n}"])
        yield ns


def _traced(ns: Netns, argv: list[str]) -> tuple[int, str, str] | None:
    """nft's exit code, echo and evaluation trace for a load; None (nft killed) once the trace passes
    TRACE_MAX bytes."""
    with tempfile.TemporaryFile() as out:
        proc = ns.spawn(["nft", "--debug=eval", "-e", "-a", "-j", *argv], stdout=out, stderr=subprocess.PIPE)
        err = bytearray()
        with proc:
            while chunk := proc.stderr.read(1 << 16):
                err += chunk
                if len(err) > TRACE_MAX:
                    proc.kill()
                    return None
        out.seek(0)
        return proc.returncode, out.read().decode(errors="replace"), err.decode(errors="replace")


def _origins(stdout: str, stderr: str, path: str, resolved: str) -> dict[RuleKey, Origin]:
    """Each rule's place in the file, by (family, table, chain, handle): the trace's rule commands paired
    in order with the echo's rules. A trace record is a rule's if its text is a rule command, or if the
    next record (its first statement) begins where it begins (a table, chain or set in a block is
    named at its name, and its first inner record lies elsewhere)."""
    records = [(m.group("file"), int(m.group("line")), int(m.group("col")), m.group("what"), m.group("src"))
               for m in _EVALUATED.finditer(stderr)]
    places = []
    for i, (file, line, col, what, src) in enumerate(records):
        if what not in ("add", "insert", "replace", "create"):
            continue
        nxt = records[i + 1][:3] if i + 1 < len(records) else None
        if _RULE_COMMAND.match(src[col - 1:]) or nxt == (file, line, col):
            places.append(Origin(path if file == resolved else file, line, col))
    echoed = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith('{"nftables"')), "")
    try:
        items = json.loads(echoed)["nftables"] if echoed else []
    except (ValueError, KeyError, TypeError):
        return {}
    rules = [(r.get("family"), r.get("table"), r.get("chain"), r.get("handle")) for item in items
             if isinstance(item, dict) for cmd, obj in item.items() if cmd in ("add", "insert", "replace")
             and isinstance(obj, dict) for r in [obj.get("rule")] if isinstance(r, dict)]
    return dict(zip(rules, places, strict=True)) if len(rules) == len(places) else {}


def _diagnostics(stderr: str, path: str, resolved: str) -> list[Diagnostic]:
    """nft's own error lines as diagnostics (the file named as the user named it)."""
    out = []
    for m in _NFT_ERROR.finditer(stderr):
        file = path if m.group("file") == resolved else m.group("file")
        out.append(Diagnostic("error", "nft", m.group("msg").strip(), Origin(file, int(m.group("line")),
                                                                           int(m.group("col"))),
                              "nft -c -f FILE shows the same; fix the file and read it again"))
    if not out:
        out.append(Diagnostic("error", "nft", f"nft refused the file: {stderr.strip()[:500] or 'no message'}",
                              Origin(path, 1, 1)))
    return out
