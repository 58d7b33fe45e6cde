"""`stockade persist`: the confirmed ruleset where this system loads it at boot.

Where, by what the system has (under --root, default / or STOCKADE_ROOT, so tests never touch /etc):
  nftables with /etc/nftables.conf (Debian) or /etc/sysconfig/nftables.conf (Fedora/RHEL): the table
    goes to /etc/stockade/stockade.nft and the config gets one `include` line for it;
  iptables with /etc/iptables/ (Debian's iptables-persistent): rules.v4, rules.v6 and ipsets there;
  iptables with /etc/sysconfig/iptables-config (RHEL's iptables-services): iptables, ip6tables, ipset;
  otherwise: the files in /etc/stockade/ and a `stockade-restore` systemd unit, enabled, that loads
    them before the network comes up.
Each written file starts with a `# stockade version V` line, so --status can say if it is current.
"""
from __future__ import annotations

import os
from pathlib import Path

from .backend import tool
from .host import KernelError
from .part import OwnedPart, owned_text, parse_owned
from .state import State
from .transaction import _physical, nft_file, restore_text

UNIT = "stockade-restore.service"


def _root(root: str | None) -> Path:
    return Path(root or os.environ.get("STOCKADE_ROOT") or "/")


def plan(part: OwnedPart, root: Path) -> tuple[str, dict[Path, str], list[str]]:
    """(mechanism, files to write relative to root -> content, boot commands for the unit)."""
    head = f"# stockade version {part.digest}\n"
    if part.backend == "nftables":
        body = head + nft_file(part.text["nft"])
        for conf in ("etc/nftables.conf", "etc/sysconfig/nftables.conf"):
            if (root / conf).exists():
                return "nftables.conf include", {Path(conf): "", Path("etc/stockade/stockade.nft"): body}, []
        return "systemd unit", {Path("etc/stockade/stockade.nft"): body}, [
            "/usr/sbin/nft -f /etc/stockade/stockade.nft"]
    empty = owned_text(parse_owned(""))
    v4 = head + restore_text(empty, part.text["4"], "a")
    v6 = head + restore_text(empty, part.text["6"], "a")
    sets = head + _physical(part.text.get("sets", ""), "a")
    if (root / "etc/iptables").is_dir():
        return "iptables-persistent", {Path("etc/iptables/rules.v4"): v4, Path("etc/iptables/rules.v6"): v6,
                                       Path("etc/iptables/ipsets"): sets}, []
    if (root / "etc/sysconfig/iptables-config").exists():
        return "iptables-services", {Path("etc/sysconfig/iptables"): v4, Path("etc/sysconfig/ip6tables"): v6,
                                     Path("etc/sysconfig/ipset"): sets}, []
    b = part.backend
    return "systemd unit", {Path("etc/stockade/rules.v4"): v4, Path("etc/stockade/rules.v6"): v6,
                            Path("etc/stockade/ipsets"): sets}, [
        "/usr/sbin/ipset restore -exist -file /etc/stockade/ipsets",
        f"/usr/sbin/{tool(b, 4, 'restore')} --noflush /etc/stockade/rules.v4",
        f"/usr/sbin/{tool(b, 6, 'restore')} --noflush /etc/stockade/rules.v6"]


def _unit(commands: list[str]) -> str:
    return "\n".join(["[Unit]", "Description=stockade: load the confirmed firewall before the network",
                      "DefaultDependencies=no", "Before=network-pre.target", "Wants=network-pre.target", "",
                      "[Service]", "Type=oneshot", "RemainAfterExit=yes", *(f"ExecStart={c}" for c in commands), "",
                      "[Install]", "WantedBy=multi-user.target", ""])


def _confirmed(netns: str | None) -> OwnedPart:
    rec = State.for_netns(netns).read("confirmed")
    if rec is None:
        raise KernelError("nothing confirmed yet: `stockade apply` then `stockade confirm` first")
    return OwnedPart.from_json(rec["part"])


def persist(netns: str | None, root: str | None) -> dict:
    part, base = _confirmed(netns), _root(root)
    mechanism, files, commands = plan(part, base)
    written = []
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.name.endswith("nftables.conf"):
            line = 'include "/etc/stockade/stockade.nft"'
            text = path.read_text()
            if line not in text.splitlines():
                path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line + "\n")
        else:
            tmp = path.with_name(path.name + ".stockade-tmp")
            tmp.write_text(content)
            tmp.replace(path)
        written.append(str(path))
    if commands:
        unit = base / "etc/systemd/system" / UNIT
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(_unit(commands))
        wants = base / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / UNIT
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{UNIT}")
        written.append(str(unit))
    out = persist_status(netns, root)
    out["written"] = written
    out["text"] = f"persisted {part.digest} ({mechanism}):\n" + "\n".join(f"  {w}" for w in written)
    return out


def persist_status(netns: str | None, root: str | None) -> dict:
    part, base = _confirmed(netns), _root(root)
    mechanism, files, commands = plan(part, base)
    versions = {}
    for rel, content in files.items():
        if content:
            try:
                first = (base / rel).read_text().split("\n", 1)[0]
            except OSError:
                first = ""
            versions[str(base / rel)] = first.removeprefix("# stockade version ") if first.startswith("# stockade") \
                else None
    current = all(v == part.digest for v in versions.values())
    if commands:
        current = current and (base / "etc/systemd/system/multi-user.target.wants" / UNIT).is_symlink()
    on_disk = sorted({v or "nothing of stockade's" for v in versions.values()})
    text = f"{mechanism}: " + (f"loads the confirmed version {part.digest}" if current else
                               f"not current (confirmed {part.digest}; on disk: {', '.join(on_disk)})")
    return {"mechanism": mechanism, "files": versions, "confirmed": part.digest, "current": current, "text": text}
