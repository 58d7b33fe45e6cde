"""`ipset save` output (and the `ipset restore` input made of the same commands) into model.IPSet.

What `ipset restore` 7.x reads (measured: tests/kernel/test_inputs_kernel.py): one command per line,
`#` comments, blank lines and `COMMIT`; `create`/`n`/`-N`, `add`/`a`/`-A`, `del`/`d`/`-D`,
`flush`/`-F`, `destroy`/`x`/`-X`, `rename`/`-E` and `swap`/`-W`, with `-exist`/`-!` anywhere on the
line; `list` and `save` change nothing; `test` fails for an absent element and, for a present one,
ends the restore there. It applies lines in order and stops at the first it refuses (a set created
twice, an element for a set that does not exist, an element added twice or deleted when absent,
without -exist); stockade refuses the file at that line (Unreadable), as the sets a ruleset would
see are then not the file's.

Sets are kept as written (type, create options, members); extensions/ipset.py reads them when a
packet asks. A set goes to the ruleset of its family (`family inet6`: IPv6; types without a
family serve both), as the policy compiler places its own.
"""
from __future__ import annotations

import shlex

from ..extensions.ipset import saved_create, saved_members
from ..model import Family, IPSet, Origin, Ruleset
from ..model.diagnostics import Diagnostic, ParseError, Unreadable

COMMANDS = {"create": "create", "n": "create", "-N": "create", "add": "add", "a": "add", "-A": "add",
            "del": "del", "d": "del", "-D": "del", "flush": "flush", "-F": "flush",
            "destroy": "destroy", "x": "destroy", "-X": "destroy", "rename": "rename", "e": "rename", "-E": "rename",
            "swap": "swap", "w": "swap", "-W": "swap", "test": "test", "t": "test", "-T": "test",
            "list": "list", "l": "list", "-L": "list", "save": "save", "s": "save", "-S": "save"}
EXIST = ("-exist", "-!")
UNSPEC = ("bitmap:port", "hash:mac", "list:set")  # NFPROTO_UNSPEC: either family (extensions/ipset.py)


def read_ipsets(text: str, file: str) -> dict[str, IPSet]:
    """The sets `ipset restore` makes of `text`, by name; Unreadable at the first line it would refuse."""
    sets: dict[str, IPSet] = {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped == "COMMIT":
            continue
        origin = Origin(file, n, len(line) - len(line.lstrip()) + 1)
        try:
            words = shlex.split(stripped)
        except ValueError as e:
            raise Unreadable(_error(f"ipset restore cannot read this line: {e}", origin)) from None
        try:
            if not ipset_command(sets, words, origin):
                break  # ipset 7 ends a restore at a test that succeeds: the lines after it are not read
        except ParseError as e:
            raise Unreadable(e.diagnostic(origin)) from None
    return sets


def ipset_command(sets: dict[str, IPSet], words: list[str], origin: Origin, saved: bool = False) -> bool:
    """Apply one ipset command to `sets`; ParseError where ipset refuses it (the sets are then unchanged);
    False for a `test` that succeeds (a restore ends there). `saved`: keep a set and its members as `ipset
    save` prints them (a script's sets, compared with the kernel's), not as written."""
    exist = any(w in EXIST for w in words)
    given, words = words, [w for w in words if w not in EXIST]
    cmd = COMMANDS.get(words[0]) if words else None
    if cmd is None:
        raise _refused(f"`{(words or given)[0]}` is not an ipset command ipset restore reads",
                       "an ipsets file holds `create NAME TYPE ...` and `add NAME ELEMENT` lines, "
                       "as `ipset save` prints them")
    if cmd in ("list", "save") and len(words) <= 2:
        if len(words) == 2 and words[1] not in sets:
            raise _refused(f"set {words[1]} does not exist here")
        return True
    if cmd in ("flush", "destroy") and len(words) == 1:
        for s in sets.values() if cmd == "flush" else ():
            s.members.clear()
        if cmd == "destroy":
            sets.clear()
        return True
    if len(words) < (3 if cmd in ("create", "add", "del", "rename", "swap", "test") else 2):
        raise _refused(f"ipset {cmd}: missing arguments", "e.g. `add NAME 192.0.2.1`")
    name = words[1]
    if cmd == "create":
        if name in sets and not exist:
            raise _refused(f"set {name} is created twice (ipset: the set already exists)",
                           "add -exist to the second create, or remove it")
        type_, options = saved_create(name, words[2], words[3:]) if saved else (words[2], tuple(words[3:]))
        sets.setdefault(name, IPSet(name, type_, options, [], origin))
        return True
    if name not in sets:
        raise _refused(f"set {name} does not exist here (ipset: the set with the given name does not exist)",
                       f"create it before this line: create {name} TYPE")
    s = sets[name]
    if cmd == "flush":
        s.members.clear()
    elif cmd == "destroy":
        del sets[name]
    elif cmd in ("rename", "swap"):
        other = words[2]
        if (other in sets) != (cmd == "swap"):
            raise _refused(f"ipset {cmd}: set {other} " + ("does not exist" if cmd == "swap" else "already exists"))
        if cmd == "rename":
            sets[other] = sets.pop(name)
            s.name = other
        else:
            sets[name], sets[other] = sets[other], s
            sets[name].name, s.name = name, other
    else:
        elements = saved_members(s.type, s.options, words[2]) if saved else [words[2]]
        present = [m for m in s.members if m.split()[0] in elements]
        if cmd == "test":
            if not present:
                raise _refused(f"element {words[2]} is not in set {name}: `ipset restore` fails at this test")
            return False
        if (bool(present) == (cmd == "add")) and not exist:
            raise _refused(f"element {words[2]} is {'already in' if present else 'not in'} set {name} "
                           f"(ipset refuses to {cmd} it)", "add -exist to the line, or remove it")
        if cmd == "add":
            tail = " ".join(words[3:])
            s.members += [f"{e} {tail}".rstrip() for e in elements if all(m.split()[0] != e for m in present)]
        else:
            s.members[:] = [m for m in s.members if m not in present]
    return True


def _refused(message: str, hint: str | None = None) -> ParseError:
    return ParseError(message, code="ipset", hint=hint)


def _error(message: str, origin: Origin, hint: str | None = None) -> Diagnostic:
    return Diagnostic("error", "ipset", message, origin, hint)


def family_of(s: IPSet) -> tuple[Family, ...]:
    """The families whose rules can match the set."""
    if s.type in UNSPEC:
        return (Family.IPV4, Family.IPV6)
    words = list(s.options)
    fam = words[words.index("family") + 1] if "family" in words[:-1] else "inet"
    return (Family.IPV6,) if fam == "inet6" else (Family.IPV4,)


def add_ipsets(rulesets: dict[Family, Ruleset], sets: dict[str, IPSet]) -> None:
    """Give each ruleset the sets of its family."""
    for s in sets.values():
        for fam in family_of(s):
            if fam in rulesets:
                rulesets[fam].sets[s.name] = s
