"""-j NFLOG: copy packets to user space over nfnetlink_log (ulogd and friends).

iptables-nft turns NFLOG into the native nft `log` statement, which explains where it
differs from the legacy tool: prefixes may be 127 bytes, and `--nflog-range` (which never
worked) is accepted but dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import quote
from .base import Extension, Option, register
from .log import log_prefix
from .values import parse_c_uint, save_string

PREFIX_MAX = 127  # nft's log prefix; iptables-nft silently cuts longer ones
U16, U32 = 2**16 - 1, 2**32 - 1


@dataclass(frozen=True)
class Nflog:
    """Non-terminating: a copy of the packet (the first `size` bytes, or all of it) goes to
    nfnetlink_log group `group`, queued in the kernel until `threshold` packets wait; the
    packet itself goes on to the next rule."""

    group: int = 0
    prefix: str | None = None
    size: int | None = None
    threshold: int = 0


@register
class NflogTarget(Extension):
    name = "NFLOG"
    classwise = True
    terminal = False
    logs = True
    kind = "target"
    options = (Option("--nflog-group"), Option("--nflog-prefix"), Option("--nflog-range"),
               Option("--nflog-size"), Option("--nflog-threshold"))

    def convert(self, opt, args, ctx):
        word = args[0]
        if opt.key == "nflog-prefix":
            return log_prefix(word, "NFLOG --nflog-prefix", PREFIX_MAX)
        big = opt.key in ("nflog-range", "nflog-size")
        return parse_c_uint(word, f"NFLOG {opt.name}", 0, U32 if big else U16)

    def finish(self, acc, ctx):
        if "nflog-range" in acc and "nflog-size" in acc:
            raise ParseError("NFLOG: --nflog-range and --nflog-size cannot be combined", code="conflict",
                             hint="drop --nflog-range: it never worked and iptables-nft ignores it")

        def get(key, default):
            return acc[key][1] if key in acc else default

        return Nflog(get("nflog-group", 0), get("nflog-prefix", None), get("nflog-size", None),
                     get("nflog-threshold", 0))

    def act(self, d: Nflog, pkt, env) -> None:
        """nflog_tg: a copy goes to the nfnetlink_log group; the next rule runs."""
        prefix = f' prefix "{d.prefix}"' if d.prefix is not None else ""
        env.notes.append(f"NFLOG group {d.group}{prefix}")

    def save(self, d: Nflog) -> list[str]:
        out = ["--nflog-prefix", save_string(d.prefix)] if d.prefix is not None else []
        if d.group:
            out += ["--nflog-group", str(d.group)]
        if d.size is not None:
            out += ["--nflog-size", str(d.size)]
        if d.threshold:
            out += ["--nflog-threshold", str(d.threshold)]
        return out

    def nft(self, d: Nflog, ctx) -> str:
        out = ["log"] + ([f"prefix {quote(d.prefix, 'log prefix')}"] if d.prefix is not None else [])
        out += [f"snaplen {d.size}"] if d.size is not None else []
        out += [f"queue-threshold {d.threshold}"] if d.threshold else []
        return " ".join(out + [f"group {d.group}"])
