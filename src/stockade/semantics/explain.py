"""Packet specs run through a ruleset: the JSON or short form read as a Packet, one simulator per family."""
from __future__ import annotations

import json

import orjson

from ..model import Family, Ruleset
from ..model.packet import Packet, SpecError, from_json, from_short
from .simulate import Simulator


def parse_spec(text: str) -> Packet:
    """A packet from a JSON object or the short form; SpecError (with its column if known) otherwise."""
    if text[:1] == "{":  # the common case: a JSON object from the first column
        try:
            spec = orjson.loads(text)
        except orjson.JSONDecodeError:  # or what only the json module reads (NaN, huge numbers, lone surrogates)
            spec = None
        if spec.__class__ is dict:
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

    def run(self, pkt: Packet):
        if pkt.family not in self.sims:
            rs = self.rulesets.get(pkt.family)
            if rs is None:
                raise SpecError(f"the ruleset has no {pkt.family.cmd} rules for an IPv{int(pkt.family)} packet")
            self.sims[pkt.family] = Simulator(rs)
        return self.sims[pkt.family].run(pkt)
