"""Addresses as iptables holds them: an address and a mask, which need not be a prefix.

`-s 10.11.12.13/255.0.255.0` is legal and the kernel keeps the non-contiguous
mask; iptables-save prints a prefix length when the mask is contiguous and the
dotted mask otherwise, always with the host bits cleared.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from functools import partial

# Raises OSError for anything but a dotted IPv4 address: the fastest strict check for bulk lists.
inet_pton4 = partial(socket.inet_pton, socket.AF_INET)
_C_NUMBER = re.compile(r"[ \t\n\v\f\r]*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def c_uint_prefix(word: str) -> tuple[int, str] | None:
    """The number C's strtoul(word, &end, 0) reads from the start of `word`, and the rest.

    Most xtables options read numbers this way (xtables_strtoul_base): blanks and `+`
    are skipped, `0x` is hex and a leading 0 is octal (`010` is 8); a minus is refused.
    None if no number starts the word.
    """
    m = _C_NUMBER.match(word)
    if m is None:
        return None
    digits = m.group(1)
    base = 16 if digits[:2] in ("0x", "0X") else 8 if digits.startswith("0") else 10
    return int(digits, base), word[m.end():]


def parse_ipv4(text: str) -> int | None:
    """An IPv4 address as xtables' numeric parser reads it: one to four dot-separated numbers
    of 0-255 in C notation, missing trailing parts 0 (`1.2.3` is 1.2.3.0, `010.0.0.1` is 8.0.0.1)."""
    try:  # the usual spelling, four decimals without leading zeros: what inet_pton takes, read alike
        return int.from_bytes(inet_pton4(text), "big")
    except OSError:
        pass
    parts = text.split(".")
    if len(parts) > 4:
        return None
    value = 0
    for part in parts:
        got = c_uint_prefix(part)
        if got is None or got[1] or got[0] > 255:
            return None
        value = value << 8 | got[0]
    return value << 8 * (4 - len(parts))


def ntop(version: int, value: int) -> str:
    """An address as iptables prints it: libc inet_ntop (so `::ffff:1.2.3.4`, not `::ffff:102:304`)."""
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


@dataclass(frozen=True, order=True)
class Address:
    version: int  # 4 or 6
    addr: int
    mask: int

    @property
    def bits(self) -> int:
        return 32 if self.version == 4 else 128

    @property
    def prefixlen(self) -> int | None:
        """The prefix length if the mask is contiguous, else None."""
        full = (1 << self.bits) - 1
        inv = full ^ self.mask
        if inv & (inv + 1):
            return None
        return self.bits - inv.bit_length()

    def contains(self, ip: int) -> bool:
        return ip & self.mask == self.addr

    def __str__(self) -> str:
        plen = self.prefixlen
        return f"{ntop(self.version, self.addr)}/{plen if plen is not None else ntop(self.version, self.mask)}"

    @classmethod
    def any(cls, version: int) -> Address:
        return cls(version, 0, 0)


def parse_address(text: str, version: int) -> Address:
    """Parse `ADDR[/PREFIX|/MASK]` as iptables does; raise ValueError with a reason.

    `0/0` is the traditional spelling of "anywhere" (inet_aton accepts a bare `0`).
    """
    addr_s, sep, mask_s = text.partition("/")
    bits = 32 if version == 4 else 128
    if sep and ((mask_s.isdigit() and int(mask_s) == 0) or mask_s in ("0.0.0.0", "::")):
        return Address.any(version)  # under a /0 mask iptables never parses the address (`-s 0/0` in ip6tables)
    addr = parse_ipv4(addr_s) if version == 4 else parse_ipv6(addr_s)
    if addr is None:
        raise ValueError(f"{addr_s!r} is not an IPv{version} address")
    if not sep:
        mask = (1 << bits) - 1
    elif mask_s.isdigit():
        plen = int(mask_s)
        if plen > bits:
            raise ValueError(f"prefix length /{mask_s} is longer than {bits} bits")
        mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    else:
        mask = parse_ipv4(mask_s) if version == 4 else parse_ipv6(mask_s)
        if mask is None:
            raise ValueError(f"{mask_s!r} is neither a prefix length nor an IPv{version} mask")
    return Address(version, addr & mask, mask)


def parse_ipv6(text: str) -> int | None:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        return None
