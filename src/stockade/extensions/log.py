"""-j LOG: a kernel log line for each packet (xt_LOG / nf_log_syslog)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.nft import quote
from .base import Extension, Option, register
from .values import check_printable, parse_c_uint, save_string

LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7,
          "panic": 0}
DEFAULT_LEVEL = 4  # iptables-save omits it
NFT_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
PREFIX_MAX = 29  # bytes; the kernel's field is 30 with the NUL, and iptables silently cuts longer ones
FLAGS = ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid", "--log-macdecode")


@dataclass(frozen=True)
class Log:
    """Non-terminating: the kernel logs the packet's headers (with `prefix`, at syslog `level`,
    plus what the flags ask for) and the packet goes on to the next rule."""

    prefix: str | None = None
    level: int = DEFAULT_LEVEL
    flags: frozenset[str] = frozenset()  # a subset of FLAGS


def log_level(word: str) -> int:
    if word in LEVELS:
        return LEVELS[word]
    try:
        return parse_c_uint(word, "log level", 0, 7)
    except ParseError:
        raise ParseError(f"LOG: unknown log level `{word}`", code="bad-value",
                         hint="use 0-7 or emerg, alert, crit, error, warning, notice, info, debug") from None


def log_prefix(word: str, what: str, limit: int) -> str:
    """A log prefix as LOG and NFLOG take it: at least one byte, at most `limit`, printable."""
    size = len(word.encode())
    if size == 0:
        raise ParseError(f"{what} is empty", code="bad-value", hint="give at least one character or drop the option")
    if size > limit:
        raise ParseError(f"{what} is {size} bytes; the kernel keeps at most {limit}", code="too-long",
                         hint="shorten it (iptables would silently cut it)")
    check_printable(word, what)
    return word


@register
class LogTarget(Extension):
    name = "LOG"
    classwise = True
    terminal = False
    logs = True
    kind = "target"
    options = (Option("--log-level"), Option("--log-prefix")) + tuple(Option(f, nargs=0) for f in FLAGS)

    def convert(self, opt, args, ctx):
        if opt.key == "log-level":
            return log_level(args[0])
        if opt.key == "log-prefix":
            return log_prefix(args[0], "LOG --log-prefix", PREFIX_MAX)
        return True

    def finish(self, acc, ctx):
        return Log(acc["log-prefix"][1] if "log-prefix" in acc else None,
                   acc["log-level"][1] if "log-level" in acc else DEFAULT_LEVEL,
                   frozenset(f for f in FLAGS if f.lstrip("-") in acc))

    def act(self, d: Log, pkt, env) -> None:
        """log_tg: a kernel log line (in a container's namespace only with nf_log_all_netns=1);
        the next rule runs."""
        prefix = f' prefix "{d.prefix}"' if d.prefix is not None else ""
        env.notes.append(f"LOG level {d.level}{prefix}")

    def save(self, d: Log) -> list[str]:
        out = ["--log-prefix", save_string(d.prefix)] if d.prefix is not None else []
        if d.level != DEFAULT_LEVEL:
            out += ["--log-level", str(d.level)]
        return out + [f for f in FLAGS if f in d.flags]

    def nft(self, d: Log, ctx) -> str:
        out = ["log"] + ([f"prefix {quote(d.prefix, 'log prefix')}"] if d.prefix is not None else [])
        out += [f"level {NFT_LEVELS[d.level]}"] if d.level != DEFAULT_LEVEL else []
        tcp = [n for flag, n in (("--log-tcp-sequence", "sequence"), ("--log-tcp-options", "options"))
               if flag in d.flags]
        out += [f"flags tcp {','.join(tcp)}"] if tcp else []
        for flag, text in (("--log-ip-options", "ip options"), ("--log-uid", "skuid"), ("--log-macdecode", "ether")):
            out += [f"flags {text}"] if flag in d.flags else []
        return " ".join(out)
