"""nftables rulesets from their JSON form (libnftables-json(5)): `nft -j list ruleset`, or a JSON file of
objects and `add`/`create` commands. nft text files are never read here: the real nft turns them into
this JSON (kernel/nftfile.py), so stockade has no nft grammar of its own.

Each object keeps where it was read: the line and column of its `{` in the JSON text. Defects the
kernel would refuse (a rule for a chain never declared, a jump to a chain that does not exist, a set
that is not there) are errors at that position.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..model import Origin
from ..model.diagnostics import DiagnosedError, Diagnostic
from ..model.nftables import (
    CHAIN_TYPES,
    FAMILIES,
    HOOKS,
    PRIORITY_NAMES,
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    NftTable,
)
from .read import Unreadable

OBJECTS = ("table", "chain", "rule", "set", "map")
RuleKey = tuple[str, str, str, int]  # family, table, chain, handle
IGNORED = ("metainfo", "flowtable", "counter", "quota", "limit", "ct helper", "ct timeout",
           "ct expectation", "secmark", "synproxy")  # no packet meaning of their own here, or elements of a set
COMMANDS = ("add", "create")


class NftJsonError(DiagnosedError):
    """nft JSON that describes no ruleset the kernel would hold; printed `file:line:col: error: ...`."""


def _origin(text: str, offset: int, file: str) -> Origin:
    line = text.count("\n", 0, offset) + 1
    return Origin(file, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _items(text: str, file: str) -> list[tuple[Any, Origin]]:
    """The `nftables` array's objects with where each begins (json.loads keeps no positions, so the
    array is walked again with raw_decode)."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise Unreadable(Diagnostic("error", "json", "JSON nested deeper than stockade reads", Origin(file, 1, 1),
                                    "give `nft -j list ruleset` output")) from None
    except json.JSONDecodeError as e:
        raise Unreadable(Diagnostic("error", "json", f"not JSON: {e.msg}", Origin(file, e.lineno, e.colno),
                                    "give `nft -j list ruleset` output, or an nft text file")) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise Unreadable(Diagnostic("error", "json", "JSON without an `nftables` array", Origin(file, 1, 1),
                                    "give `nft -j list ruleset` output"))
    m = re.search(r'"nftables"\s*:\s*\[', text)
    dec = json.JSONDecoder()
    pos = m.end() if m else 0
    out = []
    for item in doc["nftables"]:
        while m and text[pos] in " \t\r\n,":
            pos += 1
        out.append((item, _origin(text, pos, file) if m else Origin(file, 1, 1)))
        if m:
            _, pos = dec.raw_decode(text, pos)
    return out


def _err(message: str, origin: Origin, hint: str | None = None) -> NftJsonError:
    return NftJsonError([Diagnostic("error", "nft-json", message, origin, hint)])


def _str(obj: dict, key: str, origin: Origin, what: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        raise _err(f"{what} has no `{key}`", origin)
    return v


def _flags(obj: dict, origin: Origin, what: str) -> frozenset[str]:
    flags = obj.get("flags") or []
    flags = [flags] if isinstance(flags, str) else flags
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise _err(f"{what}: `flags` must be a name or a list of names", origin)
    return frozenset(flags)


def _handle(obj: dict) -> int | None:
    h = obj.get("handle")
    return h if isinstance(h, int) and not isinstance(h, bool) else None


def _prio(value: Any, origin: Origin) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([a-z]+)\s*(?:([+-])\s*(\d+))?\s*", value)
        if m and m.group(1) in PRIORITY_NAMES:
            delta = int(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1)
            return PRIORITY_NAMES[m.group(1)] + delta
        if re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    raise _err(f"chain priority {value!r} is neither a number nor a priority name", origin)


class _Reader:
    def __init__(self, file: str, positions: bool, origins: dict[RuleKey, Origin] | None = None):
        self.rs = NftRuleset(source=file)
        self.positions = positions
        self.origins = origins or {}

    def at(self, origin: Origin) -> Origin | None:
        """Where an object is kept as read from (errors name the place in the JSON either way)."""
        return origin if self.positions else None

    def table_of(self, obj: dict, origin: Origin, what: str) -> NftTable:
        family = _str(obj, "family", origin, what)
        name = _str(obj, "table", origin, what)
        table = self.rs.table(family, name)
        if table is None:
            raise _err(f"{what} for table {family} {name}, which is not declared before it", origin)
        return table

    def add(self, kind: str, obj: Any, origin: Origin) -> None:
        if not isinstance(obj, dict):
            raise _err(f"`{kind}` must be an object", origin)
        if kind == "table":
            self.table(obj, origin)
        elif kind == "chain":
            self.chain(obj, origin)
        elif kind == "rule":
            self.rule(obj, origin)
        else:
            self.set(kind, obj, origin)

    def table(self, obj: dict, origin: Origin) -> None:
        family = _str(obj, "family", origin, "table")
        if family not in FAMILIES:
            raise _err(f"unknown table family `{family}`", origin, f"one of {', '.join(FAMILIES)}")
        name = _str(obj, "name", origin, "table")
        if self.rs.table(family, name) is None:
            self.rs.tables.append(NftTable(family, name, _handle(obj), origin=self.at(origin),
                                           flags=_flags(obj, origin, f"table {name}")))

    def chain(self, obj: dict, origin: Origin) -> None:
        name = _str(obj, "name", origin, "chain")
        table = self.table_of(obj, origin, f"chain {name}")
        chain = table.chains.setdefault(name, NftChain(name, _handle(obj), origin=self.at(origin)))
        if "hook" not in obj:
            return
        hook = obj["hook"]
        if table.analysed and hook not in HOOKS:
            raise _err(f"chain {name}: `{hook}` is no hook of the {table.family} family", origin)
        ctype = obj.get("type", "filter")
        if ctype not in CHAIN_TYPES:
            raise _err(f"chain {name}: unknown chain type `{ctype}`", origin)
        policy = obj.get("policy", "accept")
        if policy not in ("accept", "drop"):
            raise _err(f"chain {name}: policy must be accept or drop, not {policy!r}", origin)
        chain.type, chain.hook, chain.policy = ctype, hook, policy
        chain.prio = _prio(obj.get("prio", 0), origin)

    def rule(self, obj: dict, origin: Origin) -> None:
        table = self.table_of(obj, origin, "rule")
        chain_name = _str(obj, "chain", origin, "rule")
        chain = table.chains.get(chain_name)
        if chain is None:
            raise _err(f"rule for chain {chain_name}, which table {table.label} does not declare before it", origin)
        expr = obj.get("expr")
        if not isinstance(expr, list) or not all(isinstance(s, dict) and len(s) == 1 for s in expr):
            raise _err("a rule's `expr` must be a list of statements, each an object with one key", origin)
        comment = obj.get("comment")
        handle = _handle(obj)
        chain.rules.append(NftRule(handle, tuple(expr), comment if isinstance(comment, str) else None,
                                   self.at(origin) or self.origins.get((table.family, table.name, chain_name, handle))))

    def set(self, kind: str, obj: dict, origin: Origin) -> None:
        name = _str(obj, "name", origin, kind)
        table = self.table_of(obj, origin, f"{kind} {name}")
        key = obj.get("type")
        keys = tuple(key) if isinstance(key, list) else (key,)
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise _err(f"{kind} {name}: `type` must name a datatype or a list of them", origin)
        data = obj.get("map") if kind == "map" else None
        if kind == "map" and not isinstance(data, str):
            raise _err(f"map {name}: `map` must name the value's datatype", origin)
        elems = obj.get("elem") or []
        if not isinstance(elems, list):
            raise _err(f"{kind} {name}: `elem` must be a list", origin)
        limits = {k: obj.get(k) for k in ("timeout", "size")}
        for k, v in limits.items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise _err(f"{kind} {name}: `{k}` must be a whole number", origin)
        table.sets[name] = NftSet(name, keys, _handle(obj), _flags(obj, origin, f"{kind} {name}"), list(elems), data,
                                  self.at(origin), limits["timeout"], limits["size"])

    def element(self, obj: Any, origin: Origin) -> None:
        """`add element`: more elements for a set declared before."""
        if not isinstance(obj, dict):
            raise _err("`element` must be an object", origin)
        name = _str(obj, "name", origin, "element")
        table = self.table_of(obj, origin, f"element of {name}")
        if name not in table.sets or not isinstance(obj.get("elem"), list):
            raise _err(f"elements for set {name}, which table {table.label} does not declare before them", origin)
        table.sets[name].elements.extend(obj["elem"])

    def check_references(self) -> None:
        """Jumps, gotos and set references must name what the table declares, as the kernel insists."""
        for table in self.rs.tables:
            for chain in table.chains.values():
                for rule in chain.rules:
                    for target in _targets(rule.expr):
                        if not isinstance(target, str) or target not in table.chains:
                            raise _err(f"chain {chain.name}: jump or goto to chain {target}, which table "
                                       f"{table.label} does not have", rule.origin or Origin(self.rs.source, 1))
                    for ref in _set_refs(rule.expr):
                        if ref not in table.sets:
                            raise _err(f"chain {chain.name}: set @{ref} is not declared in table {table.label}",
                                       rule.origin or Origin(self.rs.source, 1))


def _walk(node: Any):
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _walk(v)


def _targets(expr: Any) -> list[str]:
    out = []
    for node in _walk(expr):
        if isinstance(node, dict):
            for verb in ("jump", "goto"):
                if isinstance(node.get(verb), dict):
                    out.append(node[verb].get("target"))
    return out


def _set_refs(expr: Any) -> list[str]:
    """Names of sets looked up: the right side of a match, a map's or vmap's data."""
    out = []
    for node in _walk(expr):
        if not isinstance(node, dict):
            continue
        for holder, key in (("match", "right"), ("vmap", "data"), ("map", "data")):
            inner = node.get(holder)
            if isinstance(inner, dict) and isinstance(inner.get(key), str) and inner[key].startswith("@"):
                out.append(inner[key][1:])
    return out


_NFT_TEXT = re.compile(r"^\s*(?:#!\S*\bnft\b|flush\s+ruleset\b|(?:add\s+)?table\s+(?:ip|ip6|inet|arp|bridge|netdev)"
                       r"\s+\S+)", re.MULTILINE)
_NFT_JSON = re.compile(r'^\s*\{\s*"nftables"\s*:')


def looks_like_nft(text: str) -> bool:
    """nft JSON, or an nft text file (a `table FAMILY NAME`, `flush ruleset` or an nft #! line); a file
    whose #! line names another interpreter (a shell script feeding nft a here-document) is not one."""
    if text.startswith("#!") and "nft" not in text.split("\n", 1)[0]:
        return False
    return bool(_NFT_JSON.match(text) or _NFT_TEXT.search(text))


def is_json(text: str) -> bool:
    return bool(_NFT_JSON.match(text))


def read_nft_json(text: str, file: str, positions: bool = True,
                  origins: dict[RuleKey, Origin] | None = None) -> NftRuleset:
    """An NftRuleset from nft JSON; Unreadable if it is not nft JSON, NftJsonError at a defect.
    positions=False: the JSON is nft's listing of another file (kernel/nftfile.py), whose places in
    the listing would mean nothing to the user, so objects keep none but the rules' places in that file
    (`origins`, by family, table, chain and handle)."""
    reader = _Reader(file, positions, origins)
    for item, origin in _items(text, file):
        if not isinstance(item, dict) or len(item) != 1:
            raise _err("each element of `nftables` must be an object with one key", origin)
        (kind, obj), = item.items()
        if kind in COMMANDS:
            if not isinstance(obj, dict) or len(obj) != 1:
                raise _err(f"`{kind}` must hold one object", origin)
            (kind, obj), = obj.items()
        elif kind == "flush" and obj == {"ruleset": None}:
            reader.rs.tables.clear()
            continue
        if kind in OBJECTS:
            reader.add(kind, obj, origin)
        elif kind == "element":
            reader.element(obj, origin)
        elif kind not in IGNORED:
            raise _err(f"`{kind}` is not something stockade reads from nft JSON", origin,
                       "load the file with nft in a throwaway namespace and give `nft -j list ruleset`")
    try:
        reader.check_references()
    except RecursionError:
        raise _err("a rule's statements are nested deeper than stockade reads", Origin(file, 1, 1)) from None
    return reader.rs
