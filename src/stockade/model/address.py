"""Addresses as iptables holds them: an address and a mask, which need not be a prefix.

`-s 10.11.12.13/255.0.255.0` is legal and the kernel keeps the non-contiguous
mask; iptables-save prints a prefix length when the mask is contiguous and the
dotted mask otherwise, always with the host bits cleared.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass


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
        cls = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        plen = self.prefixlen
        if plen is not None:
            return f"{cls(self.addr)}/{plen}"
        return f"{cls(self.addr)}/{cls(self.mask)}"

    @classmethod
    def any(cls, version: int) -> Address:
        return cls(version, 0, 0)


def parse_address(text: str, version: int) -> Address:
    """Parse `ADDR[/PREFIX|/MASK]` as iptables does; raise ValueError with a reason.

    `0/0` is the traditional spelling of "anywhere" (inet_aton accepts a bare `0`).
    """
    addr_s, sep, mask_s = text.partition("/")
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    bits = 32 if version == 4 else 128
    if version == 4 and addr_s.isdigit() and int(addr_s) == 0:
        addr_s = "0.0.0.0"
    try:
        addr = int(cls(addr_s))
    except ValueError:
        raise ValueError(f"{addr_s!r} is not an IPv{version} address") from None
    if not sep:
        mask = (1 << bits) - 1
    elif mask_s.isdigit():
        plen = int(mask_s)
        if plen > bits:
            raise ValueError(f"prefix length /{mask_s} is longer than {bits} bits")
        mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    else:
        try:
            mask = int(cls(mask_s))
        except ValueError:
            raise ValueError(f"{mask_s!r} is neither a prefix length nor an IPv{version} mask") from None
    return Address(version, addr & mask, mask)
