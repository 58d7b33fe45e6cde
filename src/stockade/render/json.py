"""The model as JSON: for scripts that want structure rather than iptables text."""
from __future__ import annotations

import dataclasses
import enum
import ipaddress
from typing import Any

from ..extensions import Opaque, Unread
from ..model import Ruleset
from .save import rule_words


def _value(data: Any) -> Any:
    if isinstance(data, Unread):
        return {"unread": list(data.words), "why": data.why}
    if isinstance(data, Opaque):
        return {"opaque": list(data.words)}
    if dataclasses.is_dataclass(data):
        return {k: _value(v) for k, v in dataclasses.asdict(data).items()}
    if isinstance(data, dict):
        return {str(k): _value(v) for k, v in data.items()}
    if isinstance(data, (tuple, list, frozenset, set)):
        return [_value(v) for v in data]
    if isinstance(data, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
                         ipaddress.IPv6Network)):
        return str(data)
    if isinstance(data, enum.Enum):
        return _value(data.value)
    if isinstance(data, bytes):
        return data.hex()
    return data


def ruleset_json(rs: Ruleset) -> dict:
    tables = {}
    for table in rs.tables.values():
        chains = []
        for chain in table.chains.values():
            rules = [{
                "rule": n,
                "origin": str(r.origin) if r.origin else None,
                "iptables": " ".join(rule_words(r, rs.family)),
                "matches": [{"name": m.name, "value": _value(m.data)} for m in r.matches],
                "target": None if r.target is None else
                {"name": r.target.name, "goto": r.target.goto, "value": _value(r.target.data)},
            } for n, r in enumerate(chain.rules, 1)]
            chains.append({"name": chain.name, "policy": chain.policy, "rules": rules})
        tables[table.name] = {"chains": chains}
    return {"family": int(rs.family), "tables": tables}
