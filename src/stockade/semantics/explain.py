"""Packet specs run through a ruleset: the JSON or short form read as a Packet, one simulator per family."""
from __future__ import annotations

import json
from bisect import bisect_right

import orjson

from ..model import Family, Ruleset
from ..model.packet import COMMON, Packet, SpecError, address, from_json, from_short
from .classes import Classes
from .simulate import Simulator

TEXT = frozenset({str, type(None)})  # what key() takes as given: text, or whole numbers (a bool is no int)
NUMBER = frozenset({int, type(None)})
NEEDED = frozenset({"src", "dst", "proto"})


def json_object(text: str | bytes) -> dict | None:
    """The common case of a spec, a JSON object from the first column, read by orjson (from a batch's
    bytes too: it refuses what is not UTF-8); None for anything else, which parse_spec reads with json or
    as the short form (their answers and error messages)."""
    if text[:1] not in ("{", b"{"):
        return None
    try:
        spec = orjson.loads(text)
    except orjson.JSONDecodeError:  # or what only the json module reads (NaN, huge numbers, lone surrogates)
        return None
    return spec if spec.__class__ is dict else None


def parse_spec(text: str) -> Packet:
    """A packet from a JSON object or the short form; SpecError (with its column if known) otherwise."""
    spec = json_object(text)
    if spec is not None:
        return from_json(spec)
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

    def __init__(self, rulesets: dict[Family, Ruleset]):
        self.rulesets = rulesets
        self.sims: dict[Family, Simulator] = {}
        self.classes: dict[Family, Classes | None] = {}
        self.shapes: dict[tuple, bool] = {}  # a spec's field names, in order: whether key() reads such specs
        self.last: Simulator | None = None  # the simulator of the last packet run

    def key(self, spec: dict) -> tuple | None:
        """The class of a spec's packet (semantics/classes.py): its field names in order, its values, the
        addresses and ports as their intervals; None for a spec of other fields than COMMON's, answered on
        its own. Equal keys: both specs valid to from_json or both not, and packets every classwise test
        treats alike. In a dict key 1, 1.0 and true are one: a field from_json reads differently by type
        must be of the one type it takes (`proto` text, numbers whole); one taken only as text (`hook`,
        `state`) or read through int() (`family`) may be anything. A list in a list makes the key
        unhashable: the caller answers that spec on its own."""
        names = tuple(spec)
        known = self.shapes.get(names)
        if known is None:
            known = self.shapes[names] = spec.keys() <= COMMON and NEEDED <= spec.keys()
        if not known:
            return None
        get = spec.get
        proto, iif, oif, sport, dport, itype, icode = (spec["proto"], get("iif"), get("oif"), get("sport"),
                                                       get("dport"), get("icmp_type"), get("icmp_code"))
        if proto.__class__ is not str or not ({iif.__class__, oif.__class__} <= TEXT and
                                              {sport.__class__, dport.__class__, itype.__class__,
                                               icode.__class__} <= NUMBER):
            return None
        if (sport is not None and not 0 <= sport <= 65535) or (dport is not None and not 0 <= dport <= 65535):
            return None
        flags = get("tcp_flags")
        if flags.__class__ is list:
            flags = tuple(flags)
        try:
            family, src = address(spec["src"])
            fam_d, dst = address(spec["dst"])
        except SpecError:
            return None
        classes = self.classes.get(family, False)
        if classes is False:
            rs = self.rulesets.get(family)
            classes = Classes(rs) if rs is not None else None
            self.classes[family] = classes = classes if classes is not None and classes.usable else None
        if classes is None or fam_d is not family:
            return None
        return (names, proto, get("hook"), get("state"), iif, oif, flags, itype, icode, get("family"), family,
                bisect_right(classes.src, src), bisect_right(classes.dst, dst),
                None if sport is None else bisect_right(classes.sport, sport),
                None if dport is None else bisect_right(classes.dport, dport))

    @property
    def classwise(self) -> bool:
        """Whether the last packet run got the answer every packet of its class (key()) gets."""
        return self.last is not None and self.last.classwise

    def run(self, pkt: Packet):
        self.last = sim = self.sims.get(pkt.family)
        if sim is None:
            rs = self.rulesets.get(pkt.family)
            if rs is None:
                raise SpecError(f"the ruleset has no {pkt.family.cmd} rules for an IPv{int(pkt.family)} packet")
            self.last = sim = self.sims[pkt.family] = Simulator(rs)
        return sim.run(pkt)
