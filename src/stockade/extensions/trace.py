"""-j TRACE: follow a packet through every rule it meets (xt_TRACE).

iptables-legacy and the kernel's xt_TRACE allow it in the raw table only. (iptables-nft 1.8.9
turns it into nft's `meta nftrace set 1` and accepts it in any table; stockade keeps to raw.)
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Extension, register


@dataclass(frozen=True)
class Trace:
    """Non-terminating: marks the packet for tracing, so every later rule, chain and policy it
    passes is reported (nft monitor trace, or the kernel log with legacy iptables); the packet
    goes on to the next rule."""


@register
class TraceTarget(Extension):
    name = "TRACE"
    terminal = False
    kind = "target"
    tables = ("raw",)
    chains = ("PREROUTING", "OUTPUT")

    def finish(self, acc, ctx):
        return Trace()

    def act(self, d: Trace, pkt, env) -> None:
        """trace_tg: sets nf_trace on the packet; the next rule runs."""
        env.notes.append("TRACE: the packet is traced from here on")

    def save(self, d: Trace) -> list[str]:
        return []

    def nft(self, d: Trace, ctx) -> str:
        return "nftrace set 1"
