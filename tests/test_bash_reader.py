"""The bash reader never guesses: what it cannot know is a positioned diagnostic, and limits hold.

What each construct does is measured against real bash in tests/kernel/test_bash_constructs.py;
these tests cover what bash cannot show: the diagnostics for values stockade cannot know
(output of programs, files that are not there, unknown programs), the choice taken for a
condition it cannot decide and the lines the rules under it depend on, `source` with
--include-path, the CLI options, and the limits on size, nesting and recursion.
"""
from __future__ import annotations

import subprocess
import sys

from stockade.model import Family
from stockade.parse.bash import run
from stockade.parse.script import Invocation, read_script
from stockade.render.save import rule_words


def load(text: str, path: str = "t.sh", **how) -> object:
    return read_script("#!/bin/bash\n" + text, path, how=Invocation(**how))


def rules(b, chain: str = "INPUT", table: str = "filter") -> list[str]:
    rs = b.rulesets.get(Family.IPV4)
    if rs is None or table not in rs.tables:
        return []
    return [" ".join(rule_words(r, Family.IPV4)) for r in rs.tables[table].chains[chain].rules]


def found(b) -> list[tuple[str, str, int, int]]:
    return [(d.severity, d.code, d.origin.line, d.origin.col) for d in b.diagnostics if d.severity != "note"]


def test_output_of_a_program_is_unknown_and_says_where():
    b = load('ADMIN=$(curl -s https://example.org/ip)\niptables -A INPUT -s $ADMIN -j ACCEPT\n'
             "iptables -A INPUT -j DROP\n")
    (d,) = [d for d in b.diagnostics if d.code == "cannot-expand"]
    assert (d.origin.line, d.origin.col) == (3, 22) and "curl" in d.message and "(line 2)" in d.message
    assert rules(b) == ["-s $ADMIN -j ACCEPT", "-j DROP"]  # the first with its address unknown
    assert "depends on script line 2 (`$ADMIN` holds `$(curl -s https://example.org/ip)`" in d.message


def test_a_program_stockade_cannot_look_into_is_a_warning_at_its_line():
    b = load("/usr/local/bin/firewall-extra --open 22\niptables -A INPUT -j DROP\n")
    assert found(b) == [("warning", "unknown-command", 2, 1)]


def test_eval_of_an_unknown_string_is_reported():
    b = load('CMD=$(cat /etc/fw.cmd)\neval "$CMD"\n')
    assert ("warning", "cannot-expand", 3, 7) in found(b)


def test_an_undecidable_condition_is_read_as_true_and_its_rules_depend_on_the_line():
    b = load('if [ -f /etc/firewall/enabled ]; then\n  iptables -A INPUT -j DROP\nfi\niptables -A INPUT -j ACCEPT\n')
    assert found(b) == [("warning", "unresolved-condition", 2, 4)]
    assert rules(b) == ["-j DROP", "-j ACCEPT"]
    assert sorted(o.line for o in b.depends) == [3] and list(b.depends.values()) == [(2,)]


def test_a_condition_on_a_file_beside_the_script_is_decided(tmp_path):
    (tmp_path / "blocked.txt").write_text("192.0.2.1\n192.0.2.2\n")
    path = tmp_path / "fw.sh"
    path.write_text("#!/bin/bash\nif [ -f blocked.txt ]; then\n  while read ip; do iptables -A INPUT -s $ip -j DROP; "
                    "done < blocked.txt\nfi\n[ -f missing.txt ] && iptables -A INPUT -j REJECT\n")
    b = read_script(path.read_text(), str(path))
    assert rules(b) == ["-s 192.0.2.1/32 -j DROP", "-s 192.0.2.2/32 -j DROP"] and found(b) == []


def test_a_file_that_is_not_there_makes_the_loop_over_it_unknown(tmp_path):
    path = tmp_path / "fw.sh"
    path.write_text("#!/bin/bash\nwhile read ip; do iptables -A INPUT -s $ip -j DROP; done < list.txt\n")
    b = read_script(path.read_text(), str(path))
    assert ("warning", "unresolved-file", 2, 60) in found(b)
    assert ("warning", "unresolved-condition", 2, 7) in found(b)


def test_source_and_include_path(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "fw.conf").write_text("SSH_FROM=192.0.2.7\nopen() { iptables -A INPUT -p tcp --dport $1 -j ACCEPT; }\n")
    path = tmp_path / "fw.sh"
    path.write_text("#!/bin/bash\n. /etc/fw.conf\nopen 22\niptables -A INPUT -s $SSH_FROM -j ACCEPT\n")
    b = read_script(path.read_text(), str(path))
    assert ("warning", "unresolved-source", 2, 3) in found(b)
    b = read_script(path.read_text(), str(path), how=Invocation(include_paths=[str(tmp_path / "conf")]))
    assert rules(b) == ["-p tcp -m tcp --dport 22 -j ACCEPT", "-s 192.0.2.7/32 -j ACCEPT"] and found(b) == []


def test_a_defect_in_a_sourced_file_points_into_that_file(tmp_path):
    (tmp_path / "rules.sh").write_text("iptables -A INPUT -p tcp --dport 70000 -j ACCEPT\n")
    path = tmp_path / "fw.sh"
    path.write_text("#!/bin/bash\nsource ./rules.sh\n")
    (d,) = read_script(path.read_text(), str(path)).diagnostics
    assert (d.origin.file, d.origin.line, d.origin.col, d.code) == (str(tmp_path / "rules.sh"), 1, 34, "bad-number")


def test_arguments_and_environment():
    text = 'case "$1" in start) iptables -A INPUT -i "${WAN:-eth0}" -j ACCEPT ;; *) exit 1 ;; esac\n'
    assert rules(load(text)) == []
    assert rules(load(text, args=["start"])) == ["-i eth0 -j ACCEPT"]
    assert rules(load(text, args=["start"], env={"WAN": "ppp0"})) == ["-i ppp0 -j ACCEPT"]


def test_exit_and_set_e_are_obeyed_in_a_script_not_on_a_page():
    assert rules(load("iptables -A INPUT -j ACCEPT\nexit 0\niptables -A INPUT -j DROP\n")) == ["-j ACCEPT"]
    page = read_script("Run these:\niptables -A INPUT -j ACCEPT\nexit 0\niptables -A INPUT -j DROP\n", "page.txt")
    assert rules(page) == ["-j ACCEPT", "-j DROP"]


def test_windows_line_ends_are_kept_in_the_word_as_bash_does():
    b = read_script("#!/bin/bash\r\niptables -A INPUT -j ACCEPT\r\n", "t.sh")
    assert [d.code for d in b.diagnostics if d.severity != "note"] == ["carriage-return", "unknown-chain"]
    assert rules(b) == []


def test_a_value_doubled_28_times_is_a_positioned_error():
    b = load("x=a\nfor i in $(seq 1 28); do x=$x$x; done\niptables -A INPUT -j DROP\n")
    (d,) = [d for d in b.diagnostics if d.severity == "error"]
    assert (d.code, d.origin.line) == ("shell-limit", 3) and "1000000 characters" in d.message
    assert rules(b) == ["-j DROP"]


def test_a_huge_array_index_is_a_positioned_error_not_a_memory_blowup():
    """Found by the 10,000-case fuzz: `([10**30]=x)` filled the gap below it and took 17 GB."""
    for line in ("a=([999999999999999999999999999999]=x)", "declare -A m=([99999999999]=y)"):
        b = load(f"{line}\niptables -A INPUT -j DROP\n")
        (d,) = [d for d in b.diagnostics if d.severity == "error"]
        assert (d.code, d.origin.line) == ("shell-limit", 2) and "larger than stockade follows" in d.message  # after load's #! line
        assert rules(b) == ["-j DROP"]


def test_2000_nested_ifs_are_a_positioned_error_not_a_crash():
    b = load("if true; then " * 2000 + "iptables -A INPUT -j DROP" + "; fi" * 2000 + "\niptables -A INPUT -j ACCEPT\n")
    (d,) = [d for d in b.diagnostics if d.severity == "error"]
    assert (d.code, d.origin.line) == ("shell-nesting", 2)
    assert rules(b) == ["-j ACCEPT"]


def test_recursive_functions_are_a_positioned_error():
    b = load("f() { iptables -A INPUT -j DROP; f; }\nf\niptables -A INPUT -j ACCEPT\n")
    errors = [d for d in b.diagnostics if d.severity == "error"]
    assert [d.code for d in errors] == ["shell-nesting"] and errors[0].origin.line == 2
    assert rules(b)[-1] == "-j ACCEPT"


def test_a_for_loop_over_a_long_list_runs_to_its_end(tmp_path):
    """`for ip in $(cat blocked.txt)`, as seed 000 reads its blocklist: a list is finite, so a `for` over
    more than MAX_LOOP words runs every one (MAX_LOOP stops loops with a condition, which may never end)."""
    entries = [f"198.51.{k // 250}.{k % 250 + 1}" for k in range(12_000)]
    (tmp_path / "blocked.txt").write_text("\n".join(entries) + "\n")
    b = load("for ip in $(cat blocked.txt); do\n  iptables -A INPUT -s $ip -j DROP\ndone\n"
             "iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n", include_paths=[str(tmp_path)])
    assert not [d for d in b.diagnostics if d.severity == "error"]
    assert rules(b) == [f"-s {e}/32 -j DROP" for e in entries] + ["-p tcp -m tcp --dport 22 -j ACCEPT"]


def test_a_for_loop_counts_its_commands_toward_the_limit(monkeypatch):
    """The commands a `for` runs count toward MAX_STEPS, so a long list with a long body still stops."""
    monkeypatch.setattr(run, "MAX_STEPS", 100)
    b = load("for p in $(seq 1 200); do iptables -A INPUT -p tcp --dport $p -j ACCEPT; done\n")
    (error,) = [d for d in b.diagnostics if d.severity == "error"]
    assert "more than 100 commands run" in error.message


def test_a_long_brace_range_expands_whole_and_a_huge_one_stops_at_once():
    """`{1024..65535}` is every port, not the first 10,000 of them; `{1..100000000000}` is an error before
    any word is made (it would take the memory of the machine)."""
    b = load("for p in {1024..65535}; do last=$p; done\niptables -A INPUT -p tcp --dport $last -j ACCEPT\n")
    assert not [d for d in b.diagnostics if d.severity == "error"] and rules(b) == ["-p tcp -m tcp --dport 65535 -j ACCEPT"]
    b = load("for p in {1..100000000000}; do :; done\niptables -A INPUT -j DROP\n")
    (error,) = [d for d in b.diagnostics if d.severity == "error"]
    assert "would expand to more than 200000 words" in error.message and (error.origin.line, error.origin.col) == (2, 10)


def test_printf_uses_its_format_for_every_argument_and_bounds_what_it_prints():
    """`printf '%s\\n' $LIST` prints every entry (it stopped at 10,000, silently); a width or a list that
    would print more than MAX_VALUE characters is an error, not the machine's memory."""
    entries = [f"198.51.{k // 250}.{k % 250 + 1}" for k in range(12_000)]
    b = load(f"LIST=\"{' '.join(entries)}\"\nfor ip in $(printf '%s\\n' $LIST); do last=$ip; done\n"
             "iptables -A INPUT -s $last -j DROP\n")
    assert not [d for d in b.diagnostics if d.severity == "error"] and rules(b) == [f"-s {entries[-1]}/32 -j DROP"]
    for script in ("x=$(printf '%999999999s' a)\n", "x=$(printf '%0100d\\n' $(seq 1 20000))\n"):
        (error,) = [d for d in load(script).diagnostics if d.severity == "error"]
        assert "would print more than 1000000 characters" in error.message, error.message


def test_a_file_over_a_megabyte_is_read_whole_and_one_too_large_is_unknown(tmp_path):
    """A list the script reads is read to its end (it was cut at 1,000,000 bytes, mid-address, silently);
    past MAX_FILE it is not read at all, and what depends on it is unknown."""
    entries = [f"198.51.{k // 250}.{k % 250 + 1}" for k in range(6_000)]
    (tmp_path / "big.txt").write_text("".join(f"{e} # {'x' * 200}\n" for e in entries))
    script = "while read ip rest; do last=$ip; done < big.txt\niptables -A INPUT -s $last -j DROP\n"
    b = load(script, include_paths=[str(tmp_path)])
    assert (tmp_path / "big.txt").stat().st_size > 1_000_000
    assert not [d for d in b.diagnostics if d.severity == "error"] and rules(b) == [f"-s {entries[-1]}/32 -j DROP"]
    with (tmp_path / "big.txt").open("a") as f:
        f.truncate(run.MAX_FILE + 1)
    b = load(script, include_paths=[str(tmp_path)])
    assert any("cannot read `big.txt`: larger than 16 MiB" in d.message for d in b.diagnostics)
    assert rules(b) == ["-s $last -j DROP"]  # its address unknown, not the list's last line before a cut


def test_an_endless_loop_is_stopped_with_an_error():
    b = load("while true; do :; done\niptables -A INPUT -j ACCEPT\n")
    assert [(d.code, d.origin.line) for d in b.diagnostics if d.severity == "error"] == [("shell-loop", 2)]
    assert rules(b) == ["-j ACCEPT"]


def test_a_syntax_error_is_positioned_and_the_rest_is_read():
    b = load("iptables -A INPUT -j ACCEPT\nif then fi fi\niptables -A INPUT -j DROP\n")
    assert [d.code for d in b.diagnostics if d.severity == "error"][:1] == ["shell-syntax"]
    assert rules(b) == ["-j ACCEPT"]  # bash runs the commands before the error, then stops the script


def test_cli_takes_arg_env_and_include_path(tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "vars.sh").write_text("PORT=2222\n")
    script = tmp_path / "fw.sh"
    script.write_text('#!/bin/bash\n. vars.sh\n[ "$1" = start ] && iptables -A INPUT -p tcp --dport $PORT -i $IF '
                      '-j ACCEPT\n')
    argv = [sys.executable, "-m", "stockade.cli", "parse", str(script), "--arg", "start", "--env", "IF=eth9",
            "--include-path", str(tmp_path / "inc")]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "-A INPUT -i eth9 -p tcp -m tcp --dport 2222 -j ACCEPT" in out.stdout
    bad = subprocess.run([*argv[:5], "--env", "NOEQUALS"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
