"""Changing stockade's part of the live ruleset in one step; if any part fails, nothing changes.

nftables: one `nft -f` file that creates, deletes and re-creates `table inet stockade`; the
kernel commits the file as one transaction, both families and all sets together. When the live table
is the one stockade applied last (no drift) and the new one differs from what that apply rendered only
in its group sets' members (`nft_shape`, kept in the applied record), the members that differ are
deleted and added in place instead, in one nf_tables transaction (sets.py): a million-entry table
is not reloaded for a few thousand changed members.

iptables: three steps; the first changes nothing packets meet.
 1. The target's sets are created under a generation's names the live rules do not use (`stk-x-b`
    while they use `stk-x-a`) and filled with `ipset restore`, large sets by one process per CPU at once
    (`_restore_sets`): the live rules do not see them yet.
    (A swap of a temporary set into the live name would change what the *old* rules match before
    the rules themselves change; new names avoid that mixed state.)
 2. `iptables-restore --noflush` for IPv4: only stockade's chains (declared, so flushed, and
    refilled), its hooks and the filter policies change. iptables-nft commits the whole file as
    one nf_tables transaction; iptables-legacy commits table by table (raw, then filter).
 3. The same for IPv6. If step 2 or 3 fails, whatever was committed (IPv4, or a table legacy
    committed before the failing one) is put back from the live part read before step 1, and
    the new sets are destroyed.
Then the old generation's sets are destroyed. Ban sets (kernel/bans.py) are filled, in step 1 or in the
nft file, with the bans live before, each with the time it has left.
When the rules are the same and only sets' members differ (a re-applied policy whose blocklist
changed), none of this happens: the members that differ are added and deleted in the live sets, in
one `ipset restore` (sets.py), and the rules are not touched. Between the commits of steps 2 and 3 (a few
milliseconds) IPv4 already has the new rules and IPv6 the old ones: the two families switch one
after the other, never a rule at a time. A journal on disk names both parts for that window, so
a process killed inside it is reported as an alarm by every command and undone by `stockade repair`
or the next apply (which says what it undid). A transaction that fails removes its journal.
"""
from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor

from . import sets
from .backend import TABLE, tool
from .bans import BAN_SET, carried_ipset, carried_nft
from .host import Host, KernelError
from .live import save_text
from .part import OwnedPart, OwnedTable, own_iptables, parse_owned
from .state import State

ORDER = ("raw", "mangle", "nat", "filter", "security")


def nft_file(body: str) -> str:
    return f"table inet {TABLE}\ndelete table inet {TABLE}\n{body}"


def apply(host: Host, live: OwnedPart, target: OwnedPart, state: State | None = None) -> None:
    """Make `target` stockade's live part (the caller holds the lock). KernelError if it cannot be done;
    then the live part is still `live`."""
    if target.backend == "nftables":
        changes = nft_members_only(live, target, state)
        if changes is not None:
            sets.update(host, target.backend, changes)
            return
        body = target.text.get("nft", "")
        host.run(["nft", "-f", "-"], input=nft_file(body) + carried_nft(host, body))  # bans: one transaction
        return
    changes = members_only(live, target)
    if changes is not None:
        sets.update(host, target.backend, changes)
        return
    if state is not None:
        state.write("journal", {"from": live.to_json(), "to": target.to_json()})
    try:
        _iptables(host, live, target)
    except KernelError:
        from .live import read_part
        if state is not None and read_part(host, live.backend).digest == live.digest:
            state.remove("journal")  # put back by _iptables: nothing is left half done
        raise
    if state is not None:
        state.remove("journal")


def _sets(text: str) -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """`ipset save` lines with logical names, creates then adds sorted (part.own_ipsets) -> per set, (type
    and family, members). Each set's adds are one block of lines: cut out and split whole, a million
    members without a Python step each."""
    out = {}
    head = text.split("\nadd ", 1)[0]  # the creates: a million adds are not searched for them
    for name, kind, family in re.findall(r"^create (\S+) (\S+)(?: family (\S+))?", head, re.MULTILINE):
        prefix = f"add {name} "
        first = text.find("\n" + prefix)
        if first < 0:
            out[name] = ((kind, family), [])
            continue
        last = text.rfind("\n" + prefix)
        end = text.find("\n", last + 1)
        block = text[first + 1:end if end >= 0 else len(text)]
        members = block.replace(prefix, "").split("\n")
        if block.count(prefix) != len(members):  # not one block: the slow way
            members = re.findall(rf"^{re.escape(prefix)}(.+)$", text, re.MULTILINE)
        out[name] = ((kind, family), members)
    return out


def _maxelem(text: str, name: str) -> int:
    m = re.search(rf"^create {re.escape(name)} .* maxelem (\d+)", text, re.MULTILINE)
    return int(m.group(1)) if m else 65536


def members_only(live: OwnedPart, target: OwnedPart) -> list[sets.SetChange] | None:
    """iptables: the changes of set members that turn `live` into `target`, if its rules are the same and
    its sets the same sets (type, family, room for the new members); None when anything else differs."""
    if target.backend == "nftables" or live.backend != target.backend or live.empty or \
            any(live.text.get(f) != target.text.get(f) for f in ("4", "6")):
        return None
    old, new = _sets(live.text.get("sets", "")), _sets(target.text.get("sets", ""))
    creates = live.text.get("sets", "").split("\nadd ", 1)[0]
    if {n: k for n, (k, _) in old.items()} != {n: k for n, (k, _) in new.items()} or \
            any(len(m) > _maxelem(creates, n) for n, (_, m) in new.items()):
        return None
    return [sets.change(n, old[n][1], m, target.backend) for n, (_, m) in new.items()]


# The members of a policy group's set (stk-GROUP-ip4 ...; not ban sets, whose members are state): nft lists
# them its own way, the rendered file as stockade writes them; the rest of either text is compared whole.
# (Each pattern starts with the literal `set `, which re finds by a fast search: a million members' text
# is not tried character by character.)
_GROUP_SET = re.compile(r"(set ((?:ip6?_)?stk-\S+-(?:ip|net)[46]) \{[^}]*?elements = \{)([^}]*)\}")


# A group hash set's `size` (twice its members when rendered, as ipset's maxelem): room, not membership.
# It comes before the elements: the search stops at their `=`, not at the end of a million of them.
_SIZE = re.compile(r"(set ((?:ip6?_)?stk-\S+-(?:ip|net)[46]) \{[^}=]*?\bsize )(\d+)")


def nft_shape(text: str) -> str:
    """A rendered nft part without its group sets' members and sizes: what must be unchanged for an
    in-place update."""
    return hashlib.sha256(_SIZE.sub(r"\1N", _GROUP_SET.sub(r"\1}", text)).encode()).hexdigest()[:12]


def _nft_members(text: str) -> dict[str, list[str]]:
    """Each group set's members (by logical name) in an nft text, rendered or listed."""
    return {re.sub(r"^ip6?_", "", name): body.replace(",", " ").split() for _, name, body in _GROUP_SET.findall(text)}


def nft_members_only(live: OwnedPart, target: OwnedPart, state: State | None) -> list[sets.SetChange] | None:
    """nftables: the member changes that turn `live` into `target`, if the live part is the one stockade
    applied last (no drift) and the target differs from what that apply rendered only in its group sets'
    members; None when anything else differs (the table is then replaced whole)."""
    rec = state.read("applied") if state is not None else None
    if rec is None or live.backend != "nftables" or rec.get("backend") != "nftables" or \
            rec.get("version") != live.digest or rec.get("shape") != nft_shape(target.text.get("nft", "")):
        return None
    old, new = _nft_members(live.text.get("nft", "")), _nft_members(target.text.get("nft", ""))
    room = {re.sub(r"^ip6?_", "", name): int(size) for _, name, size in _SIZE.findall(live.text.get("nft", ""))}
    if any(len(m) > room[n] and len(set(m)) > room[n] for n, m in new.items() if n in room):
        return None  # a hash set is as large as it was made: more members need a new one
    names = set(re.findall(r"set ((?:ip6?_)?stk-\S+-(?:ip|net)[46]) \{", target.text.get("nft", "")))
    if any(sets.nft_name(re.sub(r"^ip6?_", "", n)) != n for n in names):
        return None
    return [sets.change(n, old.get(n, []), new.get(n, []), "nftables", listed=True)
            for n in sorted(re.sub(r"^ip6?_", "", n) for n in names)]


def recover(host: Host, state: State) -> bool:
    """Finish an iptables transaction a killed process left half done: restore the part it started
    from. True if there was one."""
    j = state.read("journal")
    if j is None:
        return False
    before = OwnedPart.from_json(j["from"])
    from .live import read_part
    _iptables(host, read_part(host, before.backend), before, OwnedPart.from_json(j["to"]))
    state.remove("journal")
    return True


def _iptables(host: Host, live: OwnedPart, target: OwnedPart, interrupted: OwnedPart | None = None) -> None:
    """The three steps. `interrupted`: the part a killed transaction was changing to, whose sets may be
    left in the kernel without a rule that uses them (killed between the two families' commits, a set
    only the other family's rules would have used), so its set names count as stockade's too."""
    b = target.backend
    raw = {f: save_text(host, b, f) for f in (4, 6)}
    gens = {f: {n[-1] for n in re.findall(r"--match-set (stk-\S+-[abc]) ", raw[f])} for f in (4, 6)}
    # Each family's rules use one generation (two only after a crash between the family commits): a
    # third is always free for the new sets.
    gen = next(g for g in "abc" if g not in gens[4] | gens[6])
    texts = (live, target) if interrupted is None else (live, target, interrupted)
    ours = set(re.findall(r"^create (stk-\S+) ", "".join(_creates(p.text.get("sets", "")) for p in texts),
                          re.MULTILINE))
    names = _set_names(host)  # not `ipset save`: a million live members would be listed for their names
    existing = [n for n in names if re.fullmatch(r"stk-\S+-[abc]", n) and n[:-2] in ours]
    for name in existing:  # leftovers of an interrupted transaction: nothing references them
        if name.endswith(f"-{gen}"):
            host.run(["ipset", "destroy", name])
    creates = _creates(target.text.get("sets", ""))
    new_sets = [f"{ln.split()[1]}-{gen}" for ln in creates.splitlines()]
    bans = "".join(host.run(["ipset", "save", n]).stdout for n in existing if n.startswith(BAN_SET))
    try:
        _restore_sets(host, _physical(target.text.get("sets", ""), gen) + carried_ipset(
            bans, gens[4] | gens[6], creates, gen))  # bans, with the time they have left
        host.run([tool(b, 4, "restore"), "--noflush"], input=restore_text(live.text["4"], target.text["4"], gen))
        host.run([tool(b, 6, "restore"), "--noflush"], input=restore_text(live.text["6"], target.text["6"], gen))
    except KernelError:
        for f in (4, 6):  # put back what was committed: IPv4 when IPv6 failed, tables iptables-legacy committed
            raw_now = save_text(host, b, f)
            now = own_iptables(raw_now)
            # the same rules on the new generation's sets count as changed: they hold those sets
            if now != live.text[str(f)] or re.search(rf"--match-set stk-\S+-{gen} ", raw_now):
                host.run([tool(b, f, "restore"), "--noflush"],
                         input=restore_text(now, live.text[str(f)], min(gens[f] or {gen})))
        _destroy(host, new_sets, check=False)
        raise
    _destroy(host, [n for n in existing if not n.endswith(f"-{gen}")], check=False)


def _creates(sets_text: str) -> str:
    """The create lines that begin a sets text (part.own_ipsets: creates, then adds): a million adds
    are not searched for them."""
    head, sep, _ = sets_text.partition("\nadd ")
    return head + "\n" if sep else sets_text


def _set_names(host: Host) -> list[str]:
    return host.run(["ipset", "list", "-n"]).stdout.split()


STAGE_BYTES = 1 << 20  # adds beyond this are shared among `ipset restore` processes loading at once


def _restore_sets(host: Host, text: str) -> None:
    """`ipset restore` of a new generation's sets, which no rule references yet. Past STAGE_BYTES of
    adds, one process creates every set, then one process per CPU (at most 4) loads an equal share of
    the adds, all at once, a large set cut between processes. Each starts with `create ... -exist` of
    the sets it adds to: ipset asks the kernel for the type of a set it did not create itself at every
    add, which doubles its cost (750k adds: 11.6 s, against 5.4 s), and two processes adding to one
    set then wait for each other. A part that fails fails the stage, which the caller undoes by
    destroying the new sets (the live rules never saw them)."""
    head, sep, adds = text.partition("\nadd ")
    stages = min(4, len(os.sched_getaffinity(0)))
    blocks = _blocks(sep + adds)
    named = [(b[5:b.index(" ", 5)], b) for b in blocks or ()]  # (set, its adds)
    creates = {ln.split()[1]: ln for ln in head.splitlines() if ln.startswith("create ")}
    if stages < 2 or len(adds) < STAGE_BYTES or len(creates) != len(head.splitlines()) or blocks is None or \
            not {name for name, _ in named} <= creates.keys():
        host.run(["ipset", "restore"], input=text)
        return
    host.run(["ipset", "restore"], input=head + "\n")
    share = -(-len(adds) // stages)
    pieces = []
    for name, block in named:  # each set's adds cut, at line starts, into pieces of at most about a share
        at = 0
        while at < len(block):
            cut = block.find("\nadd ", at + share) if len(block) - at > share else -1
            pieces.append((name, block[at:cut if cut >= 0 else len(block)]))
            at = cut if cut >= 0 else len(block)
    parts: list[list[str]] = [[] for _ in range(stages)]
    for name, piece in sorted(pieces, key=lambda p: -len(p[1])):  # the largest first, to the lightest part
        min(parts, key=lambda p: sum(map(len, p))).append(f"{creates[name]} -exist{piece}\n")
    inputs = ["".join(p) for p in parts if p]
    with ThreadPoolExecutor(len(inputs)) as pool:  # each thread waits on its process, without the GIL
        list(pool.map(lambda part: host.run(["ipset", "restore"], input=part), inputs))


def _blocks(adds: str) -> list[str] | None:
    """`adds` ("\\nadd ..." lines) cut into each set's block of lines; None unless each set's are one
    block."""
    out, at = [], 0
    while at < len(adds) and adds[at:] != "\n":
        end = adds.find(" ", at + 5)
        if not adds.startswith("\nadd ", at) or end < 0:
            return None
        prefix = adds[at:end + 1]
        stop = adds.find("\n", adds.rfind(prefix) + 1)
        block = adds[at:stop if stop >= 0 else len(adds)]
        if block.count("\nadd ") != block.count(prefix):
            return None  # another set's adds inside this one's
        out.append(block)
        at += len(block)
    return out


def _destroy(host: Host, names: list[str], check: bool = True) -> None:
    live = set(_set_names(host))
    for n in names:
        if n in live:
            host.run(["ipset", "destroy", n], check=check)


def _physical(text: str, gen: str) -> str:
    """Logical set names (in `ipset save` lines or rules) with the generation suffix. When the text is
    creates (and rules) and then each set's adds in one block, as part.own_ipsets writes it, a block (a
    million lines) is renamed by one replace, not a step per line."""
    head, sep, adds = text.partition("\nadd ")
    blocks = _blocks(sep + adds) if sep else []
    if blocks is None or any(not b.startswith("\nadd stk-") for b in blocks) or "--match-set" in adds:
        return _renamed(text, gen)
    out = [_renamed(head, gen)]
    for b in blocks:
        prefix = b[:b.index(" ", 5) + 1]
        out.append(b.replace(prefix, f"{prefix[:-1]}-{gen} "))
    return "".join(out) + ("\n" if text.endswith("\n") and blocks else "")


def _renamed(text: str, gen: str) -> str:
    text = re.sub(r"^(create|add) (stk-\S+)", lambda m: f"{m.group(1)} {m.group(2)}-{gen}", text, flags=re.MULTILINE)
    return re.sub(r"--match-set (stk-\S+)", lambda m: f"--match-set {m.group(1)}-{gen}", text)


def restore_text(live_text: str, target_text: str, gen: str) -> str:
    """`iptables-restore --noflush` input turning the live part into the target part."""
    live, target = parse_owned(live_text), parse_owned(target_text)
    out = []
    for name in sorted(set(live) | set(target), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        L, T = live.get(name, OwnedTable()), target.get(name, OwnedTable())
        out.append(f"*{name}")
        out += [f":{c} {p} [0:0]" for c, p in T.policies.items()]
        out += [f":{c} - [0:0]" for c in T.chains + [c for c in L.chains if c not in T.chains]]
        out += ["-D" + h[2:] for h in L.hooks if h not in T.hooks]
        for h in T.hooks:
            if h not in L.hooks:
                chain = h.split()[1]
                out.append(f"-I {chain} 1" + h[2 + 1 + len(chain):] if chain == "DOCKER-USER" else h)
        out += [_physical(r, gen) for r in T.rules]
        out += [f"-X {c}" for c in L.chains if c not in T.chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n"
