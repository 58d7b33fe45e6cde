"""The one place a command reads its input: a file (bytes to text: no NUL bytes, UTF-8 with the
position of the first bad byte), the kind of input it holds, and the library call that loads each
kind, or the kernel's ruleset now (`--live`). Every reading command (parse, lint, explain, analyze,
diff, audit, lab) calls `load` and works on the `Loaded` it returns.

Kinds (`--from`, else detected by content): `policy` (a stockade policy, compiled in memory), `save`
(an iptables-save dump / iptables-restore input), `script` (a shell script or a pasted tutorial),
`nft` (nftables input: recognised, not yet readable), `live` (iptables-save, ip6tables-save and
`ipset save` in this or a named network namespace). `--ipsets FILE` gives a dump or script the
sets its `-m set` rules look up (`ipset save` format); `--family` keeps one family.

Unreadable input raises InputError or model.diagnostics.Unreadable (exit 2): a file that is not text, not
a kind stockade reads (JSON, an nftables ruleset, prose), or a dump iptables-restore refuses whole
where the command needs all of it; defects inside a readable file are the loaders' own diagnostics
and errors (PolicyError, parse diagnostics).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from ..files import NUL_NAME
from ..model import Family, IPSet, Origin, Ruleset
from ..model.diagnostics import Diagnostic, StockadeError, Unreadable
from ..parse.command import Builder
from ..parse.ipset import add_ipsets, read_ipsets
from ..parse.nft import is_json
from ..parse.read import BOM, decode, guess_format, read
from ..parse.save import read_save
from ..parse.script import Invocation, is_script, line_kind

if TYPE_CHECKING:
    from ..model.nftables import NftRuleset
    from ..policy.compile import CompiledPolicy

FROM = ("auto", "policy", "save", "script", "nft", "live")
READERS = "an iptables-save dump, a shell script or a stockade policy"


class InputError(StockadeError):
    """A file that cannot be read at all; printed as `file: error: cannot read ...` (bytes that are not
    text are model.diagnostics.Unreadable, with their line and column)."""

    code = "unreadable"

    def __init__(self, path: str, reason: str, what: str = "input"):
        super().__init__(f"cannot read {what}: {reason}")
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: error: {self.message}"


MAX_INPUT = 256 << 20  # a 1M-entry ipsets file or a 200k-rule dump is a few dozen MiB


def read_bytes(path: str, what: str = "input") -> bytes:
    """The file's bytes (a FIFO from `<(...)` too), at most MAX_INPUT of them (a device such as
    /dev/zero never ends); InputError if it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT + 1)
        if len(data) > MAX_INPUT:
            raise InputError(path, f"larger than {MAX_INPUT >> 20} MiB", what)
        return data
    except ValueError:
        raise InputError(path, NUL_NAME, what) from None
    except OSError as e:
        raise InputError(path, e.strerror or str(e), what) from None


def read_text(path: str, what: str = "input") -> str:
    """The file's text; InputError if it cannot be read, Unreadable if it holds NUL bytes or is not UTF-8."""
    return decode(read_bytes(path, what), path)


@dataclass(frozen=True)
class Source:
    """How a command reads its input: the shared reading options (options.reading)."""

    fmt: str = "auto"  # one of FROM
    family: Family | None = None
    how: Invocation | None = None  # a script's arguments, environment and include path
    ipsets: str | None = None  # an `ipset save` file for a dump's or script's -m set rules
    netns: str | None = None  # with live: the namespace whose ruleset is read

    @property
    def live(self) -> bool:
        return self.fmt == "live"


@dataclass
class Loaded:
    """An input read: its rulesets per family and diagnostics (in `builder`), its name (the file, or
    `live@NETNS`), kind and text (a live ruleset's: the save tools' output)."""

    name: str
    kind: str
    text: str
    builder: Builder
    policy: CompiledPolicy | None = None
    nft: NftRuleset | None = None  # nftables tables (the iptables-nft ones beside them are in `builder`)

    @property
    def rulesets(self) -> dict[Family, Ruleset]:
        return self.builder.rulesets

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self.builder.diagnostics

    def side(self):
        """What the cell analyses (diff, analyze, lint's nft findings) take: the iptables rulesets, or the
        nftables tables composed with the iptables-nft tables beside them (semantics/nftcells.py)."""
        if self.nft is None:
            return self.rulesets
        from ..semantics.nftcells import NftOracle

        return NftOracle(self.nft, self.rulesets)


_POLICY = re.compile(r"^[ \t]*\[\[?[ \t]*(server|groups|defaults|log|icmp|protect|blocklist|allow|egress)[ \t]*[].]",
                     re.MULTILINE)
_NFT_FAMILY = r"(ip|ip6|inet|arp|bridge|netdev)"
_NFT = re.compile(rf"^[ \t]*(table[ \t]+({_NFT_FAMILY}[ \t]+)?[\w.-]+[ \t]*\{{|flush[ \t]+ruleset\b|"
                  rf"(add|create|delete|flush|insert)[ \t]+(table|chain|rule|set|map|element)[ \t]+{_NFT_FAMILY}\b)|"
                  r"\A#![^\n]*/nft\b", re.MULTILINE)


def kind_of(path: str, text: str) -> str:
    """The kind a file holds by its name and content: policy, save, nft, script, or what else it is
    (json, text: kinds stockade does not read). A `#!` line decides first (a script may write a
    policy or an nft file in a here-document), then the formats that cannot be mistaken for prose."""
    text = text.removeprefix(BOM)
    if path.endswith(".toml"):
        return "policy"
    if is_script(text):
        return "nft" if _NFT.match(text) else "script"
    if guess_format(text) == "save":
        return "save"
    if _NFT.search(text):
        return "nft"
    if _POLICY.search(text):
        return "policy"
    if is_json(text):
        return "nft"  # `nft -j list ruleset`
    if text.lstrip()[:1] in ("{", "["):
        try:
            json.loads(text)
            return "json"
        except ValueError:
            pass
    if not text.strip() or path.endswith(".sh"):
        return "script"
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    ends = starts[1:] + [len(text)]
    if any(line_kind(text, s, e) != "prose" for s, e in zip(starts, ends)):
        return "script"
    return "text"


def load(path: str | None, src: Source = Source(), whole: bool = False, shared_sets: bool = False,
         nft: bool = False) -> Loaded:
    """Read `path` (or, for `--from live`, the kernel) as `src` says. `whole`: a dump iptables-restore
    would refuse whole is Unreadable (a command that compares rulesets needs all of it); else its
    errors are diagnostics, as a script's bad lines are. `shared_sets`: `src.ipsets` is for the dumps
    and scripts among several inputs, a policy keeps its own sets (else --ipsets with a policy is an error).
    `nft`: the command reads nftables (semantics/nft.py); for the others nftables input is exit 2."""
    if src.live:
        if path is not None:
            raise click.UsageError(f"--live reads the kernel's ruleset: give no file ({path})")
        if src.ipsets is not None:
            raise click.UsageError("--live reads the kernel's own sets; --ipsets is for a dump or a script")
        return _load_live(src, nft)
    if path is None:
        raise click.UsageError("give a file to read, or --live for the kernel's ruleset")
    text = read_text(path)
    kind = kind_of(path, text) if src.fmt == "auto" else src.fmt
    if kind == "policy":
        if src.ipsets is not None and not shared_sets:
            raise InputError(path, "a policy defines its own sets; --ipsets is for a dump or a script")
        c = load_policy(path, text)
        b = Builder(_keep(c.rulesets, src.family), list(c.diagnostics))
        return Loaded(path, kind, text, b, c)
    if kind == "nft":
        _nft_readable(path, text, nft)
        return Loaded(path, kind, text, Builder(), nft=load_nft(path, text))
    if kind not in ("save", "script"):
        what = {"json": "a JSON document"}.get(kind, "text with no iptables command, iptables-save table or "
                                               "policy section")
        raise Unreadable(Diagnostic("error", "input-kind", f"cannot read input: {what} is not a ruleset",
                                    Origin(path, 1, 1), f"give {READERS}; --from save|script|policy says which "
                                    "a file is"))
    sets = _ipsets(src.ipsets)
    b = read(text, path, kind, src.family, src.how, Builder(known_sets=None if sets is None else frozenset(sets)))
    b.rulesets = _keep(b.rulesets, src.family)
    if whole and kind == "save":
        if errors := [d for d in b.for_analysis() if d.severity == "error"]:  # an anonymised value stays in
            raise Unreadable(*errors)  # iptables-restore would load none of it; a script's bad lines fail alone
    if sets:
        add_ipsets(b.rulesets, sets)
    return Loaded(path, kind, text, b)


def load_nft(path: str, text: str | None = None) -> NftRuleset:
    """An nftables ruleset: nft JSON (`nft -j list ruleset`) as it is, an nft text file through the real
    nft in a throwaway namespace (kernel/nftfile.py: needs root and nft; its rules carry handles and
    their lines in the file)."""
    from ..parse.nft import read_nft_json

    text = read_text(path) if text is None else text
    if is_json(text.removeprefix(BOM)):
        return read_nft_json(text.removeprefix(BOM), path)
    from ..kernel.nftfile import read_nft_file

    return read_nft_file(path)


def load_policy(path: str, text: str | None = None, feeds=None) -> CompiledPolicy:
    """A policy (read unless its text is given), compiled (its feeds from `feeds`, each feed's last good
    list); PolicyError with positioned diagnostics."""
    from ..policy.compile import compile_policy  # pydantic only when needed

    return compile_policy(path, read_text(path) if text is None else text, feeds)


def _ipsets(path: str | None) -> dict[str, IPSet] | None:
    return None if path is None else read_ipsets(read_text(path, "ipsets file"), path)


def _keep(rulesets: dict[Family, Ruleset], family: Family | None) -> dict[Family, Ruleset]:
    return {f: rs for f, rs in rulesets.items() if family is None or f is family}


def _nft_readable(name: str, text: str, ok: bool) -> None:
    """The one place a command that does not read nftables refuses it (exit 2, at its first nft line)."""
    if ok:
        return
    m = _NFT.search(text)
    at = Origin(name, text.count("\n", 0, m.start()) + 1 if m else 1, 1)
    raise Unreadable(Diagnostic("error", "input-kind", "cannot read input: this command does not read nftables "
                                "(explain, analyze, diff and lint do)", at, "give the iptables rulesets "
                                "(iptables-save), or ask explain, analyze, diff or lint"))


def _load_live(src: Source, nft: bool) -> Loaded:
    """The kernel's ruleset now (kernel/live.py read_live), read as the dumps and sets file it prints; with
    nftables tables of their own, those and the iptables-nft tables composed (kernel/live.py whole_ruleset)."""
    from ..kernel.host import Host
    from ..kernel.live import read_live, whole_ruleset

    host = Host(src.netns)
    live = read_live(host, [src.family] if src.family else list(Family))
    where = src.netns or "host"
    if live.nft:
        _nft_readable(f"nft-list-ruleset@{where}", live.nft, nft)
        tables, iptables = whole_ruleset(host)
        b = Builder(iptables)
        if live.ipsets:
            add_ipsets(b.rulesets, read_ipsets(live.ipsets, f"ipset-save@{where}"))
        return Loaded(f"live@{where}", "live", live.nft, b, nft=tables)
    sets = None if live.ipsets is None else read_ipsets(live.ipsets, f"ipset-save@{where}")
    b = Builder(known_sets=None if sets is None else frozenset(sets))
    for fam, text in live.save.items():
        read_save(text, f"{fam.cmd}-save@{where}", fam, b)
    if sets:
        add_ipsets(b.rulesets, sets)
    return Loaded(f"live@{where}", "live", "".join(live.save.values()), b)
