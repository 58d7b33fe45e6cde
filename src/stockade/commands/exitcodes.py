"""The exit status of every `stockade` command, and which deliberate error means which.

OK        0  done, nothing to report: a clean lint, no diff, every lab probe as predicted.
FINDINGS  1  errors or findings in the input: a rule the real tool would refuse, a policy with an
             error in it, a chain loop, a bad interface map, a lint finding, a diff change, a lab
             mismatch, an apply refused because it would cut the admins off (nothing changed).
UNUSABLE  2  the input cannot be read (missing, binary, not UTF-8) or the command line is wrong
             (a bad option value, a packet spec that is no packet); also a kernel step the system
             refused or that failed (not root, a tool missing, Docker owning the tables).
"""
from __future__ import annotations

from ..model.diagnostics import StockadeError

OK, FINDINGS, UNUSABLE = 0, 1, 2


def for_error(e: StockadeError) -> int:
    """The exit status for a deliberate error: the first row of the table the error is an instance of."""
    from ..files import WriteError
    from ..kernel.apply import Refused
    from ..kernel.host import KernelError
    from ..kernel.netns import NetnsError
    from ..kernel.nftfile import NftFileError
    from ..lab.audit import Incomplete, Unmappable
    from ..lab.inject import InjectError
    from ..model.diagnostics import Unreadable
    from ..model.packet import SpecError
    from ..parse.nft import NftJsonError
    from .inputs import InputError

    table: tuple[tuple[type[StockadeError], int], ...] = (
        (Refused, FINDINGS),  # the policy would lock the admins out
        (KernelError, UNUSABLE),
        (NetnsError, UNUSABLE),  # the lab's namespaces could not be made or driven
        (InjectError, UNUSABLE),
        (Unmappable, UNUSABLE),  # more hosts than the lab has addresses for
        (Incomplete, UNUSABLE),  # a script runs what stockade cannot look into: rules missing
        (InputError, UNUSABLE),
        (Unreadable, UNUSABLE),  # not text, or a dump iptables-restore refuses whole
        (NftFileError, UNUSABLE),  # an nft file nft refuses whole: nothing of it would load
        (NftJsonError, UNUSABLE),  # nft JSON no kernel would hold
        (WriteError, UNUSABLE),  # the disk refused a write (full, read-only, a planted link)
        (SpecError, UNUSABLE),
    )
    return next((code for cls, code in table if isinstance(e, cls)), FINDINGS)
