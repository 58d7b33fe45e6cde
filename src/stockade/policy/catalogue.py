"""Services a policy can name, with the ports and protocols they use.

Covers every service the seed tutorials open. `helper` names the conntrack helper a
service needs for its related connections (FTP data), which the compiler attaches with
`-j CT --helper` in the raw table, the only safe way since kernel 4.7 disabled automatic helpers.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Port:
    proto: str  # "tcp" or "udp"
    lo: int
    hi: int

    def __str__(self) -> str:
        return f"{self.lo}/{self.proto}" if self.lo == self.hi else f"{self.lo}-{self.hi}/{self.proto}"


@dataclass(frozen=True)
class NamedService:
    name: str
    ports: tuple[Port, ...]
    helper: str | None = None


def _svc(name: str, *specs: str, helper: str | None = None) -> NamedService:
    ports = []
    for spec in specs:
        num, proto = spec.split("/")
        ports.append(Port(proto, int(num), int(num)))
    return NamedService(name, tuple(ports), helper)


CATALOGUE: dict[str, NamedService] = {s.name: s for s in (
    _svc("ssh", "22/tcp"),
    _svc("http", "80/tcp"),
    _svc("https", "443/tcp"),
    _svc("smtp", "25/tcp"),
    _svc("smtps", "465/tcp"),
    _svc("submission", "587/tcp"),
    _svc("pop3", "110/tcp"),
    _svc("pop3s", "995/tcp"),
    _svc("imap", "143/tcp"),
    _svc("imaps", "993/tcp"),
    _svc("dns", "53/udp", "53/tcp"),
    _svc("ftp", "21/tcp", helper="ftp"),
    _svc("snmp", "161/udp"),
    _svc("mysql", "3306/tcp"),
    _svc("postgresql", "5432/tcp"),
    _svc("ntp", "123/udp"),
    _svc("webmin", "10000/tcp"),
)}


def parse_port_spec(text: str) -> Port:
    """A custom service: `PORT/PROTO` or `LO-HI/PROTO` (also `LO:HI/PROTO`), proto tcp or udp."""
    ports, sep, proto = text.partition("/")
    if not sep or proto not in ("tcp", "udp"):
        raise ValueError(f"`{text}` is not PORT/tcp or PORT/udp")
    lo_s, dash, hi_s = ports.replace(":", "-").partition("-")
    if not lo_s.isdigit() or (dash and not hi_s.isdigit()):
        raise ValueError(f"`{text}`: ports must be numbers, e.g. 8080/tcp or 6000-6010/tcp")
    lo, hi = int(lo_s), int(hi_s) if dash else int(lo_s)
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"`{text}`: ports must be 1-65535, low to high")
    return Port(proto, lo, hi)


def resolve(name: str) -> NamedService:
    """A catalogue service by name, or a custom `PORT/PROTO` one; ValueError with a suggestion otherwise."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    if "/" in name:
        return NamedService(name, (parse_port_spec(name),))
    close = difflib.get_close_matches(name, list(CATALOGUE), n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"known services: {', '.join(sorted(CATALOGUE))}"
    raise ValueError(f"unknown service `{name}`; {hint} (or write PORT/tcp, PORT/udp)")
