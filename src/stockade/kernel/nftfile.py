"""nft text files (`/etc/nftables.conf` style: include, define, flush ruleset, comments) read by the real
nft, so stockade never parses nft's grammar itself: the file is loaded into a throwaway namespace with
`nft -f` and listed back with `nft -j list ruleset`, which parse/nft.py reads.

What comes back is what the kernel holds (defines expanded, includes followed, anonymous sets made),
with handles but without the file's line numbers: nft keeps no source position for a rule, so a
rule is named by table, chain and handle, never by a line of the text file.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..model import Origin
from ..model.diagnostics import DiagnosedError, Diagnostic
from .netns import Netns

_NFT_ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)(?:-\d+)?: Error: (?P<msg>.*)$", re.MULTILINE)


class NftFileError(DiagnosedError):
    """nft refused the file; each of its errors, `file:line:col: error: ...`."""


def nft_json_of_file(path: str, devices: Sequence[str] = ()) -> str:
    """The `nft -j list ruleset` JSON of an nft text file, loaded into a throwaway namespace (the file's
    `flush ruleset` flushes only that namespace). Relative includes resolve from the file's directory.
    `devices`: interfaces of the machine the file was written for that it names where nft needs them to
    exist (`iif`/`oif`, which nft resolves to an index, a netdev chain's device); a veth of each name is
    made in the namespace first, and the listing names them back as the file did."""
    where = Path(path).resolve()
    with Netns(lo_up=False) as ns:
        for n, dev in enumerate(devices):
            ns.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", f"skp{n}"])
        proc = ns.run(["nft", "-I", str(where.parent), "-f", str(where)], check=False)
        if proc.returncode != 0:
            raise NftFileError(_diagnostics(proc.stderr, path, str(where)))
        return ns.run(["nft", "-j", "list", "ruleset"]).stdout


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
