"""Examples files: what `load_examples` refuses, and how `run_examples` compares."""

from __future__ import annotations

import json
from typing import Any

import pytest
from preservarium.contract.contact import Contact
from preservarium.contract.kinds import ErrorKind
from preservarium.errors import PreservariumError
from preservarium.examples import (
    CommandExample,
    ExamplesError,
    UplinkExample,
    command_input,
    load_examples,
    run_examples,
)
from preservarium.sandbox_answers import CommandAnswer, ParseAnswer, ScriptError, TrialAnswer
from preservarium.sandbox_client import UNSAVED, CommandInput

GOOD = """\
- description: two temperature samples
  input: {path: m, payload_hex: "0a 06", confirmable: false, method: put, query: {t: "1"}}
  output: {device_id: 282c02424eed, data: {day: 2024-01-02, n: [1, 2.5]}, reply_hex: "0A0B"}
- description: registered
  input: {device_id: dev-1, payload_b64: "AQI=", received_at: 1700000000}
  error: runtime_error
- description: set period
  command: {command: set_period, params: {seconds: 900}, device_id: dev-1}
  output_hex: "103C18"
"""


class TestLoad:
    def test_a_good_file(self) -> None:
        route, registered, command = load_examples(GOOD)
        assert isinstance(route, UplinkExample)
        sent = route.sent
        assert (sent.payload, sent.path, sent.method, sent.confirmable) == (
            b"\x0a\x06",
            "m",
            "PUT",
            False,
        )
        assert (sent.device_id, sent.query, route.error) == (None, {"t": "1"}, None)
        # Dates stay strings: the parser's output is JSON, which has no dates.
        assert route.output == {
            "device_id": "282c02424eed",
            "data": {"day": "2024-01-02", "n": [1, 2.5]},
            "reply_hex": "0a0b",
        }
        assert isinstance(registered, UplinkExample)
        assert (registered.sent.device_id, registered.sent.payload, registered.error) == (
            "dev-1",
            b"\x01\x02",
            "runtime_error",
        )
        assert registered.contact("efento").received_at_s == 1_700_000_000
        assert command == CommandExample(
            description="set period",
            command=CommandInput("test", "dev-1", "set_period", '{"seconds":900}'),
            output=bytes.fromhex("103c18"),
        )

    def test_an_empty_list_is_no_examples(self) -> None:
        assert load_examples("[]") == []

    @pytest.mark.parametrize(
        ("text", "fragments"),
        [
            ("", ["list"]),
            ("description: x\ninput: {}\n", ["list"]),
            ("- [1, 2", ["YAML", "line"]),
            ("- just text\n", ["example 1", "mapping"]),
            ("- input: {payload_hex: '00'}\n  output: {}\n", ["example 1", "description"]),
            (
                "- description: d\n  input: {payload_hex: '00'}\n  output: {}\n  extra: 1\n",
                ["example 1 ('d')", "unknown key 'extra'"],
            ),
            (
                "- description: d\n  input: {payload_hex: '00', payload_b64: AA==}\n  output: {}\n",
                ["'d'", "payload_hex and payload_b64"],
            ),
            (
                "- description: d\n  input: {path: m}\n  output: {}\n",
                ["payload_hex or payload_b64"],
            ),
            ("- description: d\n  input: {payload_hex: 0g}\n  output: {}\n", ["not hex"]),
            ("- description: d\n  input: {payload_hex: 1234}\n  output: {}\n", ["quoted"]),
            ("- description: d\n  input: {payload_b64: '!!'}\n  output: {}\n", ["base64"]),
            ("- description: d\n  input: {payload_hex: ''}\n", ["output or error"]),
            (
                "- description: d\n  input: {payload_hex: ''}\n  output: {}\n  error: timeout\n",
                ["both output and error"],
            ),
            ("- description: d\n  input: {payload_hex: ''}\n  error: oops\n", ["error must be"]),
            ("- description: d\n  output: {}\n", ["input", "command"]),
            (
                "- description: d\n  input: {payload_hex: ''}\n  command: {command: x}\n"
                "  output: {}\n",
                ["both input and command"],
            ),
            (
                "- description: d\n  input: {payload_hex: '', device_id: 'a/b'}\n  output: {}\n",
                ["input.device_id"],
            ),
            (
                "- description: d\n  input: {payload_hex: '', method: FETCH}\n  output: {}\n",
                ["GET"],
            ),
            (
                "- description: d\n  input: {payload_hex: '', query: {t: 1}}\n  output: {}\n",
                ["query"],
            ),
            (
                "- description: d\n  input: {payload_hex: ''}\n  output: {data: [1]}\n",
                ["output.data"],
            ),
            (
                "- description: d\n  input: {payload_hex: ''}\n  output: {data: {1: a}}\n",
                ["non-string key"],
            ),
            ("- description: d\n  input: {payload_hex: ''}\n  output: {blob: 1}\n", ["'blob'"]),
            ("- description: d\n  command: {command: x}\n", ["output_hex or error"]),
            ("- description: d\n  command: {params: {}}\n  output_hex: ''\n", ["command name"]),
            (
                "- description: d\n  command: {command: x, params: 5}\n  output_hex: ''\n",
                ["params"],
            ),
            (
                "- description: d\n  input: {payload_hex: '', attributes: {a: 1}}\n  output: {}\n",
                ["input.attributes needs input.device_id"],
            ),
            (
                "- description: d\n  input: {payload_hex: '', device_id: d, attributes: [1]}\n"
                "  output: {}\n",
                ["input.attributes", "JSON object"],
            ),
            (
                "- description: d\n  command: {command: x, attributes: {a: {b: {c: {d: {e: {f: "
                "{g: {h: {}}}}}}}}}}\n  output_hex: ''\n",
                ["command.attributes", "deeper than 8"],
            ),
        ],
    )
    def test_refused_with_a_reason(self, text: str, fragments: list[str]) -> None:
        with pytest.raises(ExamplesError) as caught:
            load_examples(text)
        assert isinstance(caught.value, PreservariumError)
        for fragment in fragments:
            assert fragment in str(caught.value)

    def test_the_second_example_is_named(self) -> None:
        text = GOOD + "- description: late\n  command: {command: x}\n  output_hex: zz\n"
        with pytest.raises(ExamplesError, match=r"example 4 \('late'\): output_hex is not hex"):
            load_examples(text)

    def test_command_input_defaults(self) -> None:
        assert command_input({"command": "x"}, device_id="dev-9") == CommandInput(
            "test", "dev-9", "x", "{}"
        )


class FakeSandbox:
    """Answers TestParser with canned responses, recording what it was asked."""

    def __init__(self, *responses: TrialAnswer) -> None:
        self.responses = list(responses)
        self.calls: list[tuple[Contact | None, bool, CommandInput | None]] = []

    async def test_parser(
        self,
        source: str,
        *,
        contact: Contact | None = None,
        identify: bool = False,
        command: CommandInput | None = None,
    ) -> TrialAnswer:
        self.calls.append((contact, identify, command))
        return self.responses.pop(0)


def parsed(data: dict[str, Any], **fields: Any) -> TrialAnswer:
    return TrialAnswer(ParseAnswer(UNSAVED, data_json=json.dumps(data).encode(), **fields))


def failed(kind: str, line: int | None = None, message: str = "boom") -> TrialAnswer:
    return TrialAnswer(ParseAnswer(UNSAVED, ScriptError(ErrorKind(kind), message, line)))


def formatted(command: CommandAnswer) -> TrialAnswer:
    return TrialAnswer(ParseAnswer(UNSAVED, command=command))


UPLINK = "- description: u\n  input: {payload_hex: '01'%s}\n"


async def mismatches(examples: str, *responses: TrialAnswer) -> list[tuple[str, ...]]:
    sandbox = FakeSandbox(*responses)
    results = await run_examples(sandbox, "source", load_examples(examples), "efento")  # type: ignore[arg-type]
    return [result.mismatches for result in results]


class TestCompare:
    async def test_route_and_registered_contacts(self) -> None:
        sandbox = FakeSandbox(parsed({}), parsed({}))
        text = (UPLINK % "") + "  output: {}\n" + (UPLINK % ", device_id: d1") + "  output: {}\n"
        await run_examples(sandbox, "s", load_examples(text), "efento")  # type: ignore[arg-type]
        (route, route_identify, _), (registered, registered_identify, _) = sandbox.calls
        assert route is not None and registered is not None
        assert (route.device_id, route_identify) == (None, True)
        assert (registered.device_id, registered_identify) == ("d1", False)
        assert route.device_type == "efento"

    async def test_attributes_reach_the_contact_and_the_command(self) -> None:
        sandbox = FakeSandbox(parsed({}), formatted(CommandAnswer(payload=b"")))
        text = (
            (UPLINK % ", device_id: d1, attributes: {site: north, n: [1]}") + "  output: {}\n"
            "- description: c\n  command: {command: x, attributes: {site: south}}\n"
            "  output_hex: ''\n"
        )
        await run_examples(sandbox, "s", load_examples(text), "efento")  # type: ignore[arg-type]
        (contact, _, _), (_, _, command) = sandbox.calls
        assert contact is not None and command is not None
        assert json.loads(contact.attributes_json) == {"site": "north", "n": [1]}
        assert json.loads(command.attributes_json) == {"site": "south"}
        assert contact.id is None  # no uplink record behind an example

    async def test_numbers_compare_by_value(self) -> None:
        text = (UPLINK % "") + "  output: {data: {a: 1, b: [2.0, {c: 3}]}}\n"
        assert await mismatches(text, parsed({"a": 1.0, "b": [2, {"c": 3.0}]})) == [()]

    async def test_data_is_compared_entirely(self) -> None:
        text = (UPLINK % "") + "  output: {data: {a: 1, b: true, m: [1, 2]}}\n"
        got = parsed({"a": 2, "b": 1, "m": [1], "x": "extra"})
        assert await mismatches(text, got) == [
            (
                "data.a: expected 1, got 2",
                "data.b: expected true, got 1",
                "data.m: expected 2 items, got 1",
                'data.x: not expected, got "extra"',
            )
        ]

    async def test_only_the_given_output_keys_are_compared(self) -> None:
        text = (UPLINK % "") + "  output: {device_id: abc, reply_hex: '0A'}\n"
        got = parsed({"ignored": True}, device_id="abd", reply=b"\x0a", warnings=("w",))
        assert await mismatches(text, got) == [('device_id: expected "abc", got "abd"',)]

    async def test_error_kinds(self) -> None:
        expect_error = (UPLINK % "") + "  error: timeout\n"
        expect_result = (UPLINK % "") + "  output: {}\n"
        assert await mismatches(expect_error, failed("timeout")) == [()]
        assert await mismatches(expect_error, parsed({})) == [
            ("expected error timeout, got a result",)
        ]
        assert await mismatches(expect_error, failed("runtime_error", line=4)) == [
            ("expected error timeout, got error runtime_error at line 4: boom",)
        ]
        assert await mismatches(expect_result, failed("compile_error")) == [
            ("expected a result, got error compile_error: boom",)
        ]

    async def test_an_error_names_its_line_once(self) -> None:
        # The sandbox's runtime messages start with their line already.
        expect_result = (UPLINK % "") + "  output: {}\n"
        answer = failed("runtime_error", line=3, message="line 3: ZeroDivisionError: x")
        assert await mismatches(expect_result, answer) == [
            ("expected a result, got error runtime_error at line 3: ZeroDivisionError: x",)
        ]

    async def test_commands(self) -> None:
        text = "- description: c\n  command: {command: x}\n  output_hex: '0f'\n"
        ok = formatted(CommandAnswer(payload=b"\x0f"))
        wrong = formatted(CommandAnswer(payload=b"\x10"))
        refused = formatted(CommandAnswer(error=ScriptError(ErrorKind.RUNTIME_ERROR, "boom")))
        assert await mismatches(text, ok) == [()]
        assert await mismatches(text, wrong) == [("output_hex: expected 0f, got 10",)]
        assert await mismatches(text, refused) == [
            ("expected a result, got error runtime_error: boom",)
        ]
        expect_error = "- description: c\n  command: {command: x}\n  error: runtime_error\n"
        assert await mismatches(expect_error, refused) == [()]


def test_examples_refuse_yaml_aliases() -> None:
    # An alias would let a short examples file expand to a huge request to the sandbox.
    plain = "- description: a\n  input: {payload_hex: '00'}\n  output: {data: {n: [1, 2, 3]}}\n"
    assert len(load_examples(plain)) == 1
    aliased = (
        "- description: a\n  input: {payload_hex: '00'}\n  output: {data: &d {n: [1, 2, 3]}}\n"
        "- description: b\n  input: {payload_hex: '01'}\n  output: {data: *d}\n"
    )
    with pytest.raises(ExamplesError, match="alias"):
        load_examples(aliased)
