"""The shell-script and tutorial reader: shell features, tutorial recovery, and the seed goldens."""
from __future__ import annotations

from pathlib import Path

import pytest

from stockade.model import Family
from stockade.parse.read import read
from stockade.parse.script import Invocation, read_script
from stockade.render.save import render_save, rule_words

from .corpus import SEEDS

GOLDEN = Path(__file__).parent / "golden" / "seeds"


def load(text: str):
    return read_script(text, "t.sh")


def rules(b, chain: str = "INPUT", table: str = "filter", family: Family = Family.IPV4) -> list[str]:
    """The chain's rules; none where the table is absent (a refused command creates no table)."""
    t = b.rulesets[family].tables.get(table) if family in b.rulesets else None
    return [" ".join(rule_words(r, family)) for r in t.chains[chain].rules] if t else []


def found(b, *severities: str) -> list[tuple[str, str, int, int]]:
    """(severity, code, line, col) of the diagnostics, notes left out unless asked for."""
    wanted = severities or ("error", "warning")
    return [(d.severity, d.code, d.origin.line, d.origin.col) for d in b.diagnostics if d.severity in wanted]


def clean(b) -> bool:
    return not found(b)


# -- shell basics ------------------------------------------------------------------------------------

def test_comments_blank_lines_and_trailing_comments():
    b = load("#!/bin/sh\n\n# iptables -A INPUT -j DROP\niptables -A INPUT -p tcp --dport 22 -j ACCEPT # ssh\n")
    assert rules(b) == ["-p tcp -m tcp --dport 22 -j ACCEPT"]
    assert clean(b)


def test_single_and_double_quotes():
    b = load("iptables -A INPUT -j LOG --log-prefix \"IN DROP: \"\n"
             "iptables -A INPUT -m comment --comment 'it is #1' -j ACCEPT\n")
    assert rules(b) == ['-j LOG --log-prefix "IN DROP: "', '-m comment --comment "it is #1" -j ACCEPT']


def test_backslash_newline_continuation_keeps_positions():
    b = load("iptables -A INPUT \\\n    -p tcp --dport 70000 \\\n    -j ACCEPT\n")
    assert found(b) == [("error", "bad-number", 2, 20)]


def test_semicolons_separate_commands():
    b = load("iptables -N LOGDROP; iptables -A LOGDROP -j DROP ;iptables -A INPUT -j LOGDROP\n")
    assert rules(b, "LOGDROP") == ["-j DROP"] and rules(b) == ["-j LOGDROP"]


def test_unbalanced_quote_is_an_error_and_the_next_line_is_still_read():
    b = load('iptables -A INPUT -j LOG --log-prefix "oops\n\niptables -A INPUT -j DROP\n')
    assert found(b) == [("error", "unbalanced-quote", 1, 39)]
    assert rules(b) == ["-j DROP"]


# -- variables ----------------------------------------------------------------------------------------

def test_assignment_and_expansion_forms():
    b = load('IP=198.51.100.7\nNET="10.0.0.0/8"\n'
             'iptables -A INPUT -s $IP -j ACCEPT\niptables -A INPUT -s ${NET} -j ACCEPT\n'
             'iptables -A INPUT -i ${WAN:-eth0} -j ACCEPT\n')
    assert rules(b) == ["-s 198.51.100.7/32 -j ACCEPT", "-s 10.0.0.0/8 -j ACCEPT", "-i eth0 -j ACCEPT"]


def test_error_in_an_expanded_value_points_at_the_variable():
    b = load('BAD="300.1.1.1"\n\niptables -A INPUT -s $BAD -j DROP\n')
    assert found(b) == [("error", "bad-address", 3, 22)]


def test_unquoted_expansion_is_split_quoted_is_not():
    b = load('DNS="192.0.2.1 192.0.2.2"\nfor ip in $DNS; do iptables -A INPUT -s $ip -j ACCEPT; done\n'
             'for ip in "$DNS"; do iptables -A INPUT -m comment --comment "$ip" -j ACCEPT; done\n')
    assert rules(b) == ["-s 192.0.2.1/32 -j ACCEPT", "-s 192.0.2.2/32 -j ACCEPT",
                        '-m comment --comment "192.0.2.1 192.0.2.2" -j ACCEPT']


def test_unset_variable_is_a_warning_at_its_use():
    b = load("iptables -A INPUT -i $LAN_IF -j ACCEPT\n")
    assert found(b) == [("warning", "unset-variable", 1, 22), ("error", "stray-word", 1, 33)]  # `-i -j ACCEPT`


def test_command_substitution_is_reported_with_what_it_skipped():
    b = load('HOSTS=$(cat /etc/blocked)\nfor h in $HOSTS\ndo\n  iptables -A INPUT -s $h -j DROP\ndone\n'
             "iptables -A INPUT -s `hostname -i` -j ACCEPT\niptables -A INPUT -j DROP\n")
    warns = [d for d in b.diagnostics if d.code == "cannot-expand"]
    assert [(d.origin.line, d.origin.col) for d in warns] == [(2, 10), (4, 24), (6, 22)]
    assert "$(cat /etc/blocked)" in warns[0].message and "for loop over it (1 command, lines 2-5) once, with the " \
        "loop variable unknown" in warns[0].message
    assert "`$h`" in warns[1].message and "its rule is kept with `-s $h` unknown (depends on script line 1 " \
        in warns[1].message
    assert "`hostname -i`" in warns[2].message and "its rule is kept with `-s `hostname -i`` unknown" in warns[2].message
    assert all(w.hint for w in warns)
    # the kernel's view has the one known rule; the analyses' has each unknown one at its place
    assert "-s" not in render_save(b.rulesets[Family.IPV4])
    assert rules(b) == ["-s $h -j DROP", "-s `hostname -i` -j ACCEPT", "-j DROP"]


# -- loops and other shell constructs ---------------------------------------------------------------

def test_for_loops_single_line_multi_line_and_nested():
    b = load("for p in 80 443; do iptables -A INPUT -p tcp --dport $p -j ACCEPT; done\n"
             "for n in 10.0.0.0/8 192.168.0.0/16\ndo\n"
             "  for p in 25 587\n  do\n    iptables -A FORWARD -s $n -p tcp --dport $p -j ACCEPT\n  done\n"
             "done\n")
    assert rules(b) == ["-p tcp -m tcp --dport 80 -j ACCEPT", "-p tcp -m tcp --dport 443 -j ACCEPT"]
    assert rules(b, "FORWARD") == [f"-s {n} -p tcp -m tcp --dport {p} -j ACCEPT"
                                   for n in ("10.0.0.0/8", "192.168.0.0/16") for p in (25, 587)]
    assert clean(b)


def test_a_defect_in_a_loop_body_is_reported_once():
    b = load("for ip in 192.0.2.1 192.0.2.2; do iptables -A INPUT-p tcp -s $ip -j ACCEPT; done\n")
    assert found(b) == [("error", "glued-option", 1, 47)]


def test_functions_are_called_with_arguments():
    b = load('allow() {\n  iptables -A INPUT -p tcp --dport "$1" -j ACCEPT\n}\nallow 22\nallow 443\n')
    assert rules(b) == ["-p tcp -m tcp --dport 22 -j ACCEPT", "-p tcp -m tcp --dport 443 -j ACCEPT"]


def test_if_conditions_are_evaluated_with_the_scripts_arguments():
    text = 'iptables -A INPUT -j ACCEPT\nif [ "$1" = stop ]; then\n  iptables -F\nfi\niptables -A INPUT -j DROP\n'
    assert rules(load(text)) == ["-j ACCEPT", "-j DROP"] and clean(load(text))
    b = read_script(text, "t.sh", how=Invocation(args=["stop"]))
    assert rules(b) == ["-j DROP"] and clean(b)


def test_or_handles_a_failure():
    b = load("iptables -N LOGDROP\niptables -N LOGDROP 2>/dev/null || true\niptables -A INPUT -j DROP || exit 1\n")
    assert clean(b) and rules(b) == ["-j DROP"]
    assert [d.code for d in b.diagnostics] == ["duplicate-chain"]


# -- iptables command lines -------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["iptables", "/sbin/iptables", "/usr/sbin/iptables", "sudo iptables",
                                 "sudo -E /usr/sbin/iptables", "$IPT", "${IPT}"])
def test_iptables_spellings(cmd):
    b = load(f"IPT=/sbin/iptables\n{cmd} -A INPUT -s 192.0.2.1 -j DROP\n")
    assert rules(b) == ["-s 192.0.2.1/32 -j DROP"] and clean(b)


def test_ip6tables_goes_to_the_ipv6_ruleset():
    b = load("ip6tables -A INPUT -s 2001:db8::/32 -j DROP\niptables -A INPUT -s 192.0.2.0/24 -j DROP\n")
    assert rules(b, family=Family.IPV6) == ["-s 2001:db8::/32 -j DROP"]
    assert rules(b) == ["-s 192.0.2.0/24 -j DROP"]


@pytest.mark.parametrize("line", ["iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE",
                                  "iptables -A POSTROUTING -o eth0 -t nat -j MASQUERADE",
                                  "iptables --table=nat -A POSTROUTING -o eth0 -j MASQUERADE",
                                  "iptables -o eth0 -t nat -j MASQUERADE -A POSTROUTING"])
def test_table_option_and_command_anywhere(line):
    b = load(line + "\n")
    assert rules(b, "POSTROUTING", "nat") == ["-o eth0 -j MASQUERADE"] and clean(b)
    assert list(b.rulesets[Family.IPV4].tables["nat"].chains)[:4] == ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]


def test_chain_commands():
    b = load("iptables -N A\niptables -A A -j DROP\niptables -A INPUT -j ACCEPT\niptables -I INPUT 1 -j A\n"
             "iptables -R INPUT 2 -j RETURN\niptables -D INPUT -j A\niptables -P INPUT DROP\n"
             "iptables -N B\niptables -X B\niptables -E A C\niptables -F C\niptables -Z\n")
    ipv4 = b.rulesets[Family.IPV4].tables["filter"]
    assert rules(b) == ["-j RETURN"] and ipv4.chains["INPUT"].policy == "DROP"
    assert list(ipv4.chains) == ["INPUT", "FORWARD", "OUTPUT", "C"] and rules(b, "C") == []
    assert clean(b)


def test_listing_is_noted_not_run():
    b = load("iptables -nv -L\niptables -S\niptables -nvL INPUT\n")
    assert found(b, "note") == [("note", "skipped", 1, 14), ("note", "skipped", 2, 10), ("note", "skipped", 3, 1)]


# -- restore-format lines in a script or page --------------------------------------------------------

def test_restore_lines_in_a_page():
    b = load("Put this in /etc/sysconfig/iptables:\n*filter\n:INPUT DROP [0:0]\n:FWALL - [0:0]\n"
             "-A INPUT -j FWALL\n-A FWALL -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
             "Later add:\n-A FWALL -j LOG --log-prefix \"FW: \"\n")
    assert rules(b) == ["-j FWALL"]
    assert rules(b, "FWALL") == ["-p tcp -m tcp --dport 22 -j ACCEPT", '-j LOG --log-prefix "FW: "']
    assert b.rulesets[Family.IPV4].tables["filter"].chains["INPUT"].policy == "DROP"
    assert clean(b)


def test_here_document_for_iptables_restore():
    b = load("ip6tables-restore <<EOF\n*filter\n-A INPUT -s 2001:db8::1 -j ACCEPT\nCOMMIT\nEOF\n"
             "cat > /tmp/x <<'EOF'\n-A INPUT -j DROP\nEOF\n")
    assert rules(b, family=Family.IPV6) == ["-s 2001:db8::1/128 -j ACCEPT"]
    assert Family.IPV4 not in b.rulesets


# -- what is skipped, what is prose ---------------------------------------------------------------------

def test_other_commands_become_notes():
    b = load("modprobe ip_conntrack\necho 1 > /proc/sys/net/ipv4/ip_forward\niptables-save > /etc/rules.v4\n"
             "iptables-restore < /etc/rules.v4\nservice iptables save\n/etc/init.d/iptables restart\n"
             "vi /etc/sysconfig/iptables\ncp a b\ngrep -v x y\n*/5 * * * * /etc/init.d/iptables stop\n")
    assert [d.origin.line for d in b.diagnostics if d.severity == "note" and d.code == "skipped"] == [
        1, 3, 5, 6, 7, 8, 9, 10]  # echo is run (its output goes to a file)
    assert found(b) == [("warning", "unresolved-file", 4, 20)]  # the rules it loads are unknown
    assert Family.IPV4 not in b.rulesets


def test_prose_is_ignored_silently():
    b = load("iptables executes its rules based on the TCP handshake.\n"
             "I'll explain why, it's simple.\n"
             "if Half-open connections bind resources, it may be possible to flood.\n"
             "for example in this case we allow ssh:\n"
             "Iptables [-t table name] <-A | I | D | R> chain name\n"
             "iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n"
             "Don't forget to save.\n")
    assert b.diagnostics == [] and rules(b) == ["-p tcp -m tcp --dport 22 -j ACCEPT"]


# -- tutorial defects -------------------------------------------------------------------------------------

def test_typographic_dashes():
    b = load("iptables \u2013A INPUT -j DROP\niptables -A INPUT -p tcp \u2014dport 22 -j ACCEPT\n"
             "iptables -A INPUT \u2013p tcp -j ACCEPT\n")
    assert found(b) == [("error", "typographic-dash", 1, 10), ("error", "typographic-dash", 2, 26),
                        ("error", "typographic-dash", 3, 19)]
    assert rules(b) == []


def test_typographic_quotes_used_as_shell_quotes():
    b = load("LOG=\u201d/root/ip.blocked\u201d\niptables -A INPUT -j LOG --log-prefix \u201cDROP: \u201d\n")
    assert found(b) == [("warning", "typographic-quote", 1, 5), ("warning", "typographic-quote", 2, 39),
                        ("error", "stray-word", 2, 46)]


def test_chain_glued_to_an_option():
    b = load("iptables -N FWALL-INPUT\niptables -A FWALL-INPUT-p tcp --dport 21 -j ACCEPT\n")
    (d,) = [d for d in b.diagnostics if d.severity == "error"]
    assert (d.code, d.origin.line, d.origin.col) == ("glued-option", 2, 13) and "FWALL-INPUT -p" in d.message


def test_stray_character_before_a_command():
    b = load("[iptables -A INPUT -p tcp --dport 995 -j ACCEPT\n")
    (d,) = b.diagnostics
    assert (d.severity, d.code, d.origin.col) == ("error", "stray-character", 1)
    assert "`[`" in d.message and d.hint == "delete the `[`" and Family.IPV4 not in b.rulesets


@pytest.mark.parametrize("words, code, col", [
    ("--dport 22 -j ACCEPT", "option-needs-module", 19),
    ("-j nosuchchain", "unknown-chain", 22),
    ("-p tcp -p udp -j ACCEPT", "duplicate-option", 26),
    ("-p tcp --dport 1 --dport 2 -j ACCEPT", "duplicate-option", 44),
])
def test_rule_defects_are_errors_and_add_no_rule(words, code, col):
    b = load(f"iptables -A INPUT {words}\n")
    assert found(b) == [("error", code, 1, col)] and rules(b) == []


@pytest.mark.parametrize("words, code, col, unread, blanked", [
    ("-p tcp --dport 70000 -j ACCEPT", "bad-number", 34, "-m tcp --dport 70000", False),
    ("-p tcp --dport 100:20 -j ACCEPT", "bad-port", 34, "-m tcp --dport 100:20", False),
    ("-s 10.0.0.0/33 -j ACCEPT", "bad-address", 22, "-s 10.0.0.0/33", False),
    ("-s 300.1.2.3 -j ACCEPT", "bad-address", 22, "-s 300.1.2.3", False),
    ("-s x.x.x.x -j ACCEPT", "placeholder", 22, "-s x.x.x.x", True),
    ("-s YOUR_IP_ADDRESS -j ACCEPT", "placeholder", 22, "-s YOUR_IP_ADDRESS", True),
])
def test_unreadable_values_are_errors_and_stand_ins_for_the_analyses(words, code, col, unread, blanked):
    """The kernel refuses the line (an error; no rule in its ruleset), and the analyses keep the rule with
    the value it could not read as an unknown match; a blanked (anonymised) value is a warning naming it
    for them, a plainly wrong one stays an error."""
    b = load(f"iptables -A INPUT {words}\n")
    assert found(b) == [("error", code, 1, col)]
    assert "-A INPUT" not in render_save(b.rulesets[Family.IPV4])
    (rule,) = rules(b)
    assert unread in rule and rule.endswith("-j ACCEPT")
    (shown,) = [d for d in b.for_analysis() if d.severity != "note"]
    if blanked:
        assert (shown.severity, shown.code, shown.origin.col) == ("warning", "unread-value", col)
        assert f"stockade cannot read `{unread}`" in shown.message
    else:
        assert (shown.severity, shown.code) == ("error", code)


def test_unknown_chain_in_a_command():
    b = load("iptables -A FWALL -j DROP\n")
    assert found(b) == [("error", "unknown-chain", 1, 13)]


# -- lost line breaks ----------------------------------------------------------------------------------------

def test_restore_lines_joined_by_two_spaces_after_a_comment():
    b = load("*filter\n:FW - [0:0]\n#ssh  -A FW -p tcp -m tcp --dport 22 -j ACCEPT  --syn  #web  "
             "-A FW-p tcp --dport 80 -j ACCEPT\nCOMMIT\n")
    assert found(b) == [("warning", "lost-line-breaks", 3, 7), ("error", "glued-option", 3, 65)]
    assert rules(b, "FW") == ["-p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT"]
    assert "whole line is one `#` comment" in b.diagnostics[0].hint


def test_commands_glued_without_separator():
    b = load("#/bin/bashiptables -Fiptables -X\u00a0modprobe ip_tablesmodprobe nf_nat\u00a0"
             "iptables -P INPUT DROPiptables -A INPUT -i lo -j ACCEPT\n")
    assert found(b) == [("warning", "lost-line-breaks", 1, 11)]
    assert rules(b) == ["-i lo -j ACCEPT"] and b.rulesets[Family.IPV4].tables["filter"].chains["INPUT"].policy == "DROP"
    assert len([d for d in b.diagnostics if d.code == "skipped"]) == 2


def test_double_spaces_inside_one_command_are_not_line_breaks():
    b = load("iptables -t nat  -A POSTROUTING  -o eth0 -j MASQUERADE\n"
             "iptables -A INPUT -p icmp -m limit --limit  1/s -j ACCEPT\n"
             "iptables -A INPUT -j LOG --log-prefix \"A  iptables -F\"  # log it\n")
    assert clean(b)
    assert rules(b, "POSTROUTING", "nat") == ["-o eth0 -j MASQUERADE"]
    assert rules(b)[1] == '-j LOG --log-prefix "A  iptables -F"'


def test_prose_joined_to_a_command():
    b = load("Then block him.  iptables -A INPUT -s 192.0.2.9 -j DROP\n")
    assert found(b) == [("warning", "lost-line-breaks", 1, 18)] and rules(b) == ["-s 192.0.2.9/32 -j DROP"]


def test_read_guesses_script_format():
    b = read("Some text.\niptables -A INPUT -j DROP\n", "page.txt")
    assert rules(b) == ["-j DROP"]


# -- the seeds -------------------------------------------------------------------------------------------------

SEED_FILES = sorted(SEEDS.glob("*.txt"))


@pytest.mark.parametrize("seed", SEED_FILES, ids=[p.stem for p in SEED_FILES])
def test_seed_golden(seed: Path):
    """Errors and warnings for each seed page, exactly; the canonical ruleset is printed for review."""
    b = read_script(seed.read_text(), seed.name)
    for rs in b.rulesets.values():
        print(f"# {seed.name}: {rs.family.cmd}-save (canonical)\n{render_save(rs)}")
    got = "".join(f"{d}\n" for d in b.diagnostics if d.severity != "note")
    assert got == (GOLDEN / seed.name).read_text()


def test_only_commands_that_add_create_a_missing_table():
    # measured with iptables-nft 1.8.9: a bare -F/-X/-Z leaves an absent table absent, -F of a built-in
    # chain creates it with its built-in chains, -Z/-D of a chain in an absent table do not
    b = load("iptables -t mangle -F\niptables -X -t nat\niptables -t raw -Z\niptables -t security -F INPUT\n")
    assert clean(b)
    assert sorted(b.rulesets[Family.IPV4].tables) == ["security"]
    b = load("iptables -t nat -Z PREROUTING\niptables -t raw -D PREROUTING -j ACCEPT\n")
    assert not b.rulesets.get(Family.IPV4) or not b.rulesets[Family.IPV4].tables
    b = load("iptables -t mangle -F\niptables -t mangle -A PREROUTING -j ACCEPT\n")
    assert list(b.rulesets[Family.IPV4].tables) == ["mangle"]


def test_a_refused_command_creates_no_table():
    b = load("iptables -t nat -P PREROUTING DROPX\niptables -t raw -A PREROUTING -j NOSUCHCHAIN\n")
    assert [f[1] for f in found(b)] and not b.rulesets[Family.IPV4].tables


def test_a_scripts_ipset_commands_make_its_sets_as_ipset_save_prints_them():
    b = load("ipset create bl hash:net\nipset add bl 192.0.2.7/24\nipset -N old iphash --hashsize 100\n"
             "ipset -exist add old 198.51.100.1\nipset add old 198.51.100.1\n"
             "ipset restore <<END\ncreate r hash:ip,port\nadd r 203.0.113.1,80\nEND\nipset list\n"
             "iptables -I INPUT -m set --match-set bl src -j DROP\n")
    assert found(b) == [("error", "ipset", 5, 7)]  # ipset refuses the second add; nothing changes
    assert {n: (s.type, s.options, s.members) for n, s in b.sets.items()} == {
        "bl": ("hash:net", ("family", "inet", "hashsize", "1024", "maxelem", "65536", "bucketsize", "12"),
               ["192.0.2.0/24"]),
        "old": ("hash:ip", ("family", "inet", "hashsize", "128", "maxelem", "65536", "bucketsize", "12"),
                ["198.51.100.1"]),
        "r": ("hash:ip,port", ("family", "inet", "hashsize", "1024", "maxelem", "65536", "bucketsize", "12"),
              ["203.0.113.1,tcp:80"])}
    assert set(b.rulesets[Family.IPV4].sets) == {"bl", "old", "r"}  # what -m set looks up


def test_an_ipset_restore_from_a_missing_file_is_reported_not_guessed():
    b = load("ipset restore < /etc/ipset.conf\n")
    assert found(b) and found(b)[0][:2] == ("warning", "unresolved-file") and not b.sets
