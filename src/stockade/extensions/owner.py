"""-m owner: the local socket (user, group) that sent a packet; only locally generated
packets have one, so the kernel allows the match in OUTPUT and POSTROUTING only."""
from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass

from ..model import BUILTIN_CHAINS
from ..model.diagnostics import ParseError
from ..model.nft import Part, span
from .base import Extension, Option, register
from .values import parse_c_uint

HOOKS = ("OUTPUT", "POSTROUTING")
MAX_ID = 2**32 - 2  # (uid_t)-1 means "no id"


@dataclass(frozen=True)
class IdRange:
    """True when the id is within lo..hi inclusive; `!` negates."""

    lo: int
    hi: int
    invert: bool = False


@dataclass(frozen=True)
class OwnerMatch:
    """True when every given test holds for the packet's local socket. socket: one is
    attached (False: none is); uid/gid: the fsuid/fsgid of the process that opened the
    socket is in range (each negated by its `!`); suppl_groups: the gid test also accepts
    that process's supplementary groups. A packet without a socket (forwarded traffic)
    matches only when every given test is negated; a reply the kernel makes itself (ICMP
    error, RST) comes from its control socket, which has no file: --socket-exists holds and
    uid/gid tests hold only negated."""

    socket: bool | None = None  # True: --socket-exists, False: ! --socket-exists
    uid: IdRange | None = None
    gid: IdRange | None = None
    suppl_groups: bool = False


def parse_ids(word: str, what: str, lookup) -> tuple[int, int]:
    """A user/group name (resolved now, as iptables does, to print its number), or ID[-ID] / ID[:ID]."""
    try:
        ident = lookup(word)
        return ident, ident
    except KeyError:
        pass
    sep = next((c for c in word if c in "-:"), None)
    first, _, last = word.partition(sep) if sep else (word, "", "")
    try:
        lo = parse_c_uint(first, what, 0, MAX_ID)
        hi = parse_c_uint(last, what, 0, MAX_ID) if sep else lo
    except ParseError:
        raise ParseError(f"owner: `{word}` is neither a known name nor a number or range for {what}",
                         code="bad-owner", hint="names must exist on this machine; numbers avoid that") from None
    if lo > hi:
        raise ParseError(f"owner: range `{word}` is backwards ({lo} > {hi})", code="bad-range", hint=f"write {hi}-{lo}")
    return lo, hi


@register
class OwnerMatchExt(Extension):
    name = "owner"
    undecidable = "the sending socket's owner is no dimension"
    options = (Option("--uid-owner", invertible=True), Option("--gid-owner", invertible=True),
               Option("--socket-exists", nargs=0, invertible=True), Option("--suppl-groups", nargs=0))

    def convert(self, opt, args, ctx):
        if opt.key == "uid-owner":
            return parse_ids(args[0], "--uid-owner", lambda n: pwd.getpwnam(n).pw_uid)
        if opt.key == "gid-owner":
            return parse_ids(args[0], "--gid-owner", lambda n: grp.getgrnam(n).gr_gid)
        return True

    def parse(self, acc, opt, invert, args, ctx):
        if opt.key == "suppl-groups" and "gid-owner" not in acc:
            raise ParseError("owner: --suppl-groups must come after --gid-owner", code="missing-option",
                             hint="write --gid-owner GROUP --suppl-groups")
        super().parse(acc, opt, invert, args, ctx)

    def finish(self, acc, ctx):
        if not acc:
            raise ParseError("owner: one of --uid-owner, --gid-owner or --socket-exists is required",
                             code="missing-option")
        if ctx.chain in BUILTIN_CHAINS.get(ctx.table, ()) and ctx.chain not in HOOKS:
            raise ParseError(f"owner: packets in {ctx.chain} have no local socket owner", code="wrong-chain",
                             hint="the kernel allows -m owner only in OUTPUT and POSTROUTING")
        uid, gid = ((IdRange(*acc[k][1], acc[k][0]) if k in acc else None) for k in ("uid-owner", "gid-owner"))
        socket = (not acc["socket-exists"][0]) if "socket-exists" in acc else None
        return OwnerMatch(socket, uid, gid, "suppl-groups" in acc)

    def holds(self, d: OwnerMatch, pkt, env) -> bool | None:
        """owner_mt. Forwarded packets have no socket: then every given test must be negated (and,
        as the kernel compares all option bits, --suppl-groups makes it false). A locally sent packet
        is taken to come from a socket with a file whose fsuid/fsgid are pkt.uid/pkt.gid; with
        neither given the socket is unknown (None), and so is any id the rule needs but lacks."""
        if pkt.hook == "FORWARD":
            return all(t is None or t.invert for t in (d.uid, d.gid)) and d.socket is not True \
                and not d.suppl_groups
        if pkt.hook != "OUTPUT" or (pkt.uid is None and pkt.gid is None):
            return None
        if d.socket is False:
            return False
        if d.uid is not None:
            if pkt.uid is None:
                return None
            if (d.uid.lo <= pkt.uid <= d.uid.hi) == d.uid.invert:
                return False
        if d.gid is not None:
            if pkt.gid is None:
                return None
            hit = d.gid.lo <= pkt.gid <= d.gid.hi
            if not hit and d.suppl_groups:
                if pkt.groups is None:
                    return None
                hit = any(d.gid.lo <= g <= d.gid.hi for g in pkt.groups)
            if hit == d.gid.invert:
                return False
        return True

    def save(self, d: OwnerMatch) -> list[str]:
        out = [] if d.socket is None else ([] if d.socket else ["!"]) + ["--socket-exists"]
        for flag, r in (("--uid-owner", d.uid), ("--gid-owner", d.gid)):
            if r is not None:
                out += (["!"] if r.invert else []) + [flag, str(r.lo) if r.lo == r.hi else f"{r.lo}-{r.hi}"]
        return out + (["--suppl-groups"] if d.suppl_groups else [])

    def nft(self, d: OwnerMatch, ctx) -> list[Part]:
        """meta skuid/skgid need a socket with a file, and fail without one; xt_owner's negated tests
        then hold, its --socket-exists has no nft counterpart, nor do supplementary groups."""
        if d.socket is not None or d.suppl_groups:
            raise ctx.fail("owner: --socket-exists and --suppl-groups have no nftables equivalent")
        parts = []
        for key, r in (("skuid", d.uid), ("skgid", d.gid)):
            if r is None:
                continue
            if r.invert:
                raise ctx.fail(f"owner: a negated {key[2:]} test holds for packets without a socket in iptables, "
                               f"`{key} !=` does not")
            parts.append(Part(f"{key} {span(r.lo, r.hi)}"))
        return parts
