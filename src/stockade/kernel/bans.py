"""Bans: addresses other tools (fail2ban, through `stockade ban`) put into the policy's ban sets at run
time, each element expiring on its own; a ban costs one set element, never a rule.

The ban sets (policy/compile.py `ban_set`: stk-bans4, stk-bans6) are compiled empty; what they hold is
state, not policy: left out of the live part's text (so a ban is no drift and changes no version),
and carried into every new generation by transaction.py, so bans outlive `apply`, rollbacks and
repairs with the time they have left. `ban`/`unban` hold the namespace's lock, so no transaction can
run between reading the live sets and writing them.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import time

from ..model import Family
from ..policy.compile import BAN_SET, ban_set
from ..policy.schema import BAN_TIMEOUT_MAX
from .backend import TABLE
from .host import Host, KernelError

CHUNK = 2000  # elements per nft statement
_ADD = re.compile(rf"^add ({BAN_SET}[46])-([abc]) (\S+)(?: timeout (\d+))?", re.MULTILINE)


def nft_name(family: Family) -> str:
    return f"{'ip' if family is Family.IPV4 else 'ip6'}_{ban_set(family)}"


def live_generation(host: Host, backend: str) -> dict[str, str]:
    """iptables: the physical name of each ban set the live rules match on (`stk-bans4` -> `stk-bans4-a`)."""
    from .live import save_text

    out = {}
    for family in (4, 6):
        for name, gen in re.findall(rf"--match-set ({BAN_SET}[46])-([abc]) ", save_text(host, backend, family)):
            out[name] = f"{name}-{gen}"
    return out


def current(host: Host, backend: str) -> dict[str, dict[str, int]]:
    """The live bans: logical set name -> {address: seconds left}."""
    out: dict[str, dict[str, int]] = {}
    if backend == "nftables":
        for family in (Family.IPV4, Family.IPV6):
            proc = host.run(["nft", "-j", "list", "set", "inet", TABLE, nft_name(family)], check=False)
            if proc.returncode != 0:
                continue
            members = out.setdefault(ban_set(family), {})
            for item in json.loads(proc.stdout)["nftables"]:
                for e in item.get("set", {}).get("elem", []):
                    elem = e.get("elem", {}) if isinstance(e, dict) else {}
                    addr = elem.get("val", e if isinstance(e, str) else None)
                    if addr is not None:
                        members[str(addr)] = int(elem.get("expires", elem.get("timeout", 0)))
        return out
    from .live import ipset_save

    physical = live_generation(host, backend)
    for name, gen, addr, left in _ADD.findall(ipset_save(host)):
        if physical.get(name) == f"{name}-{gen}":
            out.setdefault(name, {})[addr] = int(left or 0)
    for name in physical:
        out.setdefault(name, {})
    return out


def carried_nft(host: Host, target_text: str) -> str:
    """`add element` statements putting the live bans into the sets of `target_text` (same nft file)."""
    lines = []
    for name, members in current(host, "nftables").items():
        family = Family.IPV4 if name.endswith("4") else Family.IPV6
        if f"set {nft_name(family)} {{" not in target_text or not members:
            continue
        items = [f"{a} timeout {max(1, left)}s" for a, left in members.items()]
        for i in range(0, len(items), CHUNK):
            lines.append(f"add element inet {TABLE} {nft_name(family)} {{ {', '.join(items[i:i + CHUNK])} }}")
    return "".join(f"{ln}\n" for ln in lines)


def carried_ipset(ipset_text: str, live_gens: set[str], target_creates: str, gen: str) -> str:
    """`ipset restore` lines putting the bans of the live generation(s) into generation `gen`'s sets
    (those of `target_creates`, the target's create lines: not its million adds)."""
    wanted = set(re.findall(rf"^create ({BAN_SET}[46]) ", target_creates, re.MULTILINE))
    best: dict[tuple[str, str], int] = {}
    for name, g, addr, left in _ADD.findall(ipset_text):
        if name in wanted and g in live_gens:
            best[(name, addr)] = max(best.get((name, addr), 0), int(left or 0))
    return "".join(f"add {name}-{gen} {addr} timeout {max(1, left)} -exist\n" for (name, addr), left in best.items())


def _address(text: str) -> tuple[str, Family]:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise KernelError(f"`{text[:64]}` is not an IP address", hint="a ban is one address, e.g. 192.0.2.9") \
            from None
    return str(ip), Family(ip.version)


def _where(host: Host, backend: str, family: Family) -> str:
    if backend == "nftables":
        proc = host.run(["nft", "list", "set", "inet", TABLE, nft_name(family)], check=False)
        if proc.returncode == 0:
            return nft_name(family)
    else:
        name = live_generation(host, backend).get(ban_set(family))
        if name:
            return name
    raise KernelError(f"no live ban set for IPv{int(family)}",
                      hint="add a [bans] section to the policy and `stockade apply` it")


def _here(netns: str | None) -> tuple[Host, object]:
    """The host and state to ban in. Without --netns, the named namespace this process runs in, if any
    (fail2ban run with `ip netns exec NAME` calls the action there): its state, so its lock, is NAME's."""
    from .netns import NETNS_DIR
    from .state import State

    if netns is None:
        me = os.stat("/proc/self/ns/net")
        try:
            named = sorted(NETNS_DIR.iterdir())
        except OSError:
            named = []
        for p in named:
            try:
                st = os.stat(p)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
                return Host(None, inside=p.name), State.for_netns(p.name)
    return Host(netns), State.for_netns(netns)


def ban(netns: str | None, address: str, timeout: int | None) -> dict:
    """Ban `address` for `timeout` seconds (the set's default if None; <= 0: as long as a set allows)."""
    from . import backend as backends
    from .lock import locked

    addr, family = _address(address)
    host, state = _here(netns)
    with locked(state.dir / "lock"):
        applied = state.read("applied")
        backend = backends.choose(host, "auto", applied and applied.get("backend"))
        where = _where(host, backend, family)
        life = None if timeout is None else (BAN_TIMEOUT_MAX if timeout <= 0 else min(timeout, BAN_TIMEOUT_MAX))
        if backend == "nftables":
            spec = addr + (f" timeout {life}s" if life else "")
            host.run(["nft", "add", "element", "inet", TABLE, where, f"{{ {spec} }}"])
        else:
            host.run(["ipset", "add", where, addr, *(["timeout", str(life)] if life else []), "-exist"])
    return {"banned": addr, "set": where, "timeout": life, "at": time.time()}


def unban(netns: str | None, address: str) -> dict:
    from . import backend as backends
    from .lock import locked

    addr, family = _address(address)
    host, state = _here(netns)
    with locked(state.dir / "lock"):
        applied = state.read("applied")
        backend = backends.choose(host, "auto", applied and applied.get("backend"))
        where = _where(host, backend, family)
        if backend == "nftables":
            proc = host.run(["nft", "delete", "element", "inet", TABLE, where, f"{{ {addr} }}"], check=False)
        else:
            proc = host.run(["ipset", "del", where, addr], check=False)
    return {"unbanned": addr, "set": where, "was_banned": proc.returncode == 0}
