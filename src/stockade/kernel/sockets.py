"""What a host runs, as `stockade init` reads it: listening sockets, SSH sessions, interfaces.

Read with `ss` and `ip` in the host or namespace (kernel/host.py); every line that is not what the
tools print is skipped, never guessed at."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .host import Host


@dataclass(frozen=True)
class Listener:
    proto: str  # tcp or udp
    address: str  # the bound address; "*" for every address
    port: int
    process: str  # the program, if ss names it

    @property
    def local_only(self) -> bool:
        """Bound to a loopback address: nothing outside the host can reach it."""
        try:
            return ipaddress.ip_address(self.address.split("%")[0]).is_loopback
        except ValueError:
            return False


def _endpoint(text: str) -> tuple[str, int] | None:
    """`0.0.0.0:22`, `[::]:22`, `*:22`, `127.0.0.53%lo:53` as (address, port)."""
    addr, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    addr = addr.strip("[]")
    if addr.startswith("::ffff:"):
        addr = addr[7:]
    return ("*" if addr in ("*", "0.0.0.0", "::") else addr), int(port)


def listeners(host: Host) -> list[Listener]:
    """TCP sockets listening and UDP sockets bound, one per (proto, address, port)."""
    out: dict[tuple, Listener] = {}
    for line in host.run(["ss", "-Hlntup"]).stdout.splitlines():
        cols = line.split()
        if len(cols) < 5 or cols[0] not in ("tcp", "udp"):
            continue
        ep = _endpoint(cols[4])
        if ep is None:
            continue
        proc = ""
        if 'users:(("' in line:
            proc = line.split('users:(("', 1)[1].split('"', 1)[0]
        out.setdefault((cols[0], *ep), Listener(cols[0], ep[0], ep[1], proc))
    return sorted(out.values(), key=lambda x: (x.port, x.proto, x.address))


def ssh_peers(host: Host, port: int = 22) -> list[str]:
    """The addresses of the SSH sessions open to this host now."""
    out = []
    for line in host.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"]).stdout.splitlines():
        cols = line.split()
        ep = _endpoint(cols[-1]) if cols else None
        if ep is not None and ep[0] not in out:
            out.append(ep[0])
    return out


def interfaces(host: Host) -> list[str]:
    """The host's network interfaces other than loopback, in `ip link` order."""
    out = []
    for line in host.run(["ip", "-o", "link", "show"]).stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            name = parts[1].strip().split("@", 1)[0]
            if name and name != "lo":
                out.append(name)
    return out
