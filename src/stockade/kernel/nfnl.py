"""Set elements added and deleted through nf_tables' netlink interface, in one batch: one transaction.

Why not `nft -f`: nft 1.0.6 reads every element of every interval set of the table before it runs any
element command (a million-entry blocklist: seconds), and it deletes from an interval set in time
proportional to the whole set per element (50,000 ranges: 0.25 s per deleted range; 1,250 deletes
took 5 minutes on this machine class). The kernel does neither: it adds and deletes each element of
its interval tree in logarithmic time. So stockade sends the elements itself, as nft would encode
them (libnftnl's layout): a hash set's element is its key; an interval set's range [lo, hi] is two
elements, `lo` and `hi + 1` flagged as an interval end (none after the last address).

The caller gives exact elements: for an interval set, whole ranges as the kernel holds them (sets.py
diffs merged ranges), never part of one, so no range is split or joined here. All messages travel
in one batch, which the kernel commits or refuses whole (a delete of an absent element refuses it:
ENOENT), so packets see the old members until the commit and the new ones after it.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .host import KernelError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2
NFPROTO_INET = 1
NLA_F_NESTED = 0x8000
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_FLAGS = 1, 3
NFTA_DATA_VALUE = 1
NFT_SET_ELEM_INTERVAL_END = 1
CLONE_NEWNET = 0x40000000
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SOL_NETLINK, NETLINK_CAP_ACK = 270, 10
PER_MESSAGE = 60_000  # bytes of elements per message: a netlink attribute's length is 16 bits
NETNS_DIR = "/run/netns"


@dataclass
class Elements:
    """The elements to add to and delete from one set, as (first, last) integer ranges."""
    set: str
    width: int  # key bytes: 4 (ipv4_addr) or 16 (ipv6_addr)
    interval: bool
    delete: list[tuple[int, int]] = field(default_factory=list)
    add: list[tuple[int, int]] = field(default_factory=list)


def _attr(kind: int, payload: bytes) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def _element(key: int, width: int, end: bool) -> bytes:
    body = _attr(NFTA_SET_ELEM_KEY | NLA_F_NESTED, _attr(NFTA_DATA_VALUE, key.to_bytes(width, "big")))
    if end:
        body += _attr(NFTA_SET_ELEM_FLAGS, struct.pack(">I", NFT_SET_ELEM_INTERVAL_END))
    return _attr(NFTA_LIST_ELEM | NLA_F_NESTED, body)


def _encoded(e: Elements, ranges: list[tuple[int, int]]) -> list[bytes]:
    top = (1 << (8 * e.width)) - 1
    out = []
    for lo, hi in ranges:
        out.append(_element(lo, e.width, False))
        if e.interval and hi < top:  # the range's end: the first address after it (none after the last one)
            out.append(_element(hi + 1, e.width, True))
    return out


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, payload: bytes) -> bytes:
    head = struct.pack("=IHHII", 16 + 4 + len(payload), kind, flags, seq, 0)
    return head + struct.pack("=BBH", family, 0, socket.htons(res_id)) + payload


def batch(table: str, changes: list[Elements]) -> tuple[bytes, list[int]]:
    """The netlink batch (begin, the element messages: every delete, then every add, end) and the
    sequence numbers the kernel answers."""
    msgs = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b"")]
    seqs, seq = [], 1
    names = {e.set: _attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
             + _attr(NFTA_SET_ELEM_LIST_SET, e.set.encode() + b"\0") for e in changes}
    for verb, flags in ((NFT_MSG_DELSETELEM, 0), (NFT_MSG_NEWSETELEM, NLM_F_CREATE)):
        for e in changes:
            for chunk in _chunks(_encoded(e, e.delete if verb == NFT_MSG_DELSETELEM else e.add)):
                seq += 1
                payload = names[e.set] + _attr(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, chunk)
                msgs.append(_message(NFNL_SUBSYS_NFTABLES << 8 | verb, NLM_F_REQUEST | NLM_F_ACK | flags, seq,
                                     NFPROTO_INET, 0, payload))
                seqs.append(seq)
    msgs.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b""))
    return b"".join(msgs), seqs


def _chunks(elements: list[bytes]) -> list[bytes]:
    """The encoded elements in runs of at most PER_MESSAGE bytes (a range's two elements may part: the
    kernel pairs them within the transaction)."""
    out, cur, size = [], [], 0
    for el in elements:
        if cur and size + len(el) > PER_MESSAGE:
            out.append(b"".join(cur))
            cur, size = [], 0
        cur.append(el)
        size += len(el)
    return out + ([b"".join(cur)] if cur else [])


@contextmanager
def _netlink(netns: str | None) -> Iterator[socket.socket]:
    """A netfilter netlink socket in the named namespace (None: this one). The socket belongs to the
    namespace it was made in, so this thread enters the namespace only to make it."""
    if netns is None:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
        except OSError as e:
            os.close(own)
            raise KernelError(f"namespace {netns}: {e.strerror}") from None
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise KernelError(f"cannot enter namespace {netns}: {os.strerror(ctypes.get_errno())}")
            try:
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # cannot happen for root; never run on in the wrong one
                    raise SystemExit(f"stockade: cannot return to its own namespace: {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(target)
            os.close(own)
    try:
        yield s
    finally:
        s.close()


def change(netns: str | None, table: str, changes: list[Elements]) -> None:
    """Apply the changes to sets of `table inet TABLE` as one transaction; KernelError naming what the
    kernel refused (then nothing changed)."""
    changes = [e for e in changes if e.add or e.delete]
    if not changes:
        return
    data, seqs = batch(table, changes)
    with _netlink(netns) as s:
        s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, max(len(data) * 2, 1 << 20))  # the batch is one datagram
        # every message's answer waits in the receive buffer until the batch is sent (each costs about 1 KiB
        # of it, as nft reckons), and an error's answer carries no copy of the message it answers
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, max(len(seqs) * 2048, 1 << 20))
        s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        s.bind((0, 0))
        waiting, errors = set(seqs), []
        try:
            s.sendall(data)
            while waiting:
                buf = s.recv(1 << 16)
                while buf:
                    length, kind, _, seq, _ = struct.unpack_from("=IHHII", buf)
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", buf, 16)[0]
                        if code:
                            errors.append((seq, code))
                        waiting.discard(seq)
                    buf = buf[(length + 3) & ~3:]
        except OSError as e:  # the answers are lost (ENOBUFS): whether the batch was committed is unknown here
            raise KernelError(f"the kernel's answer to the set change in table inet {table} was lost "
                              f"({e.strerror or e}); read the sets to see what they hold") from None
    if errors:
        seq, code = errors[0]
        verb = "delete" if seq - 2 < _deletes(changes) else "add"
        why = {errno.ENOENT: "an element to delete is not in the set", errno.EEXIST: "an element to add overlaps one "
               "the set holds"}.get(code, os.strerror(code))
        raise KernelError(f"the kernel refused to {verb} set elements in table inet {table}: {why}; nothing changed")


def _deletes(changes: list[Elements]) -> int:
    """How many delete messages the batch holds (they come first)."""
    return sum(len(_chunks(_encoded(e, e.delete))) for e in changes)
