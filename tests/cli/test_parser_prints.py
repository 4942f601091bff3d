"""What a parser print()ed, as `parser test` and `tail` show it: marked as the parser's
output, with no character that could steer the terminal."""

from __future__ import annotations

import io

from preservarium.contract.kinds import ErrorKind
from preservarium.sandbox_answers import ParseAnswer, ScriptError, TrialAnswer
from preservarium.sandbox_client import UNSAVED
from preservarium_tools.cli import parser_test_cmd
from preservarium_tools.cli.tail_cmd import Stream, TailOptions, render
from rich.console import Console


def test_the_json_report_has_what_was_printed_whether_it_failed_or_not() -> None:
    ok = TrialAnswer(ParseAnswer(UNSAVED, data_json=b"{}", printed="a\n"))
    boom = ScriptError(ErrorKind.RUNTIME_ERROR, "boom")
    failed = TrialAnswer(ParseAnswer(UNSAVED, error=boom, printed="b\n"))
    assert parser_test_cmd.trial_report(ok)["printed"] == "a\n"
    report = parser_test_cmd.trial_report(failed)
    assert report["printed"] == "b\n" and report["ok"] is False


def test_the_human_report_shows_each_printed_line_escaped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    monkeypatch.setattr(parser_test_cmd, "console", Console(file=out, width=200))
    response = TrialAnswer(ParseAnswer(UNSAVED, data_json=b"{}", printed="one\n\x1b[2Jtwo\u202e\n"))
    parser_test_cmd._print_report(parser_test_cmd.trial_report(response))
    text = out.getvalue()
    assert "  | one\n" in text and "  | \\x1b[2Jtwo\\u202e\n" in text
    assert "\x1b" not in text and "\u202e" not in text


def test_tail_shows_printed_text_on_the_records_line() -> None:
    record = {
        "received_at": "2026-11-30T12:00:00Z", "device_id": "d", "parser": {"name": "t",
        "version": 1}, "data": {}, "warnings": [], "printed": "x\n\x1by\n" + "z" * 300,
    }  # fmt: skip
    line = render(record, TailOptions(stream=Stream.parsed))
    assert "printed: x | \\x1by | zzz" in line and line.endswith("...")
    assert "\x1b" not in line and "\n" not in line
    failed = {"received_at": "t", "device_id": "d", "error": {"kind": "k", "message": "m",
              "line": None}, "printed": "p\n"}  # fmt: skip
    assert render(failed, TailOptions(stream=Stream.failed)).endswith("k: m  printed: p")


def test_a_parser_that_prints_nothing_keeps_the_documented_keys() -> None:
    report = parser_test_cmd.trial_report(TrialAnswer(ParseAnswer(UNSAVED)))
    assert "printed" not in report
