"""nftables rules as cuts of the packet space (model/space.py), so the cell analyses read nft as they read
iptables: the space is cut until every test of every rule is constant on each part, and the concrete
simulator (semantics/nft.py) run on one packet of a part gives the verdict of all of it.

A test is read as the boxes its truth depends on, not as what it admits: `tcp dport != 22` and
`tcp dport 22` both cut at {tcp, 22}, `ip saddr . tcp dport { a . 22, b . 80 }` cuts at each element,
a verdict map at each key. On a part every such box holds entirely or not at all, so every test, its
negation and any combination of them is constant there. A test no dimension expresses (a mark, a
length, a limit, fib, a named object) cuts nothing: it is a residual, named as what the answer of the
parts it may concern depends on; where the simulator cannot decide it the verdict is UNKNOWN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import Family, Ruleset
from ..model.nftables import NftRuleset, NftSet, NftTable
from ..model.nftypes import BITMASKS, NftValueError, ifname, interval
from ..model.packet import Packet
from ..model.ranges import Ranges, Stabbing
from ..model.ranges import difference as iv_sub
from ..model.ranges import intersect as iv_and
from ..model.ranges import normalize as norm
from ..model.space import DPORT, DST, ICMP, IIF, KIND, KINDS, OIF, PROTO, SPORT, SRC, Box
from .cells import ANY, NEVER, SPLIT_ORDER, Constraint, Space, hook_entries, relation, untracked
from .nft import CT_STATE_BITS, FRAG_OFF, TABLE_FAMILIES, TRANSPORT, NftResult, NftSimulator, compare

PORTS = {"sport": SPORT, "dport": DPORT}
INEXACT = Constraint(residual=("inexact",))  # a test's scope that admits more than the test (never a decider)
TH_SPORT = {"payload": {"protocol": "th", "field": "sport"}}
ENDS_CHAIN = ("accept", "drop", "reject", "queue", "return", "goto")


class _Residual(Exception):
    """A test no dimension expresses (`boxes`: what the simulator's answer for one packet still reads)."""

    def __init__(self, why: str, boxes: list | None = None):
        super().__init__(why)
        self.boxes = boxes or []


@dataclass(frozen=True)
class Cut:
    """One box a rule's truth depends on, for cells.refine (it never ends a walk: nft verdicts compose
    across chains, so the simulator, not the cut, decides)."""

    cons: Constraint
    decides: bool = False
    action: str = ""


@dataclass(frozen=True)
class Scope:
    """A rule with residual tests: where it may match (the boxes of its positive tests), and why."""

    cons: Constraint
    where: str
    residual: tuple[str, ...]


def interface_names(nft: NftRuleset) -> set[str]:
    """Interface names nft rules compare with (`eth*` as a name it stands for, as cells do with `eth+`)."""
    out: set[str] = set()

    def walk(node: Any, iface: bool) -> None:
        if isinstance(node, dict):
            if "match" in node and isinstance(node["match"], dict):
                m = node["match"]
                left = m.get("left")
                named = isinstance(left, dict) and isinstance(left.get("meta"), dict) and \
                    left["meta"].get("key") in ("iifname", "oifname", "iif", "oif")
                walk(m.get("right"), named)
                return
            for v in node.values():
                walk(v, iface)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v, iface)
        elif iface and isinstance(node, str) and not node.startswith("@"):
            out.add(node[:-1] + "stk9" if node.endswith("*") and not node.endswith("\\*") else node.replace("\\*", "*"))

    for t in nft.tables:
        for c in t.chains.values():
            for r in c.rules:
                walk(list(r.expr), False)
        for s in t.sets.values():
            if s.key and s.key[0] in ("ifname", "iface_index"):
                walk(s.elements, True)
    out.discard("")
    return {n[:15] for n in out}


class NftCuts:
    """The cuts and residual scopes of an nft ruleset's rules for one family, in a Space."""

    def __init__(self, space: Space, nft: NftRuleset):
        self.space = space
        self.family = space.family
        self.lists: list[list[Cut]] = []  # one per chain: a rule that ends the chain for a whole part hides the rest
        self.scopes: list[Scope] = []
        self.plain: set[tuple] = set()  # (family, table, chain, handle) of rules whose every test is cut
        self.rules: dict[tuple, RuleCuts] = {}  # (family, table, chain, handle) -> what the rule's answer reads
        for table in nft.tables:
            if table.family not in TABLE_FAMILIES[self.family]:
                continue
            for chain in table.chains.values():
                cuts: list[Cut] = []
                seen: set[tuple] = set()
                for rule in chain.rules:
                    forks: dict[int, tuple] = {}
                    boxes, scope, residual = self._rule(table, rule.expr, forks)
                    where = f"{table.label} chain {chain.name} handle {rule.handle}" + \
                        (f" ({rule.origin})" if rule.origin else "")
                    self.rules[(table.family, table.name, chain.name, rule.handle)] = RuleCuts(
                        tuple(Constraint(dict(b)) for b in boxes), ANY if _reads_th(rule.expr) else scope,
                        _effects(rule.expr), where, forks,
                        {n: _vmap_choices(table, stmt["vmap"]) for n, stmt in enumerate(rule.expr)
                         if isinstance(stmt, dict) and isinstance(stmt.get("vmap"), dict)})
                    for b in boxes:
                        key = tuple(sorted(b.items()))
                        if key not in seen:
                            seen.add(key)
                            cuts.append(Cut(Constraint(dict(b))))
                    if residual and scope is not None:
                        self.scopes.append(Scope(scope, where, tuple(residual)))
                    if not residual:
                        self.plain.add((table.family, table.name, chain.name, rule.handle))
                    end = _ends_chain(rule.expr)
                    if end and scope is not None and not residual and not scope.residual:
                        cuts.append(Cut(scope, True, end))
                self.lists.append(cuts)

    def depends(self, box: dict) -> list[str]:
        """The residual tests of rules that may match packets of the part."""
        return [f"{s.where}: {', '.join(s.residual)}" for s in self.scopes if relation(s.cons, box)[0] != "none"]

    # --- a rule --------------------------------------------------------------------------------
    def _rule(self, table: NftTable, stmts: tuple, forks: dict[int, tuple] | None = None
              ) -> tuple[list[Box], Constraint | None, list[str]]:
        """(boxes the rule's truth depends on, where it may match (None: nowhere), residual tests). `forks`
        gets, per statement whose outcome no dimension decides, (why, its possible outcomes)."""
        boxes: list[Box] = []
        scope = Constraint()
        residual: list[str] = []
        forks = {} if forks is None else forks
        for n, stmt in enumerate(stmts):
            if not isinstance(stmt, dict) or len(stmt) != 1:
                continue
            (key, val), = stmt.items()
            try:
                if key == "match":
                    got, positive = self._match(table, val)
                    boxes += got
                    scope = scope & (positive if positive is not None else NEVER)
                elif key == "vmap":
                    boxes += self._lookup_boxes(table, val.get("key"), val.get("data"))
                elif key in ("limit", "quota"):
                    residual.append(f"{key} (a first packet passes)")
                    forks[n] = (f"{key} {_short(val)}", BOTH)
                elif key == "set":
                    residual.append(f"a limit per element of {val.get('set')} (a first packet passes)"
                                    if val.get("stmt") else f"set statement on {val.get('set')}")
                    nset = table.sets.get(str(val.get("set", "")).removeprefix("@"))
                    if val.get("stmt") or (nset is not None and nset.size is not None):
                        forks[n] = (f"{val.get('op')} {val.get('set')} (a limit per element, or a full set)", BOTH)
                elif key == "meter":
                    residual.append(f"a limit per element of meter {val.get('name')} (a first packet passes)")
                    forks[n] = (f"a limit per element of meter {val.get('name')}", BOTH)
                elif key in ("counter", "log", "accept", "drop", "reject", "continue", "return", "queue", "jump",
                             "goto", "notrack", "mangle", "snat", "masquerade", "dnat", "redirect", "ct helper"):
                    pass
                else:
                    residual.append(f"statement `{key}`")
                    if key == "xt" and isinstance(val, dict) and val.get("type") == "match":
                        forks[n] = (f"iptables match {val.get('name')} (xt, not modelled)", BOTH)
            except _Residual as e:
                residual.append(str(e))
                boxes += e.boxes + self._deps(val)
                if key == "match":
                    forks[n] = (str(e), BOTH)
                elif key == "vmap":
                    forks[n] = (str(e), _vmap_choices(table, val))
            if key == "mangle":
                boxes += self._deps(val)
            if scope.never:
                return boxes, None, residual
        return boxes, scope, residual

    def _deps(self, node: Any) -> list[Box]:
        """The boxes what the simulator makes of an expression no dimension expresses depends on, so one
        packet's answer holds for its class: a transport header's protocol, a connection's packet kind, an
        address's multicast or broadcast range (meta pkttype)."""
        out: list[Box] = []
        if isinstance(node, list | tuple):
            for v in node:
                out += self._deps(v)
        elif isinstance(node, dict):
            p = node.get("payload", {}).get("protocol") if isinstance(node.get("payload"), dict) else None
            key = node.get("meta", {}).get("key") if isinstance(node.get("meta"), dict) else None
            if p in TRANSPORT:
                out.append({PROTO: ((TRANSPORT[p],) * 2,)})
            elif p in ("icmp", "icmpv6", "th"):
                ip = 1 if self.family is Family.IPV4 else 58
                out += [{PROTO: ((ip, ip),)}] + ([{PROTO: ((6, 6), (17, 17))}] if p == "th" else [])
            elif isinstance(node.get("ct"), dict):
                out += [{KIND: ((i, i),)} for i in range(len(KINDS))]
            elif key == "pkttype":
                out += [{DST: ((0xE0000000, 0xEFFFFFFF),)}, {DST: ((0xFFFFFFFF,) * 2,)}] \
                    if self.family is Family.IPV4 else [{DST: ((0xFF << 120, (1 << 128) - 1),)}]
            for v in node.values():
                out += self._deps(v)
        return out

    def _match(self, table: NftTable, m: dict) -> tuple[list[Box], Constraint | None]:
        """A comparison's cut boxes and the constraint it admits where that is one box (else ANY, or
        None when it admits nothing)."""
        left, right, op = m.get("left"), m.get("right"), m.get("op")
        if isinstance(right, dict) and "concat" in right:
            right = {"set": [right]}
        positive = op in (None, "==", "in")
        if _is_set(right):
            boxes = self._lookup_boxes(table, left, right)
            if not positive:
                return boxes, INEXACT
            if not boxes:
                return [], None
            dims = {d for b in boxes for d in b}
            if len(boxes) == 1:
                return boxes, Constraint(dict(boxes[0]))
            if all(len(b) == len(boxes[0]) and set(b) == dims for b in boxes):
                # several elements of one dimension (plus the same implied protocol): their union
                free = [d for d in dims if len({b[d] for b in boxes}) > 1]
                if len(free) == 1:
                    d = free[0]
                    return boxes, Constraint(dict(boxes[0]) | {d: norm([iv for b in boxes for iv in b[d]])})
            return boxes, INEXACT
        dim, dtype, need = self._left(left)
        if dim == "never":
            return [], None
        if dim == "ctper":  # the simulator decides it from the packet kind (or says UNKNOWN)
            return [{KIND: ((i, i),)} for i in range(len(KINDS))], INEXACT
        base = [need] if need else []
        lo, hi = self._const(dtype, right)
        if dim in CONSTANT:
            holds = _holds(op, dtype, CONSTANT[dim](self.family), lo, hi)
            return base, (Constraint(dict(need or {})) if holds else None)
        values = self._admitted(dim, dtype, op, lo, hi)
        axis = _axis(dim)
        box = dict(need or {}) | {axis: values}
        if left == TH_SPORT:  # of an ICMP packet: its first two bytes, type * 256 + code, the ICMP dimension
            return base + [{axis: values}, {ICMP: values}], INEXACT
        return base + [{axis: values}], (Constraint(box) if values else None)

    def _left(self, expr: Any) -> tuple[str, str, Box | None]:
        """(dimension, nft datatype, the box a test of it implies) of a left-hand expression;
        dimension "never" when this family's packets never have it, "const" when it is constant."""
        v4 = self.family is Family.IPV4
        if not isinstance(expr, dict) or len(expr) != 1:
            raise _Residual(f"expression {str(expr)[:40]}")
        (key, val), = expr.items()
        if key == "payload" and isinstance(val, dict):
            proto, fld = val.get("protocol"), val.get("field")
            if proto in ("ip", "ip6"):
                if v4 != (proto == "ip"):
                    return "never", "", None
                if fld in ("saddr", "daddr"):
                    return (SRC if fld == "saddr" else DST), "ipv4_addr" if v4 else "ipv6_addr", None
                if fld in ("protocol", "nexthdr"):
                    return PROTO, "inet_proto", None
                raise _Residual(f"{proto} {fld}")
            if proto in ("icmp", "icmpv6"):
                if v4 != (proto == "icmp"):
                    return "never", "", None
                p = 1 if v4 else 58
                if fld == "type":
                    return ICMP_TYPE, f"{proto}_type", {PROTO: ((p, p),)}
                if fld == "code":
                    return ICMP_CODE, f"{proto}_code", {PROTO: ((p, p),)}
                raise _Residual(f"{proto} {fld}")
            if proto in ("tcp", "udp") and fld in PORTS:
                p = TRANSPORT[proto]
                return PORTS[fld], "inet_service", {PROTO: ((p, p),)}
            if proto == "th" and fld in PORTS:
                return PORTS[fld], "inet_service", {PROTO: ((6, 6), (17, 17))}
            if proto == "tcp" and fld == "flags":
                return "flags", "tcp_flag", {PROTO: ((6, 6),)}
            raise _Residual(f"{proto} {fld}")
        if key == "meta" and isinstance(val, dict):
            k = val.get("key")
            if k == "l4proto":
                return PROTO, "inet_proto", None
            if k in ("iifname", "oifname", "iif", "oif"):
                return (IIF if k.startswith("i") else OIF), "ifname" if k.endswith("name") else "iface_index", None
            if k == "nfproto":
                return "nfproto", "nf_proto", None
            raise _Residual(f"meta {k}")
        if key == "ct" and isinstance(val, dict) and val.get("key") == "state" and val.get("dir") is None:
            return "ctstate", "ct_state", None
        if key == "&" and isinstance(val, list) and len(val) == 2:
            if val[0] == FRAG_OFF and self.family is Family.IPV4:
                if self._const("integer", val[1])[0] & 0x4000:
                    raise _Residual("ip frag-off: the don't-fragment bit (cells hold packets without it)")
                return "fragoff", "integer", None  # cells hold unfragmented packets: the offset and MF are 0
            if val[0] == {"payload": {"protocol": "tcp", "field": "flags"}}:
                return "flags&" + str(self._const("tcp_flag", val[1])[0]), "tcp_flag", {PROTO: ((6, 6),)}
        if key == "ct" and isinstance(val, dict) and val.get("key") in ("direction", "status") \
                and val.get("dir") is None:
            return "ctper", "", None  # decided by the simulator per packet kind
        raise _Residual(f"{key} {str(val)[:40]}" if not isinstance(val, dict) else
                        f"{key} {' '.join(str(v) for v in val.values())}")

    def _const(self, dtype: str, right: Any) -> tuple[int, int]:
        try:
            return interval(dtype, right)
        except NftValueError as e:
            raise _Residual(str(e)) from None

    def _admitted(self, dim: str, dtype: str, op: Any, lo: int, hi: int) -> Ranges:
        """The values of the axis the dimension lies on for which `left op [lo, hi]` holds."""
        if dim in INTERVAL_DIMS:
            top = self.space.universe[dim][-1][1]
            return _interval_admits(op, dtype, lo, hi, top)
        if dim == ICMP_TYPE:
            return norm([(t * 256, t * 256 + 255) for t in range(256) if _holds(op, dtype, t, lo, hi)])
        if dim == ICMP_CODE:
            codes = [c for c in range(256) if _holds(op, dtype, c, lo, hi)]
            return norm([(t * 256 + c, t * 256 + c) for t in range(256) for c in codes])
        if dim in (IIF, OIF):
            return norm([(i, i) for i, n in enumerate(self.space.ifaces)
                         if _holds(op, dtype, ifname(n) if n else 0, lo, hi)])
        if dim == "ctstate":
            return norm([(i, i) for i, k in enumerate(KINDS) if _holds(op, dtype, CT_STATE_BITS[k.state], lo, hi)])
        if dim.startswith("flags"):
            mask = int(dim[6:]) if dim.startswith("flags&") else 0xFF
            return norm([(i, i) for i, k in enumerate(KINDS) if _holds(op, dtype, k.flags & mask, lo, hi)])
        raise _Residual(f"{dim} is not modelled")

    # --- sets, maps and non-interval dimensions --------------------------------------------------
    def _lookup_boxes(self, table: NftTable, left: Any, ref: Any) -> list[Box]:
        """One box per element of the set (or map) `ref` keyed by `left`."""
        if isinstance(left, dict) and "concat" in left:
            parts = [self._left(e) for e in left["concat"]]
        else:
            parts = [self._left(left)]
        dynamic = False
        if isinstance(ref, str):
            nset = table.sets.get(ref[1:])
            if nset is None:
                raise _Residual(f"set {ref}")
            elements, dynamic = nset.elements, _dynamic(table, nset)
        elif isinstance(ref, dict) and "set" in ref:
            elements = ref["set"]
        elif isinstance(ref, list):
            elements = ref
        else:
            raise _Residual(f"set {str(ref)[:40]}")
        out: list[Box] = []
        datas: list[str] = []
        for elem in elements if isinstance(elements, list) else [elements]:
            data = ""
            if isinstance(elem, list) and len(elem) == 2:
                elem, data = elem[0], repr(elem[1])  # a map element: [key, data]
            if isinstance(elem, dict) and "elem" in elem:
                elem = elem["elem"].get("val")
            comps = elem["concat"] if isinstance(elem, dict) and "concat" in elem else [elem]
            if len(comps) != len(parts):
                raise _Residual(f"set element {str(elem)[:40]}")
            box: Box = {}
            for (dim, dtype, need), comp in zip(parts, comps, strict=True):
                if dim == "never":
                    box = {PROTO: ()}
                    break
                box |= need or {}
                vals, axis = self._values(dim, dtype, comp), _axis(dim)
                box[axis] = iv_and(box[axis], vals) if axis in box else vals
            if all(box.values()):
                out.append(box)
                datas.append(data)
        if dynamic:  # its own elements are cut (one packet finds them or not), what the packets add is not
            raise _Residual(f"set {ref} is updated by the packets themselves", out)
        if len(parts) > 1:
            return out
        # one key: what decides is only which data's elements hold the value, so those elements are one box
        merged: dict[str, Box] = {}
        for box, data in zip(out, datas, strict=True):
            axis = _axis(parts[0][0])
            have = merged.get(data)
            merged[data] = box if have is None else have | {axis: norm(list(have[axis]) + list(box[axis]))}
        if left == TH_SPORT:
            return [*merged.values(), *({ICMP: b[SPORT]} for b in merged.values())]
        return list(merged.values())

    def _values(self, dim: str, dtype: str, comp: Any) -> Ranges:
        """The values on the dimension's axis one set element component stands for."""
        if dim == "ctper":
            raise _Residual("ct direction/status in a set")
        lo, hi = self._const(dtype, comp)
        if dim in CONSTANT:
            return () if not lo <= CONSTANT[dim](self.family) <= hi else ((0, len(KINDS) - 1),)
        return self._admitted(dim, dtype, "==", lo, hi)


INTERVAL_DIMS = (PROTO, SRC, DST, SPORT, DPORT)
ICMP_TYPE, ICMP_CODE = "icmp-type", "icmp-code"
# Tests whose value is the same for every packet of a family that cells hold (unfragmented ones).
CONSTANT = {"nfproto": lambda fam: 2 if fam is Family.IPV4 else 10, "fragoff": lambda fam: 0}


def _axis(dim: str) -> str:
    """The space dimension a test's values lie on (packet kinds for ct state, TCP flags and constants)."""
    return dim if dim in INTERVAL_DIMS + (IIF, OIF) else ICMP if dim in (ICMP_TYPE, ICMP_CODE) else KIND


def _holds(op: Any, dtype: str, value: int, lo: int, hi: int) -> bool:
    """`value op [lo, hi]` as semantics/nft.py compares a value with a constant."""
    if (held := compare(op, dtype, value, lo, hi)) is None:
        raise _Residual(f"operator {op}")
    return held


def _interval_admits(op: Any, dtype: str, lo: int, hi: int, top: int) -> Ranges:
    if op == "in" or (op is None and dtype in BITMASKS):
        raise _Residual(f"a flag test on {dtype}")
    if op in (None, "=="):
        return norm([(max(lo, 0), min(hi, top))]) if lo <= top else ()
    if op == "!=":
        return iv_sub(((0, top),), ((lo, hi),))
    if op == "<":
        return ((0, min(lo - 1, top)),) if lo > 0 else ()
    if op == "<=":
        return ((0, min(hi, top)),)
    if op == ">":
        return ((hi + 1, top),) if hi < top else ()
    if op == ">=":
        return ((lo, top),) if lo <= top else ()
    raise _Residual(f"operator {op}")


def _ends_chain(stmts: tuple) -> str | None:
    """The statement that ends the chain when every test of the rule holds, if one does."""
    for stmt in stmts:
        if isinstance(stmt, dict) and len(stmt) == 1:
            (key, _), = stmt.items()
            if key in ENDS_CHAIN:
                return key
            if key in ("vmap", "jump", "continue"):
                return None
    return None


def _is_set(right: Any) -> bool:
    return (isinstance(right, str) and right.startswith("@")) or (isinstance(right, dict) and "set" in right)


def _dynamic(table: NftTable, nset: NftSet) -> bool:
    """Whether packets change the set: flagged so, or named by a rule's set statement (add/update/delete)."""
    if "dynamic" in nset.flags:
        return True
    ref = "@" + nset.name
    return any(isinstance(stmt.get("set"), dict) and stmt["set"].get("set") == ref
               for c in table.chains.values() for r in c.rules for stmt in r.expr)


BOTH = (True, False)  # a test either way: it holds, or the rule ends
INDEXED = 32  # a rule with more boxes than this finds those near a class through an index
EFFECTS = ("mangle", "set", "meter", "notrack", "ct helper", "snat", "masquerade", "dnat", "redirect")


@dataclass(frozen=True)
class RuleCuts:
    """What one rule's answer reads: the boxes of its tests, where it may match (None: nowhere), whether a
    statement changes what later rules see, and the statements no dimension decides (index -> (why,
    outcomes)) and its verdict maps' outcomes (index -> outcomes)."""

    boxes: tuple[Constraint, ...]
    scope: Constraint | None
    effects: bool
    where: str
    forks: dict
    vmaps: dict

    def __post_init__(self) -> None:
        """Many boxes (a set's elements): indexed on the dimension where most of them give distinct intervals."""
        index = None
        if len(self.boxes) > INDEXED:
            dim = max(SPLIT_ORDER, key=lambda d: (len({c.dims[d] for c in self.boxes if len(c.dims.get(d, ())) == 1}),
                                                  -SPLIT_ORDER.index(d)))  # ties: the one classes are cut in first
            one = [c for c in self.boxes if len(c.dims.get(dim, ())) == 1]
            index = (dim, Stabbing([(*c.dims[dim][0], c) for c in one]),
                     tuple(c for c in self.boxes if len(c.dims.get(dim, ())) != 1))
        object.__setattr__(self, "index", index)

    def near(self, box: dict) -> tuple[Constraint, ...] | list[Constraint]:
        """The boxes that may share packets with the box (all of them, unless indexed)."""
        if self.index is None:
            return self.boxes
        dim, found, rest = self.index
        return [*found.meeting(box[dim][0][0], box[dim][-1][1]), *rest]

    def cut(self, box: dict) -> list[Constraint] | None:
        """The rule's boxes near the class if a test of the rule is not the same for every packet of it."""
        if not self.effects and (self.scope is None or relation(self.scope, box)[0] == "none"):
            return None  # it matches no packet of the box, and changes nothing on the way
        near = self.near(box)
        return list(near) if any(relation(c, box)[0] == "some" for c in near) else None


def _effects(stmts: tuple) -> bool:
    return any(isinstance(s, dict) and any(k in EFFECTS for k in s) for s in stmts)


def _reads_th(node: Any) -> bool:
    """Whether a rule reads `th` (any transport header: where the simulator cannot read it, as an ICMP
    packet's `th dport`, the rule is undecided rather than false, so its scope says nothing)."""
    if isinstance(node, dict):
        return node.get("protocol") == "th" or any(_reads_th(v) for v in node.values())
    if isinstance(node, list | tuple):
        return any(_reads_th(v) for v in node)
    return False


def _short(val: Any) -> str:
    if isinstance(val, dict) and "rate" in val:
        return f"rate {val.get('rate')}/{val.get('per', 'second')}"
    return str(val)[:40]


def _vmap_choices(table: NftTable, val: dict) -> tuple:
    """A verdict map's possible outcomes: each distinct verdict of its elements, or none (False)."""
    ref = val.get("data")
    if isinstance(ref, str):
        nset = table.sets.get(ref.removeprefix("@"))
        elements = nset.elements if nset is not None else []
    elif isinstance(ref, dict) and isinstance(ref.get("set"), list):
        elements = ref["set"]
    else:
        elements = ref if isinstance(ref, list) else []
    out: list = []
    for elem in elements:
        if isinstance(elem, list) and len(elem) == 2 and elem[1] not in out:
            out.append(elem[1])
    return (*out, False)


class Split(Exception):
    """A rule on the walk reads a test some packets of the class pass and others fail: cut the class by the
    rule's boxes (`parts`), as the walk saw the class (`untracked`: its packets untracked)."""

    def __init__(self, boxes: list[Constraint], untracked: bool = False):
        super().__init__("split")
        self.boxes = boxes
        self.untracked = untracked

    def parts(self, space: Space, box: dict) -> list[dict]:
        """The class cut in the first dimension (cells.SPLIT_ORDER) some box of the rule cuts, by all of them
        at once (a concatenation's 10,000 elements are one cut of its ports, not 10,000 halvings)."""
        seen = untracked(box) if self.untracked else box
        for d in SPLIT_ORDER:
            have = seen[d]
            cuts = {c.dims[d]: None for c in self.boxes if d in c.dims and relation(c, seen)[0] == "some"}
            cuts = [v for v in cuts if iv_and(have, v) and iv_sub(have, v)]
            if cuts:
                return [dict(box, **{d: part}) for part, _ in space.classes(have, cuts)]
        raise AssertionError("a Split whose boxes cut nothing")


RUNS = 256  # walks per class: beyond, the verdicts not tried are UNKNOWN


class Explorer:
    """The simulator's guide over a class of packets (NftSimulator.guide): each rule it runs must read only
    tests constant on the class (else Split), and a statement no dimension decides (a limit, a quota, a
    mark, a set the packets fill, anything the simulator cannot decide) is taken each way in turn: the
    `prefix` of choices first, then the first outcome, every other one left on `todo` as a walk to do."""

    def __init__(self, cuts: NftCuts, box: dict, prefix: tuple, todo: list):
        self.cuts, self.box, self.prefix, self.todo = cuts, box, prefix, todo
        self.seen = box  # the class as the rule being run sees it
        self.taken: list[int] = []
        self.met: list[str] = []

    def visit(self, rule: tuple, untracked_: bool = False) -> None:
        """Before a rule runs: Split if a test of it is not constant on the class as the walk sees it
        (`untracked_`: the walk untracked its packets, so every state test reads UNTRACKED)."""
        self.seen = untracked(self.box) if untracked_ else self.box
        rc = self.cuts.rules.get(rule)
        if rc is not None and (near := rc.cut(self.seen)) is not None:
            raise Split(near, untracked_)

    def force(self, rule: tuple, n: int, key: str, why: str | None) -> Any:
        """None to run the statement as it is; else True (it holds), False (the rule ends) or a verdict map's
        data, for a statement no dimension decides (a fork of its rule's RuleCuts) or one the simulator could
        not decide (`why`: its reason)."""
        rc = self.cuts.rules.get(rule)
        if rc is None:
            return None
        fork = rc.forks.get(n)
        if fork is not None and (rc.effects or (rc.scope is not None and relation(rc.scope, self.seen)[0] != "none")):
            why, choices = fork
        elif why is not None:
            choices = rc.vmaps.get(n, ()) if key == "vmap" else BOTH
            if len(choices) < 2:
                return None
        else:
            return None
        i = len(self.taken)
        if i < len(self.prefix):
            pick = self.prefix[i]
        else:
            pick = 0
            self.todo.extend((*self.taken, j) for j in range(len(choices) - 1, 0, -1))
        self.taken.append(pick)
        note = f"{rc.where}: {why}"
        if note not in self.met:
            self.met.append(note)
        return choices[pick]


class NftOracle:
    """An nft ruleset (with the iptables tables beside it, if any) as one side of a cell analysis: its
    cuts for a family, and the verdict of a part from the simulator on its packet."""

    def __init__(self, nft: NftRuleset, iptables: dict[Family, Ruleset] | None = None):
        self.nft, self.iptables = nft, iptables or {}
        self.sim = NftSimulator(nft, self.iptables)
        self._cuts: dict[Family, NftCuts] = {}

    def names(self) -> set[str]:
        return interface_names(self.nft)

    def plain(self, family: Family) -> set[tuple]:
        """The rules (family, table, chain, handle) every test of which the family's cells read."""
        return self._cuts[family].plain

    def nat(self) -> bool:
        return self.sim.nat

    def rulesets(self, family: Family) -> list[Ruleset]:
        return [self.iptables[family]] if family in self.iptables else []

    def lists(self, space: Space, hook: str) -> list[list]:
        cuts = self._cuts.get(space.family)
        if cuts is None or cuts.space is not space:
            cuts = self._cuts[space.family] = NftCuts(space, self.nft)
        extra = [hook_entries(rs, chain, space, table) for rs in self.rulesets(space.family)
                 for table in rs.tables for chain in PATH_CHAINS[hook]]
        return [*cuts.lists, *extra]

    def fixed_lists(self, space: Space, hook: str) -> list[list]:
        """The lists cells.refine must make constant on each class before `explore` (the iptables tables
        beside the nft ones; the nft rules are cut by `explore` itself, as its walks meet them)."""
        return self.lists(space, hook)[len(self._cuts[space.family].lists):]

    def explore(self, pkt: Packet, box: dict) -> tuple[str, frozenset[str], str | None, tuple[str, ...]]:
        """(the verdict of `pkt`, every verdict a packet of the class `box` may get, where `pkt`'s was
        decided, what the others depend on). Raises Split when a rule on some walk reads a test the class
        is not constant on. Each statement no dimension decides is taken both ways (Explorer): `may` is
        the verdicts of every combination, at most RUNS walks (then UNKNOWN too)."""
        cuts = self._cuts[pkt.family]
        todo: list[tuple] = [()]
        may: set[str] = set()
        depends: list[str] = []
        runs = 0
        while todo:
            if runs == RUNS:
                may.add("UNKNOWN")
                depends.append(f"more than {RUNS} combinations of the statements above (the rest not tried)")
                break
            guide = self.sim.guide = Explorer(cuts, box, todo.pop(), todo)
            try:
                res = self._fresh(pkt)
            finally:
                self.sim.guide = None
            runs += 1
            may.add(res.verdict)
            depends += [m for m in guide.met if m not in depends]
            if res.verdict == "UNKNOWN" and res.reason and res.reason not in depends:
                depends.append(res.reason)
        if runs == 1 and not depends:
            verdict, rule, _, _ = self._answer(res, ())
            return verdict, frozenset(may), rule, ()
        verdict, rule, _, _ = self.run(pkt, box)  # the example packet as it is (a first packet, its mark...)
        return verdict, frozenset(may | {verdict}), rule, tuple(depends)

    def _fresh(self, pkt: Packet) -> NftResult:
        self.sim.memory.clear()
        for s in self.sim.ipt.values():
            s.memory.clear()
        return self.sim.run(pkt)

    def run(self, pkt: Packet, box: dict) -> tuple[str, str | None, tuple[str, ...], NftResult]:
        """(verdict, where it was decided, what the part's answer depends on, the simulator's result)."""
        res = self._fresh(pkt)
        return self._answer(res, self._cuts[pkt.family].depends(box))

    def _answer(self, res: NftResult, depends) -> tuple[str, str | None, tuple[str, ...], NftResult]:
        if res.verdict == "UNKNOWN" and res.reason:
            depends = [res.reason, *depends]
        rule = res.reason if res.reason and res.verdict != "UNKNOWN" else None
        for t in reversed(res.trace if rule is None else ()):
            if "policy" in t and t["policy"] == res.verdict:
                rule = f"{t.get('family', '')} {t['table']} chain {t['chain']} policy".strip()
                break
            if t.get("verdict", "") and t["verdict"].split()[0].upper() == res.verdict:
                rule = t.get("origin") or f"{t['family']} {t['table']} chain {t['chain']} handle {t['handle']}"
                break
            if t.get("target") == res.verdict:
                rule = t.get("origin") or f"{t['chain']} rule {t['rule']}"
                break
        return res.verdict, rule, tuple(depends), res


# The iptables built-in chains a packet of each filter hook passes.
PATH_CHAINS = {"INPUT": ("PREROUTING", "INPUT"), "FORWARD": ("PREROUTING", "FORWARD", "POSTROUTING"),
               "OUTPUT": ("OUTPUT", "POSTROUTING")}
