"""Packet specs run through a ruleset: the JSON or short form read as a Packet, one simulator per family."""
from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable
from operator import itemgetter

import orjson

from ..model import Family, Ruleset
from ..model.address import inet_pton4
from ..model.packet import COMMON, Packet, SpecError, address, from_json, from_short
from .classes import Classes
from .simulate import Simulator

NEEDED = frozenset({"src", "dst", "proto"})
CLASSED = frozenset({"src", "dst", "sport", "dport", "tcp_flags"})  # the fields key() reads on its own


def _given(names: tuple) -> Callable[[dict], tuple] | None:
    """For specs of these field names, in this order: what reads the values a class holds as given (a tuple
    from one call); None unless they are COMMON fields with src, dst and proto."""
    if not (NEEDED <= set(names) <= COMMON):
        return None
    rest = [n for n in names if n not in CLASSED]  # proto at least
    return itemgetter(*rest) if len(rest) > 1 else lambda spec: (spec[rest[0]],)


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
        self.shapes: dict[tuple, Callable | None] = {}  # a spec's field names, in order: _given
        self.last: Simulator | None = None  # the simulator of the last packet run

    def key(self, spec: dict) -> tuple | None:
        """The class of a spec's packet (semantics/classes.py): its field names in order, the other values as
        given with their types, the addresses and ports as their intervals; None for a spec of other fields
        than COMMON's, answered on its own. Equal keys: both specs valid to from_json or both not, and
        packets every classwise test treats alike (in a dict key 1, 1.0 and true are one: the types tell
        them apart; no number is a TCP flag's name). A value that is a list or an object makes the key
        unhashable: the caller answers that spec on its own."""
        names = tuple(spec)
        given = self.shapes.get(names, False)
        if given is False:
            given = self.shapes[names] = _given(names)
        if given is None:
            return None
        rest, get = given(spec), spec.get
        sport, dport, flags = get("sport"), get("dport"), get("tcp_flags")
        if sport is not None and (sport.__class__ is not int or not 0 <= sport <= 65535) or \
                dport is not None and (dport.__class__ is not int or not 0 <= dport <= 65535):
            return None
        if flags.__class__ is list:
            flags = tuple(flags)
        try:  # address()'s common case, inline
            src, dst, family = int.from_bytes(inet_pton4(spec["src"]), "big"), \
                int.from_bytes(inet_pton4(spec["dst"]), "big"), Family.IPV4
            fam_d = family
        except (OSError, ValueError, TypeError):
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
        return (names, tuple(map(type, rest)), rest, flags, family,
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
