"""What a policy opens to whom, as a table: the summary `stockade check` prints."""
from __future__ import annotations

from .catalogue import resolve
from .schema import Policy


def service_table(p: Policy) -> list[dict]:
    rows = [{"service": "everything", "ports": "all", "from": ", ".join(p.admin), "limit": None}] if p.admin else []
    for allow in p.allow:
        for name in allow.services:
            rows.append({"service": name, "ports": " ".join(str(x) for x in resolve(name).ports),
                         "from": ", ".join(allow.sources), "limit": allow.limit})
    rows.append({"service": "ping", "ports": "icmp echo", "from": "everyone" if p.icmp.ping != "deny" else "nobody",
                 "limit": p.icmp.rate if p.icmp.ping == "limit" else None})
    return rows


def egress_table(p: Policy) -> list[dict]:
    """What this host may send: everything in open egress, else each allowance (plus what IPv6 needs);
    the outbound blocklist, refused first, heads the list."""
    blocked = p.blocklist.outbound
    rows = [{"service": "nothing", "ports": "all", "to": ", ".join(blocked)}] if blocked else []
    if p.defaults.egress == "open":
        return rows + [{"service": "everything", "ports": "all", "to": "everyone"}]
    rows += [{"service": name, "ports": " ".join(str(x) for x in resolve(name).ports), "to": ", ".join(eg.targets)}
            for eg in p.egress for name in eg.services]
    if p.icmp.ping_out == "allow":
        rows.append({"service": "ping", "ports": "icmp echo", "to": "everyone"})
    return rows
