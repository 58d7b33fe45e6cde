"""Checks of what the host lets in, answered for whole packet classes (exact where cells are).

Each asks one question an admin would (do replies to my own connections come back? can
I still reach SSH? is loopback open? what happens to a closed port?) over the classes
of the filter hooks, and reports the classes whose answer is wrong.
"""
from __future__ import annotations

import ipaddress
from bisect import bisect_right

from ...model import Origin
from ...model.ranges import difference as iv_sub
from ...model.ranges import intersect as iv_and
from ...model.ranges import normalize as norm
from ...model.ranges import size as iv_size
from ...model.space import DPORT, DST, IIF, KIND, OIF, PROTO, SPORT, SRC
from ..cells import refine, relation
from ..diff import class_text, describe
from .catalogue import Finding, finding
from .context import Analysis

REPLIES = (("HTTPS", 6, 443), ("HTTP", 6, 80), ("DNS", 17, 53), ("NTP", 17, 123))


def _p(n: int):
    return ((n, n),)


def _devices(a: Analysis):
    lo = a.space.ifaces.index("lo")
    return iv_sub(((1, len(a.space.ifaces) - 1),), _p(lo))


def _wide(a: Analysis, box: dict, hook: str = "INPUT") -> bool:
    return a.wide(box, hook)


def _sure(o, verdict: str) -> bool:
    return o.verdict == verdict and o.may == {verdict}


def _cls(a: Analysis, box: dict, hook: str) -> str:
    return class_text(describe(a.space, box, hook))


def _ip(a: Analysis, addr: int) -> str:
    return str(ipaddress.IPv4Address(addr) if a.space.bits == 32 else ipaddress.IPv6Address(addr))


def _by(o) -> str:
    return f" ({o.rule})" if o.rule else ""


def established(a: Analysis) -> list[Finding]:
    bad = []
    for name, proto, port in REPLIES:
        out_new = a.classes("OUTPUT", **{PROTO: _p(proto), DPORT: _p(port), KIND: a.kind("NEW"),
                                         OIF: _devices(a)})
        if not any(c.outcome.verdict == "ACCEPT" for c in out_new):
            continue  # the host does not open such connections: their replies need not come back
        replies = a.classes("INPUT", a.wide,
                            **{PROTO: _p(proto), SPORT: _p(port), DPORT: ((1024, 65535),),
                               KIND: a.kind("ESTABLISHED"), IIF: _devices(a)})
        lost = sorted((c.outcome for c in replies if not _sure(c.outcome, "ACCEPT")),
                      key=lambda o: o.verdict == "UNKNOWN")  # a verdict stockade knows first
        if lost:
            bad.append((f"{name} (replies from {'tcp' if proto == 6 else 'udp'} port {port}: "
                        f"{lost[0].label()}{_by(lost[0])})", lost[0].verdict != "UNKNOWN"))
    if not bad:
        return []
    sure = sum(known for _, known in bad)
    how = "do not" if sure == len(bad) else "may not" if not sure else "do not (or may not)"
    return [finding("no-established", f"replies to this host's own connections {how} get back in: "
                    + "; ".join(text for text, _ in bad), a.anchor("INPUT"),
                    "accept them first: `-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`")]


def loopback(a: Analysis) -> list[Finding]:
    out = []
    lo = a.iface("lo")
    local = ((0x7F000000, 0x7FFFFFFF),) if a.space.bits == 32 else ((1, 1),)  # 127.0.0.0/8, ::1
    for hook, dim in (("INPUT", IIF), ("OUTPUT", OIF)):
        refused = [c for c in a.classes(hook, **{dim: lo, KIND: a.kind("NEW"), SRC: local, DST: local})
                   if not c.surely("ACCEPT")]
        if refused:  # a verdict stockade knows first (tcp, then by protocol and port); only unknown ones: it may not
            order = sorted(refused, key=lambda c: (c.box[PROTO] != ((6, 6),), c.box[PROTO], c.box[DPORT]))
            first = next((c for c in order if c.outcome.verdict != "UNKNOWN"), order[0])
            box, o = first.box, first.outcome
            more = f" and {len(refused) - 1} more class(es)" if len(refused) > 1 else ""
            how = "may not always accept" if o.verdict == "UNKNOWN" else "does not always accept"
            out.append(finding("no-loopback", f"{hook} {how} loopback traffic: "
                               f"{_cls(a, box, hook)}: {o.label()}{_by(o)}{more}", a.anchor(hook),
                               f"accept it first: `-A {hook} -{'i' if hook == 'INPUT' else 'o'} lo -j ACCEPT`"))
    return out


def _new_inbound(a: Analysis):
    """The wide classes of new inbound connections (the only ones the checks below look at)."""
    if "new_inbound" not in a.memo:
        a.memo["new_inbound"] = [(c.box, c.outcome) for c in
                                 a.classes("INPUT", a.wide, **{KIND: a.kind("NEW"), IIF: _devices(a)})]
    return a.memo["new_inbound"]


def filters(a: Analysis) -> bool:
    """Whether INPUT refuses any new connection from (nearly) anywhere: the family is filtered at all."""
    return any(o.may - {"ACCEPT"} for box, o in _new_inbound(a) if _wide(a, box))


def default_open(a: Analysis) -> list[Finding]:
    if a.policy("INPUT") != "ACCEPT":
        return []
    ports = {6: (), 17: ()}
    others = False
    for box, o in _new_inbound(a):
        if o.verdict != "ACCEPT" or not (o.rule or "").endswith("INPUT policy") or not _wide(a, box):
            continue
        for proto, have in ports.items():
            if iv_and(box[PROTO], _p(proto)):
                ports[proto] = norm(list(have) + list(box[DPORT]))
        if iv_sub(box[PROTO], norm([(1, 1), (6, 6), (17, 17), (58, 58)])):
            others = True
    open_ = [(n, v) for n, v in (("tcp", ports[6]), ("udp", ports[17])) if v]
    if not open_ and not others:
        return []
    wide = any(iv_size(v) > 32768 for _, v in open_)
    parts = [f"{n} ({iv_size(v)} of 65536 ports)" for n, v in open_] + (["other protocols"] if others else [])
    return [finding("default-open", "new connections fall through to the INPUT policy ACCEPT: "
                    + ", ".join(parts) + " are let in from anywhere, closed ports included", a.anchor("INPUT"),
                    "accept established/related, loopback and your services, then `-P INPUT DROP` "
                    "(or end INPUT with -j DROP / -j REJECT)", None if wide else "warning")]


def reject_drop_mixed(a: Analysis) -> list[Finding]:
    seen: dict[str, tuple] = {}
    for box, o in _new_inbound(a):
        if o.verdict in ("DROP", "REJECT") and _sure(o, o.verdict) and _wide(a, box) \
                and iv_and(box[PROTO], norm([(6, 6), (17, 17)])):
            seen.setdefault(o.verdict, (box, o))
    if len(seen) < 2:
        return []
    (rb, ro), (db, do) = seen["REJECT"], seen["DROP"]
    return [finding("reject-drop-mixed", f"closed ports answer in two ways: {_cls(a, rb, 'INPUT')} is REJECTed"
                    f"{_by(ro)} but {_cls(a, db, 'INPUT')} is DROPped{_by(do)}; a scan tells them apart and "
                    "clients of dropped ports wait for a timeout", a.anchor("INPUT"),
                    "close every port the same way: one final REJECT (or DROP) rule, or the policy alone")]


def ssh(a: Analysis, admins: list[int]) -> list[Finding]:
    out = []
    dims = {PROTO: _p(6), DPORT: _p(22), KIND: a.kind("NEW"), IIF: _devices(a)}

    def admin(box) -> bool:
        return any(lo <= addr <= hi for lo, hi in box[SRC] for addr in admins)

    classes = [(c.box, c.outcome) for c in a.classes("INPUT", lambda box: a.wide(box) or admin(box), **dims)]
    anchor = a.anchor("INPUT")
    for addr in admins:
        for box, o in classes:
            if any(lo <= addr <= hi for lo, hi in box[SRC]) and not _sure(o, "ACCEPT"):
                out.append(finding("no-admin-path", f"admin address {_ip(a, addr)} cannot always reach "
                                   f"SSH (tcp/22): {o.label()}{_by(o)}", anchor,
                                   "accept tcp/22 from the admin addresses before any rule that drops them",
                                   "error"))
    if not any("ACCEPT" in o.may for _, o in classes) \
            and not any("ACCEPT" in c.outcome.may for c in a.classes("INPUT", **dims)):  # the narrow ones too
        out.append(finding("no-admin-path", "no address can open an SSH connection (tcp/22): a remote admin is "
                           "locked out", anchor, "accept tcp/22 from your admin addresses "
                           "(`-A INPUT -p tcp -s ADMIN --dport 22 -j ACCEPT`), or say how the host is reached"))
    for box, o in classes:
        if _wide(a, box) and _sure(o, "ACCEPT"):
            src = describe(a.space, box, "INPUT")["src"]
            out.append(finding("ssh-open-to-all", f"SSH (tcp/22) accepts new connections from {src} "
                               f"with no per-source limit{_by(o)}", _origin_of(a, o) or anchor,
                               "allow tcp/22 only from admin addresses (-s), and limit new connections per source "
                               "(-m hashlimit --hashlimit-mode srcip, or -m recent)"))
            break
    return out


def _origin_of(a: Analysis, o) -> Origin | None:
    """The Origin of the rule that decided the example packet, if it is a file position."""
    if not o.rule or ":" not in o.rule:
        return None
    file, _, rest = o.rule.rpartition(":")
    file, _, line = file.rpartition(":")
    try:
        return Origin(file, int(line), int(rest))
    except ValueError:
        return None


def block_after_accept(a: Analysis) -> list[Finding]:
    """A DROP of particular sources that comes after ACCEPT rules for some of their packets.

    Only the classes whose deciding entry is an ACCEPT above the last block can leak: the parts of
    INPUT where no such entry is left are not cut into classes at all (a blocklist of 10,000
    addresses ahead of its accepts leaves none), and each class is met with the blocks below its
    ACCEPT only."""
    ents = a.entries("INPUT")
    index = {id(e): i for i, e in enumerate(ents)}
    full = iv_size(a.space.universe[SRC])
    blocks = [(i, e) for i, e in enumerate(ents) if e.action in ("DROP", "REJECT") and SRC in e.cons.dims
              and iv_size(e.cons.dims[SRC]) * 256 < full and not e.cons.residual]
    if not blocks:
        return []
    new = a.kind("NEW")
    at_block = [i for i, _ in blocks]
    last_block = at_block[-1]

    def accepts(e) -> bool:
        return e.action == "ACCEPT" and not e.cons.residual and index[id(e)] < last_block

    def prune(box, kept_lists) -> bool:
        return not iv_and(box[KIND], new) or not any(accepts(e) for e in kept_lists[0])

    leaks: dict[int, list[str]] = {}
    for start in a.space.start_boxes("INPUT"):
        for box, (kept,) in refine(a.space, start, [ents], lambda e: e.cons, prune=prune):
            last = kept[-1]
            if not accepts(last):
                continue
            box = dict(box, **{KIND: new})
            at = index[id(last)]
            for i, blk in blocks[bisect_right(at_block, at):]:
                if relation(blk.cons, box)[0] != "none":
                    leaks.setdefault(i, []).append(
                        f"{_cls(a, dict(box, **{SRC: iv_and(box[SRC], blk.cons.dims[SRC])}), 'INPUT')} "
                        f"(accepted by line {last.flat.rule.origin.line if last.flat.rule.origin else '?'})")
    out = []
    for i, blk in blocks:
        found = leaks.get(i)
        if found:
            rule = blk.flat.rule
            out.append(finding("block-after-accept", f"this {blk.action} comes after rules that accept the same "
                               f"sources: {'; '.join(found[:3])}" + (f" and {len(found) - 3} more" if len(found) > 3
                                                                       else ""),
                               (rule.origin if rule else None) or a.anchor("INPUT"),
                               "put blocks first (one ipset lookup at the top of INPUT), before any ACCEPT"))
    return out

