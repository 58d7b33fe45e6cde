"""kernel/nfnl.py against the real kernel: set elements added and deleted over netlink in one batch, as
nft lists them afterwards; a batch the kernel refuses changes nothing."""
from __future__ import annotations

import ipaddress

import pytest

from stockade.kernel import nfnl
from stockade.kernel.host import KernelError

TABLE = "table inet t {\n set a { type ipv4_addr; elements = { 192.0.2.1 } }\n" \
        " set n { type ipv6_addr; flags interval; auto-merge; }\n}\n"


def span(net: str) -> tuple[int, int]:
    n = ipaddress.ip_network(net)
    return int(n.network_address), int(n.broadcast_address)


def test_elements_over_several_messages_and_a_refused_batch(netns):
    netns.run(["nft", "-f", "-"], input=TABLE)
    nets = [f"2001:db8:{i:x}::/48" for i in range(0, 6000, 2)]  # 3,000 ranges: more than one message
    assert len(nfnl._chunks(nfnl._encoded(nfnl.Elements("n", 16, True), list(map(span, nets))))) > 1
    addr = int(ipaddress.ip_address("192.0.2.9"))
    nfnl.change(netns.name, "t", [nfnl.Elements("n", 16, True, [], list(map(span, nets))),
                                  nfnl.Elements("a", 4, False, [span("192.0.2.1/32")], [(addr, addr)])])
    listed = netns.run(["nft", "list", "table", "inet", "t"]).stdout
    assert listed.count("::/48") == 3000 and "192.0.2.9" in listed and "192.0.2.1," not in listed
    nfnl.change(netns.name, "t", [nfnl.Elements("n", 16, True, list(map(span, nets[1:])), [])])
    assert netns.run(["nft", "list", "set", "inet", "t", "n"]).stdout.count("::/48") == 1
    with pytest.raises(KernelError, match="not in the set"):  # the add before it is undone with it
        nfnl.change(netns.name, "t", [nfnl.Elements("n", 16, True, [span("2001:db8:ffff::/48")],
                                                    [span("2001:db8:fffe::/48")])])
    listed = netns.run(["nft", "list", "set", "inet", "t", "n"]).stdout
    assert "2001:db8::/48" in listed and "fffe" not in listed
