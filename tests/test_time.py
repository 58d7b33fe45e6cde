"""-m time (extensions/time.py): parse and save as iptables 1.8.9 does, nft translation, simulation.

The saved forms below are what iptables-restore / iptables-save (1.8.9, nf_tables) printed for
the same input in a namespace; the kernel round trip itself runs from the extension's declared
`roundtrip` rules in tests/kernel/test_roundtrip.py, and iptables' own libxt_time.t and
libxt_time.txlate cases run in tests/test_iptables_t.py and tests/test_render_nft.py.
"""
from __future__ import annotations

import pytest

from stockade.extensions import REGISTRY
from stockade.model import Family
from stockade.model.nft import Ctx, NftError
from stockade.model.packet import from_short
from stockade.parse.save import read_save
from stockade.render.save import render_save
from stockade.semantics.simulate import Simulator

V4, V6 = Family.IPV4, Family.IPV6
END = "--datestop 2038-01-19T03:14:07"  # libxt_time's default end, which iptables-save prints


def load(rule: str, family: Family = V4):
    text = f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n"
    b = read_save(text, "t.rules", family)
    return b, b.rulesets.get(family)


def saved(rule: str, family: Family = V4) -> str:
    b, rs = load(rule, family)
    assert not [d for d in b.diagnostics if d.severity == "error"], [str(d) for d in b.diagnostics]
    return next(line for line in render_save(rs).splitlines() if line.startswith("-A "))


def refusal(rule: str) -> str:
    b, _ = load(rule)
    errors = [d for d in b.diagnostics if d.severity == "error"]
    assert errors, f"{rule!r} was accepted"
    return errors[0].message


@pytest.mark.parametrize("rule,want", [
    ("-m time --timestart 08:00 --timestop 17:30:15 --weekdays Mon,Tu,3,Thu,Fri -j ACCEPT",
     f"-m time --timestart 08:00:00 --timestop 17:30:15 --weekdays Mon,Tue,Wed,Thu,Fri {END} -j ACCEPT"),
    ("-m time --datestart 2024-02-29 --datestop 2037-12-31T23:59:59 -j DROP",
     "-m time --datestart 2024-02-29T00:00:00 --datestop 2037-12-31T23:59:59 -j DROP"),
    ("-m time ! --monthdays 1,15,31 --kerneltz -j ACCEPT",
     "-m time --monthdays 2,3,4,5,6,7,8,9,10,11,12,13,14,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30 "
     f"{END} --kerneltz -j ACCEPT"),
    ("-m time --timestart 22:00 --timestop 06:00 --contiguous ! --weekdays Sat,Sun --utc -j DROP",
     f"-m time --timestart 22:00:00 --timestop 06:00:00 --weekdays Mon,Tue,Wed,Thu,Fri {END} --contiguous -j DROP"),
    ("-m time --datestart 2021 --timestart 12:00 -j ACCEPT",
     f"-m time --timestart 12:00:00 --timestop 23:59:59 --datestart 2021-01-01T00:00:00 {END} -j ACCEPT"),
    # mktime's normalising, and libxt_time's two-character buffer for each month day (010 is octal 01)
    ("-m time --datestart 2021- --monthdays 123,010 -j ACCEPT",
     f"-m time --monthdays 1,12 --datestart 2020-12-01T00:00:00 {END} -j ACCEPT"),
    ("-m time --datestart 2021-02-31 --datestop 2021-03-00 -j ACCEPT",
     "-m time --datestart 2021-03-03T00:00:00 --datestop 2021-02-28T00:00:00 -j ACCEPT"),
    ("-m time --timestart :5: --timestop 23:59:59 --localtz -j ACCEPT",
     f"-m time --timestart 00:05:00 --timestop 23:59:59 {END} --kerneltz -j ACCEPT"),
    ("-m time --weekdays Monday,Sunday -j ACCEPT", f"-m time --weekdays Mon,Sun {END} -j ACCEPT"),
    ("-m time -j ACCEPT", f"-m time {END} -j ACCEPT"),
])
def test_saved_as_iptables_save_prints_it(rule, want):
    assert saved(rule) == f"-A INPUT {want}"
    assert saved(rule, V6) == f"-A INPUT {want}"
    assert saved(want) == f"-A INPUT {want}"  # and reads back the same


@pytest.mark.parametrize("rule,says", [
    ("-m time --monthdays 09", "not a day of the month"),  # octal: iptables refuses it too
    ("-m time --monthdays 0x1", "not a day of the month"),  # cut to `0x`
    ("-m time --monthdays 0", "not a day of the month"),  # iptables-save would print an empty list
    ("-m time --monthdays 1,,2", "not a day of the month"),
    ("-m time --weekdays 0", "not a weekday"),
    ("-m time --weekdays 8", "not a weekday"),
    ("-m time --weekdays mon", "not a weekday"),  # case matters
    ("-m time --weekdays M", "not a weekday"),
    ("-m time ! --weekdays 1,2,3,4,5,6,7", "leaves no day"),
    ("-m time --datestart 1969-12-31", "bad date"),
    ("-m time --datestart 2039", "bad date"),
    ("-m time --datestart 2021-13", "bad date"),
    ("-m time --datestart 2021-01-01T10:60", "bad date"),
    ('-m time --datestart "2021-01-01 10:00"', "bad date"),
    ("-m time --datestop 1970", "saved as no end date"),
    ("-m time --timestart 24:00", "bad time of day"),
    ("-m time --timestart 12", "bad time of day"),
    ("-m time --timestart 12:00:00:00", "bad time of day"),
    ("-m time --timestart 12:00 --timestop 13:00 --contiguous", "--contiguous only makes sense"),
    ("-m time --contiguous", "--contiguous only makes sense"),
    ("-m time --utc --kerneltz", "contradict"),
    ("-m time ! --datestart 2021", "cannot be inverted"),
    ("-m time --timestart 01:00 --timestart 02:00", "given twice"),
])
def test_what_iptables_refuses_or_could_not_save_is_refused(rule, says):
    assert says in refusal(rule + " -j ACCEPT")


def nft(rule: str) -> str:
    _, rs = load(rule)
    m = rs.tables["filter"].chains["INPUT"].rules[0].matches[0]
    parts = REGISTRY.find("match", "time", V4).nft(m.data, Ctx(V4, "inet"))
    return " ".join(p.text for p in parts)


def test_nft_writes_iptables_translate_forms_and_keeps_a_range_across_midnight():
    assert nft("-m time --timestart 12:00 --timestop 19:00 --weekdays Sa,Su --datestart 2020-01-29") == \
        'meta time "2020-01-29 00:00:00"-"2038-01-19 03:14:07" meta hour "12:00:00"-"19:00:00" meta day { 6, 0 }'
    assert nft("-m time --weekdays Wed") == "meta day 3"
    # 22:00-06:00 is every time but the gap between: nft refuses a range whose start is after its end
    assert nft("-m time --timestart 22:00 --timestop 06:00") == 'meta hour != "06:00:01"-"21:59:59"'
    assert nft("-m time --timestart 12:00:00 --timestop 11:59:59") == ""  # no gap: always
    assert nft("-m time") == ""


@pytest.mark.parametrize("rule", ["-m time --monthdays 1", "-m time --kerneltz",
                                  "-m time --timestart 22:00 --timestop 06:00 --contiguous"])
def test_nft_refuses_what_it_cannot_say(rule):
    with pytest.raises(NftError, match="no nftables equivalent"):
        nft(rule)


def test_the_simulator_leaves_a_time_rule_open():
    """The packet's `t` is no wall-clock time: the rule, and so the verdict, stay open, and say why."""
    _, rs = load("-p tcp -m time --weekdays Mon -j DROP")
    res = Simulator(rs).run(from_short("tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN iif eth0 t 86400"))
    assert res.verdict == "UNKNOWN"
    assert "match `time` is not modelled" in res.reason
    _, rs = load("-p udp -m time --weekdays Mon -j DROP")  # a rule the packet cannot reach decides nothing
    assert Simulator(rs).run(from_short("tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN iif eth0")).verdict == "ACCEPT"
