"""Stockade's part of a ruleset, as text: what it owns, what it saves, restores and compares.

nftables: the whole `table inet stockade` as `nft -s list` prints it (no counters).
iptables, per family: the filter table's built-in chain policies, every `stk-` chain with its
rules, and the hooks (rules of other chains that jump to an `stk-` chain), in iptables-save
syntax; plus the `stk-` ipsets as `ipset save` lines. Set names are logical (`stk-admins-ip4`);
live, each carries a generation suffix (`-a`, `-b`, `-c`) so a transaction can fill new sets while the
old rules still use the old ones (see transaction.py).
Other tools' chains and rules are never part of it.
"""
from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .backend import TABLE

if TYPE_CHECKING:  # the detached worker never compiles: it starts faster without the compiler
    from ..model import IPSet
    from ..policy.compile import CompiledPolicy

HOOK_COMMENT = "stockade"
BUILTIN = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
POLICY_CHAINS = ("INPUT", "FORWARD", "OUTPUT")  # filter policies: stockade sets them and restores them
_GEN = re.compile(r"(stk-\S+?)-[abc](?=\s|$)")


def logical(text: str) -> str:
    """Set names without their generation suffix."""
    return _GEN.sub(r"\1", text)


@dataclass
class OwnedPart:
    backend: str
    text: dict[str, str] = field(default_factory=dict)  # "nft" | "4", "6", "sets"

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.text, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def empty(self) -> bool:
        if self.backend == "nftables":
            return not self.text.get("nft", "").strip()
        return not any(parse_owned(self.text.get(f, "")).get(t, OwnedTable()).chains
                       for f in ("4", "6") for t in parse_owned(self.text.get(f, "")))

    def to_json(self) -> dict:
        return {"backend": self.backend, "text": self.text, "digest": self.digest}

    @classmethod
    def from_json(cls, data: dict) -> OwnedPart:
        return cls(data["backend"], dict(data["text"]))


def nft_canonical(text: str, changes: Mapping[str, tuple[Iterable[str], Iterable[str]]] | None = None) -> str:
    """nft's listing with each set's elements on one line, in one order and spelling: nft wraps and orders
    them its own way, and a record changed by a known difference (a feed update: `changes`, set name ->
    (members deleted, members added)) must be that listing without listing a million members again.
    Still nft syntax, loadable as it is."""
    out: list[str] = []
    changes = dict(changes or {})
    lines = iter(text.splitlines())
    name = None
    for line in lines:
        s = line.strip()
        if line.startswith("\tset ") and s.endswith("{"):
            name = s.split()[1]
        elif name and s.startswith("elements = {"):
            listed = [s]
            while not listed[-1].endswith("}"):
                listed.append(next(lines).strip())
            members = _members(name, " ".join(listed)[len("elements = {"):-1], changes)
            if members:
                out.append(f"\t\telements = {{ {', '.join(members)} }}")
            continue
        elif name and line == "\t}":
            if name in changes:  # a set listed without elements gains its first ones
                if members := _members(name, "", changes):
                    out.append(f"\t\telements = {{ {', '.join(members)} }}")
            name = None
        out.append(line)
    return "\n".join(out) + "\n"


def _members(name: str, listed: str, changes: dict) -> list[str]:
    """A set's elements (`listed`: the text between the braces), changed, in one order: sorted as text.
    A patched record's are sorted already, so re-sorting them with the added ones is one merge."""
    gone, new = changes.pop(name, ((), ()))
    members = [m for m in (e.strip() for e in listed.split(",")) if m]
    if ":" in listed:
        members = list(map(_spelling, members))
    if gone:
        gone = set(map(_spelling, gone))
        members = [m for m in members if m not in gone]
    if new:
        members += set(map(_spelling, new)).difference(members)
    return sorted(members)


def _spelling(member: str) -> str:
    """An element as nft prints it; IPv6 in Python's spelling (nft writes `::ffff:1.2.3.4` its own way)."""
    m = member.strip()
    if ":" in m and " " not in m:
        with contextlib.suppress(ValueError):
            if "-" in m:
                return "-".join(str(ipaddress.ip_address(a)) for a in m.split("-", 1))
            return str(ipaddress.ip_network(m, strict=False) if "/" in m else ipaddress.ip_address(m))
    return m


@dataclass
class OwnedTable:
    policies: dict[str, str] = field(default_factory=dict)
    chains: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)  # "-A CHAIN ... -j stk-x"
    rules: list[str] = field(default_factory=list)  # "-A stk-x ..."


def _jumps_to_stk(line: str) -> bool:
    return re.search(r" -[jg] stk-\S+$", line) is not None or re.search(r" -[jg] stk-\S+ ", line) is not None


def parse_owned(text: str) -> dict[str, OwnedTable]:
    """iptables-save text (live or rendered) -> stockade's part per table; other lines are dropped."""
    tables: dict[str, OwnedTable] = {}
    cur: OwnedTable | None = None
    name = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            name = line[1:].strip()
            cur = tables.setdefault(name, OwnedTable())
        elif cur is None:
            continue
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            if chain.startswith("stk-"):
                cur.chains.append(chain)
            elif policy != "-" and name == "filter" and chain in POLICY_CHAINS:
                cur.policies[chain] = policy
        elif line.startswith("-A "):
            chain = line.split()[1]
            if chain.startswith("stk-"):
                cur.rules.append(line)
            elif _jumps_to_stk(line):
                cur.hooks.append(line)
    tables.setdefault("filter", OwnedTable())
    for c in POLICY_CHAINS:
        tables["filter"].policies.setdefault(c, "ACCEPT")
    return {n: t for n, t in tables.items() if n == "filter" or t.chains or t.hooks}


def owned_text(tables: dict[str, OwnedTable]) -> str:
    """The canonical text of a part: tables sorted, policies, chains (sorted), hooks (sorted), rules (by
    chain, sorted; each chain's in order). iptables-save lists chains in its own order, and `desired` adds
    chains (stk-input, the Docker ones) after the compiled ones: one order makes the same part one text."""
    out = []
    for name in sorted(tables):
        t = tables[name]
        out.append(f"*{name}")
        out += [f":{c} {p}" for c, p in sorted(t.policies.items())]
        out += [f":{c} -" for c in sorted(t.chains)]
        out += sorted(t.hooks)
        out += sorted(t.rules, key=lambda r: r.split()[1])
        out.append("COMMIT")
    return logical("\n".join(out) + "\n")


def own_iptables(save_text: str) -> str:
    """Stockade's part of a live ruleset. A name proves nothing (an admin may call a chain `stk-x`):
    stockade's are the `stk-` chains reachable from its hooks, which carry its comment."""
    return owned_text({n: _proven(t) for n, t in parse_owned(save_text).items()})


def _proven(t: OwnedTable) -> OwnedTable:
    hooks = [h for h in t.hooks if f"--comment {HOOK_COMMENT} " in h]
    reach, todo = set(), [h.split()[-1] for h in hooks]
    while todo:
        c = todo.pop()
        if c not in reach:
            reach.add(c)
            todo += [m for r in t.rules if r.split()[1] == c for m in re.findall(r" -[jg] (stk-\S+)", r)]
    return OwnedTable(t.policies, [c for c in t.chains if c in reach], hooks,
                      [r for r in t.rules if r.split()[1] in reach])


def own_ipsets(save_text: str, used: str | None = None) -> str:
    """`ipset save` output -> stockade's sets, logical names, members sorted; with `used` (stockade's
    rules), only the sets those rules match on (a set named `stk-` by someone else is not stockade's).
    The members of a set with timeouts (the ban sets, kernel/bans.py) are state, not part of the part."""
    names = None if used is None else set(re.findall(r"--match-set (stk-\S+)", logical(used)))
    creates, adds = _by_set(save_text, names) or _by_line(save_text, names)
    return "\n".join(sorted(creates) + sorted(set(adds))) + ("\n" if creates else "")


def _by_line(save_text: str, names: set[str] | None) -> tuple[list[str], list[str]]:
    timed = set(re.findall(r"^create (stk-\S+) .* timeout \d+", save_text, re.MULTILINE))
    creates, adds = [], []
    for line in save_text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].startswith("stk-") and (names is None or logical(words[1]) in names):
            if words[0] != "create" and words[1] in timed:
                continue
            (creates if words[0] == "create" else adds).append(logical(line.strip()))
    return creates, adds


# What ipset save never prints and str.split reads as _by_set does not: blank lines, spaces other than one
# between words, any other (ASCII) whitespace.
_ODD_SPACE = (" \n", "\n\n", "\n ", "  ", "\t", "\r", "\f", "\v", "\x1c", "\x1d", "\x1e", "\x1f")


def _by_set(save_text: str, names: set[str] | None) -> tuple[list[str], list[str]] | None:
    """_by_line's answer, a set at a time, when the text is as `ipset save` prints it: each set's create,
    then its adds (a million of them renamed by one replace, not split and renamed a line at a time);
    None for any other shape."""
    text = save_text.rstrip("\n")
    if not text.isascii() or any(odd in text for odd in _ODD_SPACE) or text.startswith(" ") or text.endswith(" "):
        return None
    pieces = ("\n" + text).split("\ncreate ")
    if pieces[0]:
        return None
    sets = []
    for piece in pieces[1:]:
        head, _, body = piece.partition("\n")
        name = head.split(" ", 1)[0]
        prefix = f"\nadd {name} "
        body = "\n" + body if body else ""
        if body.count("\n") != body.count(prefix) or body.count("stk-") != body.count(prefix) * name.count("stk-"):
            return None  # another set's lines among these, or a member that would be renamed too
        if name.startswith("stk-") and (names is None or logical(name) in names):
            sets.append((name, head, body))
    timed = {name for name, head, _ in sets if re.match(r"\S+ .* timeout \d+", head)}
    adds: list[str] = []
    for name, _, body in sets:
        if body and name not in timed:
            adds += body.replace(f"\nadd {name} ", f"\nadd {logical(name)} ").split("\n")[1:]
    return [logical(f"create {head}") for _, head, _ in sets], adds


def hook_line(table_chain: str, target: str) -> str:
    return f"-A {table_chain} -m comment --comment {HOOK_COMMENT} -j {target}"


def desired(c: CompiledPolicy, backend: str, docker: dict[int, bool]) -> OwnedPart:
    """The part a compiled policy asks for. iptables: the built-in chains' rules become hooks into
    `stk-` chains (the compiler's jumps keep their chain, other rules move into stk-<chain>), so
    stockade never appends to a built-in chain anything but one stable hook per chain; where a
    DOCKER-USER chain exists, a hook there sends packets that arrive on the policy's interfaces
    through stk-docker-in: the inbound checks with ACCEPT turned into RETURN and ports read from the
    connection's original destination (the published port), so the policy can only drop what Docker
    forwards, and Docker's own chains still decide what is published."""
    from ..model import Family
    from ..render.save import render_save

    if backend == "nftables":
        from ..render.nft import render_nft
        return OwnedPart(backend, {"nft": render_nft(c.rulesets, TABLE).split("\n", 2)[2]})
    text = {}
    for family in (Family.IPV4, Family.IPV6):
        tables = parse_owned(render_save(c.rulesets[family]))
        raw = _builtin_rules(render_save(c.rulesets[family]))
        for tname, chains in raw.items():
            t = tables.setdefault(tname, OwnedTable())
            for chain, lines in chains.items():
                jumps = [ln for ln in lines if _jumps_to_stk(ln)]
                if len(lines) == 1 and jumps and not re.search(r" -[sdiop] ", lines[0]):
                    t.hooks.append(hook_line(chain, lines[0].split()[-1]))
                    continue
                own = f"stk-{chain.lower()}" if tname == "filter" else f"stk-{tname}-{chain.lower()}"
                t.chains.append(own)
                t.hooks.append(hook_line(chain, own))
                t.rules += [f"-A {own} " + ln.split(" ", 2)[2] for ln in lines]
        tables = {n: OwnedTable(t.policies, t.chains, [h for h in t.hooks if not _compiled_hook(h)], t.rules)
                  for n, t in tables.items()}
        if docker.get(int(family)):
            _docker(tables["filter"], c.policy.server.interfaces)
        text[str(int(family))] = owned_text(tables)
    text["sets"] = ipset_part([*c.rulesets[Family.IPV4].sets.values(), *c.rulesets[Family.IPV6].sets.values()])
    return OwnedPart(backend, text)


def ipset_part(sets: Iterable[IPSet]) -> str:
    """Compiled sets as own_ipsets writes a live part's (creates, then adds, each sorted; a timed set's
    members are state), made from the model: a million members are sorted as members, one block per set,
    not rendered as lines to be split, renamed and sorted again. Lines sort as their sets, then members:
    a name followed by its space sorts before any longer name."""
    creates, members = [], {}
    for s in sets:
        if not s.name.startswith("stk-"):
            continue
        creates.append(logical(" ".join(["create", s.name, s.type, *s.options])))
        if not re.search(r" timeout \d+", creates[-1].split(" ", 2)[2]):
            members.setdefault(logical(s.name), []).extend(s.members)
    adds = [f"add {n} " + f"\nadd {n} ".join(_unique_sorted(m)) for n, m in sorted(members.items()) if m]
    return "\n".join(sorted(creates) + adds) + ("\n" if creates else "")


def _unique_sorted(items: list[str]) -> list[str]:
    """`items` sorted, each once. A list is sorted as it lies, not through a set: a million strings sort
    in about half the time in the order they were read (and so lie in memory) than in a set's order."""
    out = sorted(items)
    if any(map(str.__eq__, out, itertools.islice(out, 1, None))):
        fresh = map(str.__ne__, itertools.islice(out, 1, None), out)  # each but the first: unlike the one before
        out = list(itertools.compress(out, itertools.chain((True,), fresh)))
    return out


def _compiled_hook(line: str) -> bool:
    """A jump the compiler wrote into a built-in chain (replaced by a stable hook_line)."""
    return f"--comment {HOOK_COMMENT} " not in line


def _builtin_rules(save_text: str) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and line.split()[1] in BUILTIN:
            out.setdefault(table, {}).setdefault(line.split()[1], []).append(line)
    return out


def _docker(t: OwnedTable, interfaces: list[str]) -> None:
    """stk-docker-in: INPUT's own checks (its established accept; its jumps to the fast chains for new
    connections are shortcuts past rules stk-in holds too, so they are left out), then stk-in's."""
    rules = [r for r in t.rules if r.split()[1] == "stk-input" and not _jumps_to_stk(r)]
    rules += [r for r in t.rules if r.split()[1] == "stk-in"]
    t.chains += ["stk-docker", "stk-docker-in"]
    t.rules += [f"-A stk-docker -i {i} -g stk-docker-in" for i in interfaces]
    t.rules += [re.sub(r" -j ACCEPT$", " -j RETURN", line) for r in rules
                for line in _published("-A stk-docker-in " + r.split(" ", 2)[2])]
    t.hooks.append(hook_line("DOCKER-USER", "stk-docker"))


def _published(rule: str) -> list[str]:
    """The rule with its destination-port test made on the port the client connected to (the
    connection's original destination), not the container's port Docker's DNAT rewrote it to."""
    m = re.search(r" -m multiport --dports (\S+)", rule)
    if m:
        return [rule.replace(m.group(0), f" -m conntrack --ctorigdstport {p}") for p in m.group(1).split(",")]
    m = re.search(r" -m (?:tcp|udp) --dport (\S+)(?= -m | -j |$)", rule)
    return [rule.replace(m.group(0), f" -m conntrack --ctorigdstport {m.group(1)}")] if m else [rule]
