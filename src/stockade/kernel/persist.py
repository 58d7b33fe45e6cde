"""`stockade persist`: the confirmed ruleset where this system loads it at boot.

Where, by what the system has (under --root, default / or STOCKADE_ROOT, so tests never touch /etc):
  nftables with /etc/nftables.conf (Debian) or /etc/sysconfig/nftables.conf (Fedora/RHEL): the table
    goes to /etc/stockade/stockade.nft and the config gets one `include` line for it;
  iptables with /etc/iptables/ (Debian's iptables-persistent): rules.v4, rules.v6 and ipsets there;
  iptables with /etc/sysconfig/iptables-config (RHEL's iptables-services): iptables, ip6tables, ipset;
  otherwise: the files in /etc/stockade/ and a `stockade-restore` systemd unit, enabled, that loads
    them before the network comes up.
`stockade remove` takes all of it out again (`unpersist`): stockade's own files and units deleted,
its blocks and its `include` line cut from the files it shares with the admin.
A confirmed policy with feeds also gets `stockade feeds update` run at the shortest `refresh` of its
feeds: a `stockade-feeds` systemd timer, enabled, where the root has systemd, else /etc/cron.d/stockade-feeds.
The iptables boot files are shared with the admin (netfilter-persistent and iptables-services
load each as a whole, flushing the tables it names): stockade writes only its block in each table,
between `# stockade begin` and `# stockade end` (its ownership mark; the rest, the admin's NAT and
VPN rules, stays as it was), and a first line `# stockade version V` for --status. The block
declares DOCKER-USER when the part hooks it, so the files load at boot before Docker exists; Docker
reuses a DOCKER-USER chain it finds (libnetwork: NewChain only if missing, then appends its RETURN
and inserts the FORWARD jump), so the hook stays first in it.
Every file is checked before it becomes a boot file: all of them are loaded, in the order the boot
loads them, into a throwaway network namespace; then each is written atomically and durably
(files.py), included files before the config that includes them, with the old file's mode (or an
explicit one).
"""
from __future__ import annotations

import errno
import os
import re
import shlex
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..files import WriteError, read_regular, remove, write_atomic
from .backend import tool
from .host import Host, KernelError
from .part import OwnedPart, owned_text, parse_owned
from .state import State
from .transaction import _physical, nft_file, restore_text

UNIT = "stockade-restore.service"
BEGIN = "# stockade begin: written by `stockade persist` (change the policy, not this block)"
END = "# stockade end"
VERSION = "# stockade version "
INCLUDE = 'include "/etc/stockade/stockade.nft"'


def _root(root: str | None) -> Path:
    return Path(root or os.environ.get("STOCKADE_ROOT") or "/")


BOOT_FILE_MAX = 1 << 30


def _boot_file(path: Path) -> str | None:
    """A boot file's text, never through a symlink; None if absent; WriteError if it is not a plain file."""
    try:
        return read_regular(path, BOOT_FILE_MAX, follow=False).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        reason = "is a symlink: stockade does not follow it" if e.errno == errno.ELOOP else f"cannot read: {e.strerror}"
        raise WriteError(path, reason) from None


@dataclass
class Plan:
    mechanism: str
    files: dict[Path, str]  # relative to root -> the whole new content, in the order to write them
    load: list[tuple[str, Path]] = field(default_factory=list)  # (loader, file) in boot order
    commands: list[str] = field(default_factory=list)  # the unit's ExecStart lines


def strip_ours(text: str) -> str:
    """A boot file without what stockade wrote into it (its version line and its blocks)."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith(VERSION):
            continue
        if line.startswith("# stockade begin"):
            inside = True
        elif line.startswith(END):
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def merge_iptables(existing: str, part_text: str, digest: str) -> str:
    """The admin's iptables-restore file with stockade's block in each of its tables (tables it does
    not have are added); `part_text` is stockade's part in iptables-save form."""
    ours: dict[str, list[str]] = {}
    table = ""
    for line in restore_text(owned_text(parse_owned("")), part_text, "a").splitlines():
        if line.startswith("*"):
            table = line[1:]
            ours[table] = []
        elif line != "COMMIT":
            ours[table].append(line)
    out, table, declared, seen = [], "", set(), set()
    for line in strip_ours(existing).splitlines():
        if line.startswith("*"):
            table, declared = line[1:].strip(), set()
            seen.add(table)
        elif line.startswith(":"):
            declared.add(line[1:].split()[0])
        elif line.strip() == "COMMIT" and table in ours:
            out += _block(ours[table], declared)
        out.append(line)
    for t, lines in ours.items():
        if t not in seen:
            out += [f"*{t}", *_block(lines, set()), "COMMIT"]
    return f"{VERSION}{digest}\n" + "\n".join(out) + "\n"


def _block(lines: list[str], declared: set[str]) -> list[str]:
    """Stockade's lines for one table; DOCKER-USER declared (created) when hooked and not declared."""
    hooked = any(ln.startswith(("-I DOCKER-USER ", "-A DOCKER-USER ")) for ln in lines)
    docker = hooked and "DOCKER-USER" not in declared
    decls = [ln for ln in lines if ln.startswith(":")] + ([":DOCKER-USER - [0:0]"] if docker else [])
    return [BEGIN, *decls, *[ln for ln in lines if not ln.startswith(":")], END]


def merge_ipsets(existing: str, sets: str, digest: str) -> str:
    body = _physical(sets, "a").strip()
    return (f"{VERSION}{digest}\n" + strip_ours(existing) + "\n".join([BEGIN, *([body] if body else []), END]) + "\n")


def plan(part: OwnedPart, root: Path) -> Plan:
    digest = part.digest
    if part.backend == "nftables":
        body = f"{VERSION}{digest}\n" + nft_file(part.text["nft"])
        ours = Path("etc/stockade/stockade.nft")
        for conf in (Path("etc/nftables.conf"), Path("etc/sysconfig/nftables.conf")):
            text = _boot_file(root / conf)
            if text is not None:
                if INCLUDE not in text.splitlines():
                    text += ("" if text.endswith("\n") or not text else "\n") + INCLUDE + "\n"
                return Plan("nftables.conf include", {ours: body, conf: text}, [("nft", conf)])
        return Plan("systemd unit", {ours: body}, [("nft", ours)], ["/usr/sbin/nft -f /etc/stockade/stockade.nft"])
    b = part.backend
    if (root / "etc/iptables").is_dir():
        mech, names, flush = "iptables-persistent", ("etc/iptables/ipsets", "etc/iptables/rules.v4",
                                                     "etc/iptables/rules.v6"), True
    elif (root / "etc/sysconfig/iptables-config").exists():
        mech, names, flush = "iptables-services", ("etc/sysconfig/ipset", "etc/sysconfig/iptables",
                                                   "etc/sysconfig/ip6tables"), True
    else:
        mech, names, flush = "systemd unit", ("etc/stockade/ipsets", "etc/stockade/rules.v4",
                                              "etc/stockade/rules.v6"), False
    sets, v4, v6 = (Path(n) for n in names)
    old = {p: _boot_file(root / p) or "" for p in (sets, v4, v6)}
    files = {sets: merge_ipsets(old[sets], part.text.get("sets", ""), digest),
             v4: merge_iptables(old[v4], part.text["4"], digest), v6: merge_iptables(old[v6], part.text["6"], digest)}
    load = [("ipset", sets), (f"{tool(b, 4, 'restore')}{'' if flush else ' --noflush'}", v4),
            (f"{tool(b, 6, 'restore')}{'' if flush else ' --noflush'}", v6)]
    commands = [] if flush else [
        "/usr/sbin/ipset restore -exist -file /etc/stockade/ipsets",
        f"/usr/sbin/{tool(b, 4, 'restore')} --noflush /etc/stockade/rules.v4",
        f"/usr/sbin/{tool(b, 6, 'restore')} --noflush /etc/stockade/rules.v6"]
    return Plan(mech, files, load, commands)


def verify(plan: Plan, root: Path) -> None:
    """Load the new boot files, in boot order, into a throwaway network namespace; KernelError (and
    nothing written) if any is refused. stockade's included nft file is read from the plan, not /etc."""
    from .netns import Netns, NetnsError

    try:
        with Netns() as ns:
            host = Host(ns.name)
            for loader, rel in plan.load:
                text = plan.files.get(rel)
                if text is None:
                    text = _boot_file(root / rel) or ""
                if loader == "nft":
                    ours = plan.files.get(Path("etc/stockade/stockade.nft"), "")
                    text = "\n".join(ours if ln.strip() == INCLUDE else ln for ln in text.splitlines()) + "\n"
                    host.run(["nft", "-f", "-"], input=text)
                elif loader == "ipset":
                    host.run(["ipset", "restore"], input=text)
                else:
                    host.run(loader.split(), input=text)
    except KernelError as e:
        raise KernelError(f"the new boot files do not load ({e}); nothing was written") from None
    except NetnsError as e:
        raise KernelError(f"cannot check the new boot files in a throwaway namespace: {e}; nothing was written") \
            from None


def _mode(path: Path, default: int) -> int:
    try:
        return stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        return default


def _unit(commands: list[str]) -> str:
    return "\n".join(["[Unit]", "Description=stockade: load the confirmed firewall before the network",
                      "DefaultDependencies=no", "Before=network-pre.target", "Wants=network-pre.target", "",
                      "[Service]", "Type=oneshot", "RemainAfterExit=yes", *(f"ExecStart={c}" for c in commands), "",
                      "[Install]", "WantedBy=multi-user.target", ""])


FEEDS_UNIT = "stockade-feeds"


def feed_timer(rec: dict, netns: str | None, base: Path) -> dict[Path, str]:
    """The files that run `stockade feeds update` for the confirmed policy's feeds (none without feeds)."""
    from ..policy.schema import load_policy, parse_duration

    if not rec.get("policy") or rec.get("policy_text") is None:
        return {}
    feeds = load_policy(rec["policy"], rec["policy_text"]).feeds
    if not feeds:
        return {}
    every = min(parse_duration(f.refresh) for f in feeds.values())
    argv = [sys.executable, "-I", "-m", "stockade.cli", "feeds", "update", rec["policy"],
            *(["--netns", netns] if netns else [])]
    command = " ".join(shlex.quote(a) for a in argv)
    if (base / "run/systemd/system").is_dir() or (base / "etc/systemd/system").is_dir():
        unit = Path("etc/systemd/system")
        return {unit / f"{FEEDS_UNIT}.service": "\n".join([
                    "[Unit]", "Description=stockade: refresh the blocklist feeds", "After=network-online.target",
                    "Wants=network-online.target", "", "[Service]", "Type=oneshot", f"ExecStart={command}", ""]),
                unit / f"{FEEDS_UNIT}.timer": "\n".join([
                    "[Unit]", "Description=stockade: refresh the blocklist feeds", "", "[Timer]", "OnBootSec=1min",
                    f"OnUnitActiveSec={every}s", "RandomizedDelaySec=30s", "", "[Install]", "WantedBy=timers.target",
                    ""])}
    minutes = max(1, every // 60)
    when = f"*/{minutes} * * * *" if minutes < 60 else f"0 */{min(23, minutes // 60)} * * *"
    return {Path("etc/cron.d") / FEEDS_UNIT: f"# written by `stockade persist`\n{when} root {command}\n"}


def _confirmed(netns: str | None) -> OwnedPart:
    rec = State.for_netns(netns).read("confirmed")
    if rec is None:
        raise KernelError("nothing confirmed yet: `stockade apply` then `stockade confirm` first")
    return OwnedPart.from_json(rec["part"])


def persist(netns: str | None, root: str | None) -> dict:
    part, base = _confirmed(netns), _root(root)
    p = plan(part, base)
    files = dict(p.files)
    if p.commands:
        files[Path("etc/systemd/system") / UNIT] = _unit(p.commands)
    verify(p, base)
    timer = feed_timer(State.for_netns(netns).read("confirmed") or {}, netns, base)
    files.update(timer)
    written = []
    for rel, content in files.items():  # included and loaded-first files before what includes or needs them
        path = base / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError as e:
            raise KernelError(f"cannot create {path.parent}: {e.strerror or e}") from None
        public = rel.suffix in (".service", ".timer") or rel.parent == Path("etc/cron.d")
        write_atomic(path, content, _mode(path, 0o644 if public else 0o600))
        written.append(str(path))
    if p.commands:
        _enable(base, "multi-user.target.wants", UNIT)
    if Path("etc/systemd/system") / f"{FEEDS_UNIT}.timer" in timer:
        _enable(base, "timers.target.wants", f"{FEEDS_UNIT}.timer")
    out = persist_status(netns, root)
    out["written"] = written
    out["text"] = f"persisted {part.digest} ({p.mechanism}):\n" + "\n".join(f"  {w}" for w in written)
    return out


def _enable(base: Path, wants: str, unit: str) -> None:
    """The unit enabled as systemctl enables it: a link to it in the target's .wants directory."""
    link = base / "etc/systemd/system" / wants / unit
    try:
        link.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{unit}")
    except OSError as e:
        raise KernelError(f"cannot enable {unit} ({link}): {e.strerror or e}") from None


def persist_status(netns: str | None, root: str | None) -> dict:
    part, base = _confirmed(netns), _root(root)
    p = plan(part, base)
    versions = {}
    for rel in p.files:
        if rel.name.endswith("nftables.conf"):
            continue
        text = _boot_file(base / rel) or ""
        first = text.split("\n", 1)[0]
        versions[str(base / rel)] = first.removeprefix(VERSION) if first.startswith(VERSION) else None
    current = all(v == part.digest for v in versions.values())
    missing = []
    for rel in p.files:  # the boot config must still include stockade's file
        if rel.name.endswith("nftables.conf") and INCLUDE not in (_boot_file(base / rel) or "").splitlines():
            missing.append(f"{base / rel} does not include /etc/stockade/stockade.nft")
    if p.commands and not (base / "etc/systemd/system/multi-user.target.wants" / UNIT).is_symlink():
        missing.append(f"{UNIT} is not enabled")
    current = current and not missing
    on_disk = sorted({v or "nothing of stockade's" for v in versions.values()})
    text = f"{p.mechanism}: " + (f"loads the confirmed version {part.digest}" if current else
                                 f"not current (confirmed {part.digest}; on disk: {', '.join(on_disk)}"
                                 + "".join(f"; {m}" for m in missing) + ")")
    return {"mechanism": p.mechanism, "files": versions, "confirmed": part.digest, "current": current,
            "missing": missing, "text": text}


# every boot file stockade may have written, by what it is to stockade
OWN_FILES = ("etc/stockade/stockade.nft", "etc/stockade/ipsets", "etc/stockade/rules.v4", "etc/stockade/rules.v6",
             f"etc/systemd/system/{UNIT}", f"etc/systemd/system/multi-user.target.wants/{UNIT}",
             f"etc/systemd/system/{FEEDS_UNIT}.service", f"etc/systemd/system/{FEEDS_UNIT}.timer",
             f"etc/systemd/system/timers.target.wants/{FEEDS_UNIT}.timer", f"etc/cron.d/{FEEDS_UNIT}")
SHARED_FILES = {"etc/iptables/ipsets": "ipset", "etc/iptables/rules.v4": "4", "etc/iptables/rules.v6": "6",
                "etc/sysconfig/ipset": "ipset", "etc/sysconfig/iptables": "4", "etc/sysconfig/ip6tables": "6",
                "etc/nftables.conf": "nft", "etc/sysconfig/nftables.conf": "nft"}


def unpersist_plan(root: str | None, backend: str, check: bool = False) -> tuple[Plan, list[Path]]:
    """`stockade remove`: nothing of stockade's loaded at boot any more. The admin's files it shared keep
    the admin's lines (the plan's files, loaded in a throwaway namespace here unless `check`, as persist
    does: KernelError if one does not load); the files that were stockade's alone, or held nothing
    else, are deleted (the list)."""
    base = _root(root)
    files: dict[Path, str] = {}
    load: list[tuple[str, Path]] = []
    for name, kind in SHARED_FILES.items():
        text = _boot_file(base / name)
        if text is None:
            continue
        lines = text.splitlines()
        if kind == "nft":
            new = "".join(ln + "\n" for ln in lines if ln.strip() != INCLUDE)
            changed = len(new.splitlines()) != len(lines)
        else:
            new = strip_ours(text)
            changed = any(ln.startswith((VERSION, "# stockade begin")) for ln in lines)
        if changed:
            files[Path(name)] = new
            loader = {"ipset": "ipset", "nft": "nft"}.get(kind) or \
                f"{tool(backend if backend != 'nftables' else 'iptables-nft', int(kind), 'restore')}"
            load.append((loader, Path(name)))
    gone = [Path(n) for n in OWN_FILES if (base / n).is_symlink() or (base / n).exists()]
    gone += [rel for rel, text in files.items() if _nothing(text)]  # what stockade's lines alone had made
    plan = Plan("remove", {rel: text for rel, text in files.items() if rel not in gone},
                [(loader, rel) for loader, rel in load if rel not in gone])
    if plan.files and not check:
        verify(plan, base)
    return plan, gone


def unpersist(plan: Plan, gone: list[Path], root: str | None) -> None:
    """Write the plan's files (unpersist_plan checked them) and delete `gone` (changed_paths names them)."""
    base = _root(root)
    for rel, content in plan.files.items():
        write_atomic(base / rel, content, _mode(base / rel, 0o600))
    for rel in gone:
        remove(base / rel)


def changed_paths(plan: Plan, gone: list[Path], root: str | None) -> list[str]:
    return [str(_root(root) / p) for p in [*plan.files, *gone]]


def _nothing(text: str) -> bool:
    """A boot file that loads nothing: table headers, COMMIT, built-in chains at ACCEPT, comments
    (what is left of a file stockade's block was all of); boot without it loads the same."""
    return all(re.fullmatch(r"\*\w+|COMMIT|:[A-Z]+ ACCEPT( \[\d+:\d+\])?|#.*|", ln.strip()) for ln in text.splitlines())
