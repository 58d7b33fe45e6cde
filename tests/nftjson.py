"""Small builders of nft JSON (libnftables-json(5)) for the nft reader and simulator tests."""
from __future__ import annotations

import json
from typing import Any


def payload(protocol: str, field: str) -> dict:
    return {"payload": {"protocol": protocol, "field": field}}


def meta(key: str) -> dict:
    return {"meta": {"key": key}}


def ct(key: str) -> dict:
    return {"ct": {"key": key}}


def match(left: Any, right: Any, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


COUNTER = {"counter": {"packets": 0, "bytes": 0}}
ACCEPT, DROP, RETURN, CONTINUE = {"accept": None}, {"drop": None}, {"return": None}, {"continue": None}


def jump(target: str) -> dict:
    return {"jump": {"target": target}}


def goto(target: str) -> dict:
    return {"goto": {"target": target}}


class Doc:
    """An `nftables` array built up table by table; `handle` numbers rules as the kernel would."""

    def __init__(self) -> None:
        self.items: list[dict] = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]
        self.handle = 0

    def table(self, family: str, name: str) -> Doc:
        self.items.append({"table": {"family": family, "name": name}})
        return self

    def chain(self, family: str, table: str, name: str, hook: str | None = None, prio: int = 0,
              policy: str = "accept") -> Doc:
        c: dict = {"family": family, "table": table, "name": name}
        if hook:
            c |= {"type": "filter", "hook": hook, "prio": prio, "policy": policy}
        self.items.append({"chain": c})
        return self

    def rule(self, family: str, table: str, chain: str, *expr: dict) -> int:
        self.handle += 1
        self.items.append({"rule": {"family": family, "table": table, "chain": chain, "handle": self.handle,
                                    "expr": list(expr)}})
        return self.handle

    def set(self, family: str, table: str, name: str, type_: Any, elem: list, flags: list | None = None,
            map_: str | None = None) -> Doc:
        s: dict = {"family": family, "table": table, "name": name, "type": type_, "elem": elem}
        if flags:
            s["flags"] = flags
        if map_:
            s["map"] = map_
        self.items.append({"map" if map_ else "set": s})
        return self

    def text(self, indent: int | None = None) -> str:
        return json.dumps({"nftables": self.items}, indent=indent)
