"""Packet specs run through a ruleset: the JSON or short form read as a Packet, one simulator per family."""
from __future__ import annotations

import json

from ..model import Family, Ruleset
from ..model.packet import Packet, SpecError, from_json, from_short
from .simulate import Simulator


def parse_spec(text: str) -> Packet:
    """A packet from a JSON object or the short form; SpecError (with its column if known) otherwise."""
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
