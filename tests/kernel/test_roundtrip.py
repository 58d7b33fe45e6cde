"""Round trip through the real kernel: stockade's canonical text is what iptables-save prints.

Rules are generated from TEMPLATES (per extension, both families), written in
deliberately non-canonical input forms. For each family the generated
iptables-restore text is (1) parsed by stockade and rendered canonically and
(2) loaded unchanged with iptables-restore into a throwaway namespace and read
back with iptables-save; the rule lines of both must be identical.

To cover a new extension, add its templates to TEMPLATES, or declare them in the
extension's own module (`Extension.roundtrip`, rules for the filter table's INPUT chain,
added below). A template whose extension module is missing fails (never drops out). The seed is fixed under
CI=true and random otherwise (set STOCKADE_SEED to repeat a run); it is printed.
"""
from __future__ import annotations

import difflib
import itertools
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from stockade.extensions import REGISTRY
from stockade.kernel.netns import Netns, NetnsError
from stockade.model import VERDICTS, Family
from stockade.parse.save import read_save, split_line
from stockade.render.save import render_save

pytestmark = pytest.mark.kernel

CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("STOCKADE_SEED") or (20250101 if CI else random.SystemRandom().randrange(10**9)))
PER_TEMPLATE = 4  # instances generated from each template (distinct ones kept)
MIN_RULES = 300  # per family
V4, V6 = Family.IPV4, Family.IPV6
USER_CHAINS = {"filter": ("SKUSER", "SKGOTO")}
BUILTINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
SETS = {V4: [("sk4", "hash:net", "inet"), ("sk4p", "hash:ip,port", "inet")],
        V6: [("sk6", "hash:net", "inet6"), ("sk6p", "hash:ip,port", "inet6")]}


@dataclass(frozen=True)
class T:
    """One rule template: the words after `-A CHAIN`, with {placeholders} filled per instance."""

    text: str
    chains: tuple[str, ...] = ("INPUT",)
    table: str = "filter"
    family: Family | None = None  # None: both


FWD, OUT = ("FORWARD",), ("OUTPUT",)
ANY_FILTER = ("INPUT", "FORWARD", "OUTPUT", "SKUSER")

# Extension name -> templates. Keys name the extension under test (core: no extension);
# every `-m NAME` / `-j NAME` in a text is required to exist too.
TEMPLATES: dict[str, list[T]] = {
    "core": [
        T("-s {a} -j ACCEPT", ANY_FILTER),
        T("-d {net} -j DROP", ANY_FILTER),
        T("! -s {net} ! -d {a} -j ACCEPT", ANY_FILTER),
        T("--source {a_odd} --destination {net} -j RETURN", ("SKUSER",)),
        T("-s 0/0 -d {a} -j ACCEPT"),
        T("-s {mask} -j DROP", family=V4),
        T("-i {iface} -j ACCEPT"),
        T("! -i {iface} -o {iface} -j DROP", FWD),
        T("--in-interface {iface} ! --out-interface {iface} -j ACCEPT", FWD),
        T("-o {iface} -j ACCEPT", OUT),
        T("-p {proto} -j ACCEPT"),
        T("! -p {proto} -j DROP"),
        T("-p all -s {a} -j ACCEPT"),
        T("-f -j DROP", family=V4),
        T("! -f -s {net} -j ACCEPT", family=V4),
        T("-j SKUSER", ANY_FILTER[:3]),
        T("-s {net} -g SKGOTO", ANY_FILTER),
        T("-p tcp -j SKUSER", ANY_FILTER[:3]),
        T("-d {a} -j RETURN", ("SKUSER", "SKGOTO")),
        T("-s {a}"),  # no target at all
    ],
    "tcp": [
        T("-p tcp --sport {port}: -j ACCEPT"),
        T("-p tcp --dport :{port} -j ACCEPT"),
        T("-p 6 -m tcp --dport {port} -j ACCEPT"),
        T("-p TCP --destination-port {prange} -j DROP"),
        T("-p tcp ! --sport {prange} ! --dport {port} -j ACCEPT"),
        T("-p tcp --syn -j DROP"),
        T("-p tcp ! --syn --dport {port} -j ACCEPT"),
        T("-p tcp --tcp-flags {flags} {flags} -j DROP"),
        T("-p tcp ! --tcp-flags ALL NONE -j ACCEPT"),
        T("-p tcp --tcp-option {u8} -j DROP"),
        T("-p tcp --dport {svc} -j ACCEPT"),
        T("-m tcp --dport {port} -p tcp -j ACCEPT"),
        T("-p tcp --sport=0:{port} -j ACCEPT"),
    ],
    "udp": [
        T("-p udp --dport {port} -j ACCEPT"),
        T("-p 17 -m udp --sport {port}: -j ACCEPT"),
        T("-p udp ! --source-port {prange} --destination-port :{port} -j DROP"),
        T("-p UDP --dport domain -j ACCEPT"),
    ],
    "icmp": [
        T("-p icmp --icmp-type {icmp_name} -j ACCEPT", family=V4),
        T("-p 1 -m icmp --icmp-type {icmp_num} -j ACCEPT", family=V4),
        T("-p icmp ! --icmp-type {icmp_tc} -j DROP", family=V4),
        T("-p icmp -m icmp --icmp-type any -j ACCEPT", family=V4),
    ],
    "icmp6": [
        T("-p ipv6-icmp --icmpv6-type {icmp6_name} -j ACCEPT", family=V6),
        T("-p icmpv6 -m icmp6 --icmpv6-type {icmp6_num} -j ACCEPT", family=V6),
        T("-p 58 ! --icmpv6-type {icmp6_tc} -j DROP", family=V6),
    ],
    "multiport": [
        T("-p tcp -m multiport --dports {ports} -j ACCEPT"),
        T("-p udp -m multiport --sports {ports} -j ACCEPT"),
        T("-p tcp -m multiport ! --dports {ports} -j DROP"),
        T("-p tcp -m multiport --ports {ports} -j ACCEPT"),
        T("-p tcp -m multiport --destination-ports {port},{prange} -j ACCEPT"),
        T("-p 17 -m multiport --source-ports {prange} -j ACCEPT"),
    ],
    "state": [
        T("-m state --state {states} -j ACCEPT"),
        T("-m state ! --state {states} -j DROP"),
        T("-m state --state RELATED,ESTABLISHED -j ACCEPT"),
        T("-m state --state UNTRACKED -j ACCEPT"),
    ],
    "conntrack": [
        T("-m conntrack --ctstate {ctstates} -j ACCEPT"),
        T("-m conntrack ! --ctstate INVALID,{ctstates} -j DROP"),
        T("-m conntrack --ctproto tcp --ctorigsrc {net} -j ACCEPT"),
        T("-m conntrack ! --ctorigdst {a} --ctreplsrc {net} -j ACCEPT"),
        T("-m conntrack --ctrepldst {net} --ctstatus {ctstatus} -j ACCEPT"),
        T("-m conntrack --ctproto 17 --ctorigsrcport {port} --ctorigdstport {prange} -j ACCEPT"),
        T("-m conntrack --ctproto tcp ! --ctreplsrcport {port} --ctrepldstport {port} -j ACCEPT"),
        T("-m conntrack --ctexpire {u16range} -j ACCEPT"),
        T("-m conntrack --ctstate NEW --ctdir {ctdir} -j ACCEPT"),
    ],
    "limit": [
        T("-m limit --limit {rate} -j ACCEPT"),
        T("-m limit --limit {rate} --limit-burst {burst} -j ACCEPT"),
        T("-m limit -j ACCEPT"),
        T("-m limit --limit-burst {burst} -j ACCEPT"),
    ],
    "hashlimit": [
        T("-m hashlimit --hashlimit-upto {hrate} --hashlimit-name {name} -j ACCEPT"),
        T("-m hashlimit --hashlimit-above {hrate} --hashlimit-burst {burst} --hashlimit-mode {hlmode} "
          "--hashlimit-name {name} -j DROP"),
        T("-m hashlimit --hashlimit {hrate} --hashlimit-mode srcip --hashlimit-srcmask {pfx} "
          "--hashlimit-name {name} -j ACCEPT"),
        T("-p tcp -m hashlimit --hashlimit-upto {hrate} --hashlimit-mode srcip,dstport --hashlimit-name {name} "
          "--hashlimit-htable-size {hsize} --hashlimit-htable-max {hmax} --hashlimit-htable-expire {ms} "
          "--hashlimit-htable-gcinterval {ms} -j ACCEPT"),
        T("-m hashlimit --hashlimit-upto {n}/sec --hashlimit-mode dstip --hashlimit-dstmask {pfx} "
          "--hashlimit-name {name} -j ACCEPT"),
    ],
    "recent": [
        T("-m recent --set --name {name} --rsource -j ACCEPT"),
        T("-m recent --update --seconds {n} --hitcount {hit} --name {name} --rsource -j DROP"),
        T("-m recent --rcheck --seconds {n} --reap --name {name} -j DROP"),
        T("-m recent ! --rcheck --rdest -j ACCEPT"),
        T("-m recent --remove --name {name} -j ACCEPT"),
        T("-m recent --set --name {name} --mask {a} -j ACCEPT"),
        T("-m recent --update --seconds {n} --rttl --name {name} -j DROP"),
    ],
    "iprange": [
        T("-m iprange --src-range {arange} -j ACCEPT"),
        T("-m iprange ! --dst-range {arange} -j DROP"),
        T("-m iprange --src-range {arange} ! --dst-range {arange} -j ACCEPT"),
    ],
    "set": [
        T("-m set --match-set {set} src -j ACCEPT"),
        T("-m set ! --match-set {set} dst -j DROP"),
        T("-p tcp -m set --match-set {setp} src,dst -j ACCEPT"),
        T("-m set --match-set {set} dst --return-nomatch ! --update-counters -j ACCEPT"),
        T("-m set --match-set {set} src --packets-gt {n} ! --bytes-eq {n} -j ACCEPT"),
    ],
    "comment": [
        T("-m comment --comment {word} -j ACCEPT"),
        T('-s {a} -m comment --comment "{words}" -j DROP'),
        T('-m comment --comment "say \\"{word}\\"" -j ACCEPT'),
    ],
    "mac": [
        T("-m mac --mac-source {mac} -j ACCEPT", ("INPUT", "FORWARD")),
        T("-m mac ! --mac-source {mac} -j DROP", ("INPUT", "FORWARD")),
    ],
    "mark": [
        T("-m mark --mark {mark} -j ACCEPT", ANY_FILTER),
        T("-m mark ! --mark {mark}/{mask32} -j DROP", ANY_FILTER),
    ],
    "connmark": [
        T("-m connmark --mark {mark} -j ACCEPT", ANY_FILTER),
        T("-m connmark ! --mark {mark}/{mask32} -j DROP", ANY_FILTER),
    ],
    "length": [
        T("-m length --length {u16} -j DROP"),
        T("-m length ! --length {u16range} -j ACCEPT"),
        T("-m length --length {u16}: -j DROP"),
    ],
    "ttl": [
        T("-m ttl --ttl-eq {u8} -j ACCEPT", family=V4),
        T("-m ttl --ttl-lt {u8} -j DROP", family=V4),
        T("-m ttl --ttl-gt {u8} -j ACCEPT", family=V4),
        T("-m ttl ! --ttl-eq {u8} -j DROP", family=V4),
    ],
    "hl": [
        T("-m hl --hl-eq {u8} -j ACCEPT", family=V6),
        T("-m hl --hl-lt {u8} -j DROP", family=V6),
        T("-m hl --hl-gt {u8} -j ACCEPT", family=V6),
        T("-m hl ! --hl-eq {u8} -j DROP", family=V6),
    ],
    "pkttype": [
        T("-m pkttype --pkt-type {pkttype} -j DROP"),
        T("-m pkttype ! --pkt-type {pkttype} -j ACCEPT"),
    ],
    "addrtype": [
        T("-m addrtype --src-type {atype} -j DROP"),
        T("-m addrtype ! --dst-type {atype} -j ACCEPT"),
        T("-m addrtype --dst-type {atype} --limit-iface-in -j ACCEPT"),
        T("-m addrtype --src-type {atype} --limit-iface-out -j ACCEPT", OUT),
        T("-m addrtype --src-type {atype},{atype} -j DROP"),
    ],
    "owner": [
        T("-m owner --uid-owner {uid} -j ACCEPT", OUT),
        T("-m owner ! --uid-owner {uid}-{uid2} -j DROP", OUT),
        T("-m owner --gid-owner {uid} --suppl-groups -j ACCEPT", OUT),
        T("-m owner --socket-exists -j ACCEPT", OUT),
        T("-m owner --uid-owner root ! --gid-owner {uid} -j ACCEPT", OUT),
    ],
    "connlimit": [
        T("-p tcp --syn -m connlimit --connlimit-above {n} -j REJECT"),
        T("-m connlimit --connlimit-upto {n} --connlimit-mask {pfx} -j ACCEPT"),
        T("-m connlimit --connlimit-above {n} --connlimit-daddr -j DROP"),
        T("-m connlimit --connlimit-upto {n} --connlimit-saddr -j ACCEPT"),
    ],
    "string": [
        T('-m string --string "{words}" --algo {algo} -j DROP'),
        T("-m string --algo {algo} ! --string {word} --from {n} --to {n2} -j ACCEPT"),
        T('-m string --algo bm --hex-string "|{hex}|" -j DROP'),
        T("-m string --algo kmp --string {word} --icase -j DROP"),
    ],
    "tos": [
        T("-m tos --tos {tos_name} -j ACCEPT"),
        T("-m tos ! --tos {u8hex} -j DROP"),
        T("-m tos --tos {u8hex}/{u8hex} -j ACCEPT"),
    ],
    "dscp": [
        T("-m dscp --dscp {dscp} -j ACCEPT"),
        T("-m dscp ! --dscp {dscp_hex} -j DROP"),
        T("-m dscp --dscp-class {dscp_class} -j ACCEPT"),
    ],
    "DSCP": [
        T("-j DSCP --set-dscp {dscp}", BUILTINS["mangle"], "mangle"),
        T("-j DSCP --set-dscp-class {dscp_class}", BUILTINS["mangle"], "mangle"),
    ],
    "TOS": [
        T("-j TOS --set-tos {tos_name}", BUILTINS["mangle"], "mangle"),
        T("-j TOS --set-tos {u8hex}/{u8hex}", BUILTINS["mangle"], "mangle"),
        T("-j TOS --and-tos {u8hex}", BUILTINS["mangle"], "mangle"),
        T("-j TOS --or-tos {u8hex}", BUILTINS["mangle"], "mangle"),
        T("-j TOS --xor-tos {u8hex}", BUILTINS["mangle"], "mangle"),
    ],
    "REJECT": [
        T("-p tcp -j REJECT --reject-with tcp-reset", ANY_FILTER),
        T("-j REJECT", ANY_FILTER),
        T("-j REJECT --reject-with {reject4}", ANY_FILTER, family=V4),
        T("-j REJECT --reject-with {reject6}", ANY_FILTER, family=V6),
    ],
    "LOG": [
        T('-j LOG --log-prefix "{words}: "', ANY_FILTER),
        T("-j LOG --log-level {loglevel} --log-prefix {word}", ANY_FILTER),
        T("-j LOG --log-tcp-sequence --log-tcp-options --log-ip-options", ANY_FILTER),
        T("-j LOG --log-uid --log-macdecode --log-level {n7}", ANY_FILTER),
    ],
    "NFLOG": [
        T("-j NFLOG --nflog-group {u16}", ANY_FILTER),
        T('-j NFLOG --nflog-prefix "{words}" --nflog-threshold {n}', ANY_FILTER),
        T("-j NFLOG --nflog-size {n} --nflog-group {u16}", ANY_FILTER),
        T("-j NFLOG", ANY_FILTER),
    ],
    "MARK": [
        T("-j MARK --set-mark {mark}", BUILTINS["mangle"], "mangle"),
        T("-j MARK --set-xmark {mark}/{mask32}", BUILTINS["mangle"], "mangle"),
        T("-j MARK --set-mark {mark}/{mask32}", BUILTINS["mangle"], "mangle"),
        T("-j MARK --and-mark {mask32}", BUILTINS["mangle"], "mangle"),
        T("-j MARK --or-mark {mark}", BUILTINS["mangle"], "mangle"),
        T("-j MARK --xor-mark {mark}", BUILTINS["mangle"], "mangle"),
    ],
    "CONNMARK": [
        T("-j CONNMARK --set-mark {mark}", BUILTINS["mangle"], "mangle"),
        T("-j CONNMARK --set-xmark {mark}/{mask32}", BUILTINS["mangle"], "mangle"),
        T("-j CONNMARK --save-mark", BUILTINS["mangle"], "mangle"),
        T("-j CONNMARK --restore-mark --nfmask {mask32} --ctmask {mask32}", BUILTINS["mangle"], "mangle"),
        T("-j CONNMARK --save-mark --mask {mask32}", BUILTINS["mangle"], "mangle"),
        T("-j CONNMARK --and-mark {mask32}", BUILTINS["mangle"], "mangle"),
        T("-j CONNMARK --or-mark {mark}", BUILTINS["mangle"], "mangle"),
    ],
    "DNAT": [
        T("-d {a} -p tcp --dport {port} -j DNAT --to-destination {a}", ("PREROUTING", "OUTPUT"), "nat"),
        T("-p tcp -j DNAT --to-destination {a_port}", ("PREROUTING", "OUTPUT"), "nat"),
        T("-p udp -j DNAT --to-destination {a_range}:{prange_dash}", ("PREROUTING",), "nat"),
        T("-j DNAT --to {a} --random --persistent", ("PREROUTING", "OUTPUT"), "nat"),
    ],
    "SNAT": [
        T("-s {net} -j SNAT --to-source {a}", ("POSTROUTING", "INPUT"), "nat"),
        T("-p tcp -j SNAT --to-source {a_port}", ("POSTROUTING",), "nat"),
        T("-p udp -j SNAT --to-source {a_range}:{prange_dash} --random", ("POSTROUTING",), "nat"),
        T("-j SNAT --to-source {a} --random-fully", ("POSTROUTING",), "nat"),
    ],
    "MASQUERADE": [
        T("-o {iface} -j MASQUERADE", ("POSTROUTING",), "nat"),
        T("-p tcp -j MASQUERADE --to-ports {prange_dash}", ("POSTROUTING",), "nat"),
        T("-p udp -j MASQUERADE --to-ports {port} --random", ("POSTROUTING",), "nat"),
        T("-j MASQUERADE --random-fully", ("POSTROUTING",), "nat"),
    ],
    "REDIRECT": [
        T("-p tcp --dport {port} -j REDIRECT --to-ports {port}", ("PREROUTING", "OUTPUT"), "nat"),
        T("-p udp -j REDIRECT --to-ports {prange_dash} --random", ("PREROUTING",), "nat"),
        T("-j REDIRECT", ("PREROUTING", "OUTPUT"), "nat"),
    ],
    "TRACE": [
        T("-p tcp --dport {port} -j TRACE", BUILTINS["raw"], "raw"),
    ],
    "CT": [
        T("-j CT --notrack", BUILTINS["raw"], "raw"),
        T("-j CT --zone {u16}", BUILTINS["raw"], "raw"),
        T("-j CT --ctevents {ctevents}", BUILTINS["raw"], "raw"),
        T("-j CT --expevents new", BUILTINS["raw"], "raw"),
        T("-j CT --zone-orig {u16}", BUILTINS["raw"], "raw"),
        T("-p tcp --dport 21 -j CT --helper ftp", BUILTINS["raw"], "raw"),
    ],
    "NOTRACK": [
        T("-p udp --dport {port} -j NOTRACK", BUILTINS["raw"], "raw"),
    ],
}
for _ext in {id(e): e for exts in (*REGISTRY.matches.values(), *REGISTRY.targets.values()) for e in exts}.values():
    if _ext.roundtrip:
        TEMPLATES.setdefault(_ext.name, []).extend(T(text) for text in _ext.roundtrip)


class Values(dict):
    """Placeholder values for str.format_map: each lookup draws a fresh random value."""

    def __init__(self, rng: random.Random, family: Family):
        super().__init__()
        self.r, self.f = rng, family

    def __missing__(self, key: str) -> str:
        return str(getattr(self, "v_" + key)())

    def _host(self) -> str:
        r = self.r
        if self.f is V4:
            return r.choice(("10.{}.{}.{}", "192.0.2.{2}", "198.51.100.{2}", "203.0.113.{1}")).format(
                r.randrange(256), r.randrange(256), r.randrange(1, 255))
        return r.choice(("2001:db8:{:x}::{:x}", "2001:db8:{:x}:{:x}::1", "fd00:{:x}::{:x}")).format(
            r.randrange(1, 65536), r.randrange(1, 65536))

    def v_a(self) -> str:
        return self._host()

    def v_a_odd(self) -> str:
        """A host written the long way: /32 or /128, upper case, zero padding."""
        r, host = self.r, self._host()
        if self.f is V4:
            return host + "/32"
        return r.choice((host.upper(), host + "/128", host.replace("2001:db8", "2001:0db8:0000")))

    def v_net(self) -> str:
        """A network, sometimes with host bits set (iptables masks them off)."""
        return f"{self._host()}/{self.r.randrange(8, 32) if self.f is V4 else self.r.randrange(16, 128)}"

    def v_mask(self) -> str:
        bits = self.r.randrange(8, 32)
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        return f"{self._host()}/{'.'.join(str(mask >> s & 255) for s in (24, 16, 8, 0))}"

    def v_arange(self) -> str:
        if self.f is V4:
            a = self.r.randrange(1, 250)
            return f"10.9.{self.r.randrange(256)}.{a}-10.9.255.{self.r.randrange(a + 1, 256)}"
        a = self.r.randrange(1, 60000)
        return f"2001:db8::{a:x}-2001:db8::{self.r.randrange(a + 1, 65536):x}"

    def v_a_port(self) -> str:
        host = self._host()
        return f"{host}:{self.v_port()}" if self.f is V4 else f"[{host}]:{self.v_port()}"

    def v_a_range(self) -> str:
        """start-end address range as NAT targets take it (bracketed for IPv6)."""
        lo = self.r.randrange(1, 200)
        if self.f is V4:
            return f"10.7.7.{lo}-10.7.7.{lo + self.r.randrange(1, 50)}"
        return f"[2001:db8::{lo:x}-2001:db8::{lo + self.r.randrange(1, 50):x}]"

    def v_port(self) -> int:
        return self.r.randrange(1, 65536)

    def v_prange(self) -> str:
        a = self.r.randrange(1, 65000)
        return f"{a}:{self.r.randrange(a + 1, 65536)}"

    def v_prange_dash(self) -> str:
        return self.v_prange().replace(":", "-")

    def v_ports(self) -> str:
        """A multiport list: unsorted, with ranges, at most 15 slots."""
        parts, slots = [], self.r.randrange(1, 15)
        while slots > 0:
            if slots >= 2 and self.r.random() < 0.3:
                parts.append(self.v_prange())
                slots -= 2
            else:
                parts.append(str(self.v_port()))
                slots -= 1
        return ",".join(parts)

    def v_svc(self) -> str:
        return self.r.choice(("ssh", "http", "https", "smtp", "domain", "imaps", "ftp"))

    def v_proto(self) -> str:
        return self.r.choice(("tcp", "udp", "6", "17", "47", "gre", "esp", "50", "132", "sctp", "253",
                              "TCP", "ah") + (("icmp", "1") if self.f is V4 else ("ipv6-icmp", "icmpv6", "58")))

    def v_flags(self) -> str:
        names = ["SYN", "ACK", "FIN", "RST", "URG", "PSH"]
        return ",".join(self.r.sample(names, self.r.randrange(1, 7)))

    def v_u8(self) -> int:
        return self.r.randrange(1, 255)

    def v_u8hex(self) -> str:
        return hex(self.r.randrange(256))

    def v_u16(self) -> int:
        return self.r.randrange(1, 65536)

    def v_u16range(self) -> str:
        a = self.r.randrange(0, 60000)
        return f"{a}:{self.r.randrange(a, 65536)}"

    def v_n(self) -> int:
        return self.r.randrange(1, 200)

    def v_n2(self) -> int:
        return self.r.randrange(200, 2000)

    def v_n7(self) -> int:
        return self.r.randrange(0, 8)

    def v_burst(self) -> int:
        return self.r.randrange(1, 1000)

    def v_hit(self) -> int:
        return self.r.randrange(1, 20)

    def v_pfx(self) -> int:
        return self.r.randrange(1, 33 if self.f is V4 else 129)

    def v_ms(self) -> int:
        return self.r.randrange(1000, 100000)

    def v_hsize(self) -> int:
        return self.r.randrange(16, 4096)

    def v_hmax(self) -> int:
        return self.r.randrange(4096, 65536)

    def v_rate(self) -> str:
        r = self.r
        unit = r.choice(("/sec", "/second", "/s", "/min", "/minute", "/m", "/hour", "/h", "/day", "/d", ""))
        return f"{r.randrange(1, 100)}{unit}"

    def v_hrate(self) -> str:
        """No /day: xt_hashlimit refuses some slow rates with bursts (an avg*burst overflow check whose
        bounds depend on the kernel's HZ, e.g. 1/day burst 2 refused, burst 3 accepted), which stockade
        cannot know."""
        return self.v_rate().replace("/day", "/hour").replace("/d", "/h")

    def v_hlmode(self) -> str:
        return ",".join(self.r.sample(["srcip", "dstip", "srcport", "dstport"], self.r.randrange(1, 5)))

    def v_name(self) -> str:
        return "sk" + "".join(self.r.choice("abcdefghijklmnop_-0123456789") for _ in range(self.r.randrange(1, 12)))

    def v_states(self) -> str:
        return ",".join(self.r.sample(["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"],
                                      self.r.randrange(1, 6)))

    def v_ctstates(self) -> str:
        return ",".join(self.r.sample(["NEW", "ESTABLISHED", "RELATED", "UNTRACKED", "SNAT", "DNAT"],
                                      self.r.randrange(1, 7)))

    def v_ctstatus(self) -> str:
        return ",".join(self.r.sample(["EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"], self.r.randrange(1, 5)))

    def v_ctdir(self) -> str:
        return self.r.choice(("ORIGINAL", "REPLY"))

    def v_ctevents(self) -> str:
        return ",".join(self.r.sample(["new", "related", "destroy", "reply", "assured", "protoinfo", "helper",
                                       "mark", "natseqinfo", "secmark"], self.r.randrange(1, 5)))

    def v_set(self) -> str:
        return SETS[self.f][0][0]

    def v_setp(self) -> str:
        return SETS[self.f][1][0]

    def v_word(self) -> str:
        return self.r.choice(("ssh", "web", "mail-in", "DNS_q", "x", "drop")) + str(self.r.randrange(100))

    def v_words(self) -> str:
        return " ".join(self.v_word() for _ in range(self.r.randrange(2, 4)))

    def v_hex(self) -> str:
        return " ".join(f"{self.r.randrange(256):02x}" for _ in range(self.r.randrange(1, 6)))

    def v_algo(self) -> str:
        return self.r.choice(("bm", "kmp"))

    def v_mac(self) -> str:
        mac = ":".join(f"{self.r.randrange(256):02x}" for _ in range(6))
        return mac.upper() if self.r.random() < 0.5 else mac

    def v_mark(self) -> str:
        value = self.r.randrange(2**32)
        return hex(value) if self.r.random() < 0.7 else str(value)

    def v_mask32(self) -> str:
        return self.r.choice(("0xff", "0xffff", "0xff00", "0xffffffff", "0x1", "0xf0", hex(self.r.randrange(1, 2**32))))

    def v_iface(self) -> str:
        return self.r.choice(("eth", "ens", "wlan", "br-", "veth", "tun")) + self.r.choice(("0", "1", "+", "12", "3+"))

    def v_icmp_name(self) -> str:
        return self.r.choice(("echo-request", "echo-reply", "destination-unreachable", "port-unreachable",
                              "time-exceeded", "ttl-zero-during-transit", "parameter-problem", "redirect",
                              "host-prohibited", "source-quench", "timestamp-request", "fragmentation-needed",
                              "network-unreachable", "router-advertisement", "ping", "pong"))

    def v_icmp_num(self) -> str:
        return str(self.r.choice((0, 3, 4, 5, 8, 11, 12, 13, 14, 17, 18, 42)))

    def v_icmp_tc(self) -> str:
        return f"{self.r.choice((3, 5, 11, 12))}/{self.r.randrange(0, 4)}"

    def v_icmp6_name(self) -> str:
        return self.r.choice(("echo-request", "echo-reply", "destination-unreachable", "no-route",
                              "packet-too-big", "time-exceeded", "parameter-problem", "neighbour-solicitation",
                              "neighbor-advertisement", "router-solicitation", "redirect", "port-unreachable",
                              "address-unreachable", "communication-prohibited", "ttl-zero-during-transit"))

    def v_icmp6_num(self) -> str:
        return str(self.r.choice((1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137, 143)))

    def v_icmp6_tc(self) -> str:
        return f"{self.r.choice((1, 3, 4))}/{self.r.randrange(0, 3)}"

    def v_pkttype(self) -> str:
        return self.r.choice(("unicast", "broadcast", "multicast", "UNICAST", "Multicast"))

    def v_atype(self) -> str:
        v6ok = ("UNSPEC", "UNICAST", "LOCAL", "MULTICAST", "UNREACHABLE", "ANYCAST")
        more = ("BROADCAST", "BLACKHOLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")  # the kernel refuses these for IPv6
        return self.r.choice(v6ok + (more if self.f is V4 else ()))

    def v_uid(self) -> int:
        return self.r.randrange(0, 30000)

    def v_uid2(self) -> int:
        return self.r.randrange(30000, 60000)

    def v_tos_name(self) -> str:
        return self.r.choice(("Minimize-Delay", "Maximize-Throughput", "Maximize-Reliability", "Minimize-Cost",
                              "Normal-Service", "0x10", "0x08", "16"))

    def v_dscp(self) -> str:
        return str(self.r.randrange(64))

    def v_dscp_hex(self) -> str:
        return hex(self.r.randrange(64))

    def v_dscp_class(self) -> str:
        return self.r.choice(("AF11", "AF12", "AF21", "AF41", "CS0", "CS1", "CS6", "EF", "af31", "cs7", "be"))

    def v_loglevel(self) -> str:
        return self.r.choice(("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug", "panic",
                              "0", "4", "7"))

    def v_reject4(self) -> str:
        return self.r.choice(("icmp-net-unreachable", "icmp-host-unreachable", "icmp-port-unreachable",
                              "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited",
                              "icmp-admin-prohibited", "net-unreach", "host-unreach", "port-unreach",
                              "proto-unreach", "net-prohib", "host-prohib", "admin-prohib"))

    def v_reject6(self) -> str:
        return self.r.choice(("icmp6-no-route", "no-route", "icmp6-adm-prohibited", "adm-prohibited",
                              "icmp6-addr-unreachable", "addr-unreach", "icmp6-port-unreachable",
                              "port-unreach", "icmp6-policy-fail", "policy-fail", "icmp6-reject-route",
                              "reject-route"))


@dataclass
class Line:
    """One generated rule and what became of it."""

    key: str  # "extension/index" of its template
    family: Family
    table: str
    chain: str
    words: str
    lineno: int = 0
    kernel: str | None = None  # the rule line iptables-save printed
    kernel_error: str | None = None
    stockade: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # stockade's error diagnostics
    warnings: list[str] = field(default_factory=list)


def template_keys(family: Family) -> list[str]:
    return [f"{ext}/{i}" for ext, tpls in TEMPLATES.items() for i, t in enumerate(tpls)
            if t.family in (None, family)]


def template(key: str) -> T:
    ext, i = key.rsplit("/", 1)
    return TEMPLATES[ext][int(i)]


def generate(family: Family, seed: int) -> list[Line]:
    rng = random.Random(f"{seed}-{family.name}")
    seen: set[tuple[str, str, str]] = set()
    out: list[Line] = []
    for key in template_keys(family):
        t = template(key)
        for _ in range(PER_TEMPLATE):
            chain = rng.choice(t.chains)
            words = t.text.format_map(Values(rng, family))
            if (t.table, chain, words) not in seen:
                seen.add((t.table, chain, words))
                out.append(Line(key, family, t.table, chain, words))
    return out


def restore_text(lines: list[Line], number: bool = False) -> str:
    """iptables-restore input holding `lines`; with `number`, each Line learns its line number."""
    text = []
    for table, builtins in BUILTINS.items():
        mine = [ln for ln in lines if ln.table == table]
        if not mine:
            continue
        text.append(f"*{table}")
        text += [f":{c} ACCEPT [0:0]" for c in builtins]
        text += [f":{c} - [0:0]" for c in USER_CHAINS.get(table, ())]
        for ln in mine:
            text.append(f"-A {ln.chain} {ln.words}")
            if number:
                ln.lineno = len(text)
        text.append("COMMIT")
    return "\n".join(text) + "\n"


def needed_extensions(key: str, family: Family) -> list[str]:
    """Extensions a template uses that stockade has no module for (for this family)."""
    ext = key.rsplit("/", 1)[0]
    words = [w.text for w in split_line(template(key).text, "template", 1)]
    wanted = [("match", ext), ("target", ext)] if ext != "core" else []
    for flag, word in itertools.pairwise(words):
        if flag == "-m":
            wanted.append(("match", word))
        elif flag in ("-j", "-g") and word not in VERDICTS and not word.startswith("SK"):
            wanted.append(("target", word))
    names = {name for _, name in wanted}
    found = {name for kind, name in wanted if REGISTRY.find(kind, name, family)}
    return sorted(names - found)


def rule_lines(save_text: str) -> dict[tuple[str, str], list[str]]:
    """`-A` lines of iptables-save output per (table, chain), counters stripped."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        line = re.sub(r"^\[\d+:\d+\]\s*", "", line).rstrip()
        if line.startswith("-A "):
            out[(table, line.split()[1])].append(line)
    return out


def kernel_round_trip(ns: Netns, family: Family, lines: list[Line]) -> None:
    """Load the generated text unchanged and record the line iptables-save prints for each rule."""
    cmd = "iptables" if family is V4 else "ip6tables"
    for name, kind, fam in SETS[family]:
        ns.run(["ipset", "create", name, kind, "family", fam])
    loadable = list(lines)
    try:
        ns.run([f"{cmd}-restore"], input=restore_text(loadable))
    except NetnsError:
        # One refused rule aborts the whole restore: find the culprits one by one.
        for ln in lines:
            proc = ns.run([f"{cmd}-restore"], input=restore_text([ln]), check=False)
            if proc.returncode != 0:
                ln.kernel_error = proc.stderr.strip()
        loadable = [ln for ln in lines if ln.kernel_error is None]
        ns.run([f"{cmd}-restore"], input=restore_text(loadable))
    got = rule_lines(ns.run([f"{cmd}-save"]).stdout)
    per_chain: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for ln in loadable:
        per_chain[(ln.table, ln.chain)].append(ln)
    for where, mine in per_chain.items():
        printed = got.get(where, [])
        assert len(printed) == len(mine), f"{where}: loaded {len(mine)} rules, iptables-save printed {len(printed)}"
        for ln, text in zip(mine, printed):
            ln.kernel = text


def stockade_round_trip(family: Family, lines: list[Line]) -> None:
    text = restore_text(lines, number=True)
    b = read_save(text, f"roundtrip-{family.name}", family)
    by_line = {ln.lineno: ln for ln in lines}
    for d in b.diagnostics:
        ln = by_line.get(d.origin.line)
        if ln is None:
            raise AssertionError(f"diagnostic outside a rule: {d}")
        (ln.errors if d.severity == "error" else ln.warnings).append(f"{d.code}: {d.message}")
    rs = b.ruleset(family)
    rendered = rule_lines(render_save(rs))
    for table in rs.tables.values():
        for chain in table.chains.values():
            assert len(rendered[(table.name, chain.name)]) == len(chain.rules)
            for rule, text in zip(chain.rules, rendered[(table.name, chain.name)]):
                by_line[rule.origin.line].stockade.append(text)


def failure(ln: Line, missing: list[str]) -> str | None:
    """Why this rule fails the round trip (None if it passes)."""
    head = f"line {ln.lineno} `-A {ln.chain} {ln.words}` (-t {ln.table})"
    if ln.kernel_error and ln.errors:
        return f"{head}: kernel and stockade both refuse it (template bug): {ln.kernel_error}"
    if ln.kernel_error:
        return f"{head}: the kernel refuses it, stockade accepts it: {ln.kernel_error}"
    if missing:
        return f"{head}: extension missing in stockade: {', '.join(missing)}"
    if ln.errors:
        return f"{head}: stockade refused it: {'; '.join(ln.errors)}"
    if ln.stockade != [ln.kernel]:
        diff = "\n".join(difflib.ndiff([ln.kernel or ""], ln.stockade or [""]))
        return f"{head}: rendering mismatch (- kernel, + stockade):\n{diff}"
    return None


@pytest.fixture(scope="module")
def results(kernel_ok) -> dict[Family, list[Line]]:
    print(f"\nround trip seed: {SEED} (repeat with STOCKADE_SEED={SEED})")
    out = {}
    for family in (V4, V6):
        lines = generate(family, SEED)
        stockade_round_trip(family, lines)
        with Netns() as ns:
            kernel_round_trip(ns, family, lines)
        out[family] = lines
    return out


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
def test_enough_distinct_rules(results, family):
    lines = results[family]
    assert len({(ln.table, ln.chain, ln.words) for ln in lines if ln.kernel is not None}) >= MIN_RULES
    bad = [ln for ln in lines if failure(ln, needed_extensions(ln.key, family))]
    print(f"{family.cmd}: {len(lines)} distinct rules from {len(template_keys(family))} templates, "
          f"{len(lines) - len(bad)} round-trip exactly, {len(bad)} do not (seed {SEED})")


@pytest.mark.parametrize("family,key", [(f, k) for f in (V4, V6) for k in template_keys(f)],
                         ids=[f"{f.cmd}:{k}" for f in (V4, V6) for k in template_keys(f)])
def test_template(results, family, key):
    missing = needed_extensions(key, family)
    problems = [p for ln in results[family] if ln.key == key and (p := failure(ln, missing))]
    assert not problems, f"template {key} `{template(key).text}` (seed {SEED}):\n" + "\n".join(problems)
