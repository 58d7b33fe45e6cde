"""Packet specs run through a ruleset: the JSON or short form read as a Packet, one simulator per family."""
from __future__ import annotations

import json

import orjson

from ..model import Family, Ruleset
from ..model.packet import Packet, SpecError, from_json, from_short
from .simulate import Simulator


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

    def run(self, pkt: Packet):
        if pkt.family not in self.sims:
            rs = self.rulesets.get(pkt.family)
            if rs is None:
                raise SpecError(f"the ruleset has no {pkt.family.cmd} rules for an IPv{int(pkt.family)} packet")
            self.sims[pkt.family] = Simulator(rs)
        return self.sims[pkt.family].run(pkt)
