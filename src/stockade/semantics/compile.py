"""Chains compiled to Python functions, so a packet costs one comparison per rule it skips.

A 5,500-rule dump walked by an interpreter costs microseconds per rule; here each
rule is an `if` over local integers, and extension matches are called only when
the core fields already hold. Generated code refers to rule data only through
constant tables (`K[n]`, `F[n]`): no text from a ruleset is ever placed in the source.

A compiled chain is `f(p, env, iif, oif, out) -> verdict or None`: None means the
chain ended or RETURNed. `out` collects (table, chain, rule) for every rule whose
matches held; env.evaluated counts rules examined, by position: a rule skipped
without its test still counts, as the kernel examines it.

Dispatch: a run of at least INDEXED consecutive rules that each require one exact
value of the same field (`-i eth1.96`, `-o eth1.96`, `-s 192.0.2.7/32`,
`-d ...`: the per-VLAN and per-host chains of large dumps) is indexed by that value:
a dict lookup finds the group function holding, in order, the run's rules with the
packet's value, and the others (which cannot match) are never tested. A group is compiled on
the first packet that looks it up: a blocklist of 50,000 addresses costs one dict entry per
address until its packets come, not 50,000 functions compiled up front.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..extensions import REGISTRY, Opaque, Unread
from ..model import Family, Rule, Table
from .classes import cuts

INDEXED = 8  # rules in a run before a dict lookup beats testing them one by one


class Undecidable(Exception):
    """A match or target whose outcome stockade cannot decide for this packet. A signal the simulator
    turns into the verdict UNKNOWN, not an error for the user (so not a StockadeError). `key` names a
    stand-in match (extensions.opaque.Unread) the simulator may try both ways (Env.forced)."""

    def __init__(self, message: str, where: tuple, key: tuple | None = None):
        super().__init__(message)
        self.where = where
        self.key = key
        self.counted = False  # env.evaluated holds the rules examined up to it (see _counted)


def _match_fn(ext, data, key: tuple, family: Family) -> Callable:
    """The match's test; one that is not classwise here (semantics/classes.py) says so in env.classwise."""
    name = ext.name
    classwise = cuts("match", name, data, family) is not None

    def holds(p, env) -> bool:
        env.key = key
        if not classwise:
            env.classwise = False
        got = ext.holds(data, p, env)
        if got is None:
            raise Undecidable(f"match `{name}` is not modelled for this packet", key[:3])
        return got
    return holds


def _target_fn(ext, data, where: tuple) -> Callable:
    classwise = ext.classwise

    def act(p, env):
        if not classwise:
            env.classwise = False
        verdict = ext.act(data, p, env)
        if verdict == "UNKNOWN":
            raise Undecidable(f"target {ext.name} is not modelled", where)
        return verdict
    return act


def _unknown_fn(message: str, where: tuple) -> Callable:
    def fail(p, env):
        raise Undecidable(message, where)
    return fail


def _unread_fn(message: str, key: tuple) -> Callable:
    """A stand-in match: undecided unless the simulator is trying it one way (Env.forced)."""
    def held(p, env):
        got = env.forced.get(key)
        if got is None:
            raise Undecidable(message, key[:3], key)
        return got
    return held


def _counted(fn: list[str]) -> list[str]:
    """A generated function whose rule raises Undecidable first counts the rules it examined up to that one
    (a match that cannot be decided was examined; its rule's position is the exception's `where`): the
    innermost function catches it first, and the functions that jumped to it counted up to their jump."""
    head, body = fn[0], fn[1:]
    caught = ["    except Undecidable as e:", "        if not e.counted:",
              "            env.evaluated += e.where[2] - last; e.counted = True", "        raise"]
    return [head, "    try:", *("    " + ln for ln in body), *caught]


class _Group:
    """A dispatch group not compiled yet: its first call compiles it and puts the function in its place."""

    __slots__ = ("table", "index", "value", "name", "chain", "idxs")

    def __init__(self, table: CompiledTable, index: dict, value: Any, name: str, chain: str, idxs: list[int]):
        self.table, self.index, self.value, self.name, self.chain, self.idxs = table, index, value, name, chain, idxs

    def __call__(self, *args):
        return self.table.group(self)(*args)


class CompiledTable:
    """All chains of one table, compiled; `run(chain, ...)` walks a built-in chain."""

    def __init__(self, table: Table, family: Family):
        self.table = table
        self.family = family
        self.K: list[Any] = []  # constants referenced by the generated code
        self.indexes: list[dict] = []  # each indexed run's dict: value -> group function (or _Group until used)
        src: list[str] = []
        self.names = names = {name: f"c{n}" for n, name in enumerate(table.chains)}
        for name, chain in table.chains.items():
            src += self._chain(names[name], name, chain.rules, names)
        self.ns: dict[str, Any] = {"K": self.K, "Undecidable": Undecidable}
        self._exec(src)
        self.fns = {name: self.ns[names[name]] for name in table.chains}

    def _exec(self, src: list[str]) -> None:
        exec(compile("\n".join(src), f"<stockade:{self.table.name}>", "exec"), self.ns)  # noqa: S102 - from ints

    def const(self, value: Any) -> str:
        self.K.append(value)
        return f"K[{len(self.K) - 1}]"

    def _chain(self, fname: str, chain: str, rules: list[Rule], names: dict[str, str]) -> list[str]:
        """One function per chain; `last` is the last matched position, so env.evaluated
        grows by the rules examined up to each match and to the end of the chain."""
        lines = [f"def {fname}(p, env, iif, oif, out):",
                 "    src = p.src; dst = p.dst; proto = p.proto; frag = p.frag_offset; last = 0"]
        for field_, run in self._runs(rules):
            if field_ is None:
                for idx in run:
                    lines += ["    " + s for s in self._rule(idx, rules[idx - 1], chain, names, "return {}")]
                continue
            by_value: dict[Any, list[int]] = {}
            for idx in run:
                by_value.setdefault(self._key(rules[idx - 1])[1], []).append(idx)
            index: dict[Any, Callable] = {}
            self.indexes.append(index)
            for n, (value, idxs) in enumerate(by_value.items()):
                index[value] = _Group(self, index, value, f"{fname}_{run[0]}_{n}", chain, idxs)
            lines += [f"    g = {self.const(index)}.get({field_})",
                      "    if g is not None:",
                      "        g = g(p, env, iif, oif, out, last, src, dst, proto, frag)",
                      "        if g.__class__ is tuple: return g[0]",
                      "        last = g"]
        lines.append(f"    env.evaluated += {len(rules)} - last")
        return _counted(lines)

    def group(self, g: _Group) -> Callable:
        """Compile a dispatch group: its rules, in order, returning `last` or a chain's result wrapped."""
        rules = self.table.chains[g.chain].rules
        src = [f"def {g.name}(p, env, iif, oif, out, last, src, dst, proto, frag):"]
        for idx in g.idxs:
            src += ["    " + s for s in self._rule(idx, rules[idx - 1], g.chain, self.names, "return ({},)")]
        src.append("    return last")
        self._exec(_counted(src))
        fn = g.index[g.value] = self.ns[g.name]
        return fn

    def _rule(self, idx: int, rule: Rule, chain: str, names: dict[str, str], ret: str) -> list[str]:
        where = (self.table.name, chain, idx)
        return [f"if {self._cond(rule, where)}:",
                f"    env.evaluated += {idx} - last; last = {idx}; out.append({self.const(where)})"] + \
            ["    " + s for s in self._action(rule, where, names, ret)]

    def _key(self, rule: Rule) -> tuple[str, Any] | None:
        """The one exact value of a field this rule requires, if any, as dispatch can look it up."""
        full = (1 << (32 if self.family is Family.IPV4 else 128)) - 1
        for am, var in ((rule.src, "src"), (rule.dst, "dst")):
            if am is not None and not am.invert and am.addr.mask == full:
                return var, am.addr.addr
        for iface, var in ((rule.iif, "iif"), (rule.oif, "oif")):
            if iface is not None and not iface.invert and not iface.name.endswith("+"):
                return var, iface.name
        return None

    def _runs(self, rules: list[Rule]) -> list[tuple[str | None, list[int]]]:
        """The chain's rule positions cut into runs: (field, positions) where at least INDEXED rules in a row
        require an exact value of one field, (None, positions) between them."""
        runs: list[tuple[str | None, list[int]]] = []
        keys = [self._key(r) for r in rules]
        i = 0
        while i < len(rules):
            j = i
            if keys[i] is not None:
                while j + 1 < len(rules) and keys[j + 1] is not None and keys[j + 1][0] == keys[i][0]:
                    j += 1
            if j - i + 1 >= INDEXED:
                runs.append((keys[i][0], list(range(i + 1, j + 2))))
            elif runs and runs[-1][0] is None:
                runs[-1][1].extend(range(i + 1, j + 2))
            else:
                runs.append((None, list(range(i + 1, j + 2))))
            i = j + 1
        return runs

    def _cond(self, rule: Rule, where: tuple) -> str:
        parts = []
        for am, var in ((rule.src, "src"), (rule.dst, "dst")):
            if am is not None:
                op = "!=" if am.invert else "=="
                parts.append(f"({var} & {am.addr.mask}) {op} {am.addr.addr}")
        for iface, var in ((rule.iif, "iif"), (rule.oif, "oif")):
            if iface is not None:
                pat = iface.name
                # no device reads as "" (nft_meta_store_ifname), so `-o +` matches in INPUT and `! -o +` nowhere
                test = (f"({var} or '').startswith({self.const(pat[:-1])})" if pat.endswith("+")
                        else f"{var} == {self.const(pat)}")
                parts.append(f"not {test}" if iface.invert else test)
        if rule.proto is not None:
            parts.append(f"proto {'!=' if rule.proto.invert else '=='} {rule.proto.number}")
        if rule.fragment is not None:
            parts.append("frag != 0" if rule.fragment else "frag == 0")
        for n, m in enumerate(rule.matches):
            if isinstance(m.data, Unread):
                fn = _unread_fn(m.data.why, where + (n,))
            elif isinstance(m.data, Opaque):
                fn = _unknown_fn(f"match `{m.name}` is not modelled", where)
            else:
                ext = REGISTRY.find("match", m.name, self.family)
                fn = _match_fn(ext, m.data, where + (n,), self.family)
            parts.append(f"{self.const(fn)}(p, env)")
        return " and ".join(parts) or "True"

    def _action(self, rule: Rule, where: tuple, names: dict[str, str], ret: str) -> list[str]:
        """The target's code; `ret` makes a chain's result from an expression (a group returns it wrapped)."""
        t = rule.target
        if t is None:
            return []
        if isinstance(t.data, Unread):  # before the names: a stand-in's name is no chain
            if REGISTRY.logs(t.name, self.family):
                return []  # logged or refused, the packet goes on alike
            return [f"v = {self.const(_unknown_fn(t.data.why, where))}(p, env)"]
        if t.name in ("ACCEPT", "DROP", "QUEUE"):
            return [ret.format(self.const(t.name))]
        if t.name == "RETURN":
            return [ret.format("None")]
        if t.name in names:
            call = f"{names[t.name]}(p, env, iif, oif, out)"
            if t.goto:
                return [ret.format(call)]
            return [f"v = {call}", f"if v is not None: {ret.format('v')}"]
        if isinstance(t.data, Opaque):
            fn = _unknown_fn(f"target {t.name} is not modelled", where)
        else:
            fn = _target_fn(REGISTRY.find("target", t.name, self.family), t.data, where)
        return [f"v = {self.const(fn)}(p, env)", f"if v is not None: {ret.format('v')}"]
