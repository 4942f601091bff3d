"""/api/v1/parsers against a real sandbox: upload with the checks of `parser upload`,
show, diff, activate (roll back), and test unsaved source."""

from __future__ import annotations

import httpx

from tests.api.conftest import Api
from tests.support.waiting import LoopStalls

V1 = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"
V2 = "def parse(payload, metadata):\n    return {'n': len(payload), 'first': payload[0]}\n"
EXAMPLES = """
- description: two bytes
  input: {payload_hex: "0102", device_id: d1}
  output: {data: {n: 2}}
"""
WRONG = EXAMPLES.replace("n: 2", "n: 3")


async def test_upload_show_diff_activate(api: Api, client: httpx.AsyncClient) -> None:
    write, read = api.auth("write"), api.auth("read")
    first = await client.post("/api/v1/parsers/thermo/versions",
                              json={"source": V1, "examples": EXAMPLES}, headers=write)  # fmt: skip
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["active"] and first.json()["created"]
    same = await client.post("/api/v1/parsers/thermo/versions",
                             json={"source": V1, "examples": EXAMPLES}, headers=write)  # fmt: skip
    assert same.status_code == 200 and same.json()["created"] is False
    second = await client.post("/api/v1/parsers/thermo/versions", json={"source": V2},
                               headers=write)  # fmt: skip
    assert second.status_code == 201 and second.json()["version"] == 2
    listed = (await client.get("/api/v1/parsers", headers=read)).json()
    assert listed[0]["device_type"] == "thermo" and listed[0]["active_version"] == 2
    versions = (await client.get("/api/v1/parsers/thermo/versions", headers=read)).json()
    assert [v["version"] for v in versions] == [1, 2] and "source" not in versions[0]
    shown = (await client.get("/api/v1/parsers/thermo/versions/1", headers=read)).json()
    assert shown["source"] == V1 and shown["examples"] == EXAMPLES
    diff = (await client.get("/api/v1/parsers/thermo/versions/2", params={"against": 1},
                             headers=read)).json()["diff"]  # fmt: skip
    assert diff.startswith("--- thermo v1\n+++ thermo v2\n") and "+    return {'n'" in diff
    back = await client.post("/api/v1/parsers/thermo/versions/1/activate", headers=write)
    assert back.status_code == 200 and back.json()["active"]
    listed = (await client.get("/api/v1/parsers", headers=read)).json()
    assert listed[0]["active_version"] == 1
    assert (await client.get("/api/v1/parsers/thermo/versions/9", headers=read)).status_code == 404


async def test_upload_refuses_what_parser_upload_refuses(
    api: Api, client: httpx.AsyncClient
) -> None:
    write = api.auth("write")
    cases = {
        "examples-failed": {"source": V1, "examples": WRONG},
        "invalid-parser": {"source": "def parse(payload, metadata):\n    return (\n"},
        "invalid-examples": {"source": V1, "examples": "- nope"},
    }
    for kind, body in cases.items():
        response = await client.post("/api/v1/parsers/thermo/versions", json=body, headers=write)
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith(kind), response.text
    failed = await client.post("/api/v1/parsers/thermo/versions",
                               json=cases["examples-failed"], headers=write)  # fmt: skip
    assert failed.json()["examples"][0]["ok"] is False
    no_parse = await client.post("/api/v1/parsers/thermo/versions",
                                 json={"source": "x = 1\n"}, headers=write)  # fmt: skip
    assert no_parse.status_code == 422 and "missing_function" in no_parse.json()["detail"]
    imports = await client.post("/api/v1/parsers/thermo/versions",
                                json={"source": "import os\n" + V1}, headers=write)  # fmt: skip
    assert imports.status_code == 422 and imports.json()["line"] == 1
    sandboxed = await client.post("/api/v1/parsers/thermo/versions",
                                  json={"source": V1.replace("len(payload)", "payload.__class__")},
                                  headers=write)  # fmt: skip
    assert sandboxed.status_code == 422, sandboxed.text
    bad_type = await client.post("/api/v1/parsers/bad type/versions", json={"source": V1},
                                 headers=write)  # fmt: skip
    assert bad_type.status_code == 422
    versions = await client.get("/api/v1/parsers/thermo/versions", headers=api.auth("read"))
    assert versions.status_code == 404


async def test_unsaved_source_on_a_payload_a_command_and_examples(
    api: Api, client: httpx.AsyncClient
) -> None:
    write = api.auth("write")
    ran = (await client.post("/api/v1/parsers/test", json={"source": V2, "payload_hex": "0a0b",
                             "device_id": "d1"}, headers=write)).json()  # fmt: skip
    assert ran["ok"] and ran["data"] == {"n": 2, "first": 10}
    with_command = V1 + "\ndef format_command(command):\n    return b'\\x01'\n"
    formatted = (await client.post("/api/v1/parsers/test", json={"source": with_command,
                 "command": {"command": "reboot"}}, headers=write)).json()  # fmt: skip
    assert formatted["ok"] and formatted["command_hex"] == "01"
    failing = (await client.post("/api/v1/parsers/test", json={"source": V2, "payload_hex": "",
               "device_id": "d1"}, headers=write)).json()  # fmt: skip
    assert failing["ok"] is False and failing["error"]["kind"]
    examples = (await client.post("/api/v1/parsers/test", json={"source": V1,
                "examples": WRONG}, headers=write)).json()  # fmt: skip
    assert examples["ok"] is False and examples["examples"][0]["mismatch"]
    bad_hex = await client.post("/api/v1/parsers/test", json={"source": V1, "payload_hex": "zz"},
                                headers=write)  # fmt: skip
    assert bad_hex.status_code == 422


async def test_version_numbers_out_of_range_are_422_not_a_database_overflow(
    api: Api, client: httpx.AsyncClient
) -> None:
    # 2**64 overflowed the database's integer (a 500 on SQLite and PostgreSQL alike).
    write = api.auth("write")
    assert (await client.post("/api/v1/parsers/thermo/versions", json={"source": V1},
                              headers=write)).status_code == 201  # fmt: skip
    huge = str(2**64)
    for method, path in (
        ("GET", f"/api/v1/parsers/thermo/versions/{huge}"),
        ("GET", f"/api/v1/parsers/thermo/versions/1?against={huge}"),
        ("POST", f"/api/v1/parsers/thermo/versions/{huge}/activate"),
        ("GET", "/api/v1/parsers/thermo/versions/0"),
    ):
        response = await client.request(method, path, headers=write)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["type"].endswith("/invalid-input")


async def test_examples_are_read_off_the_event_loop(api: Api, client: httpx.AsyncClient) -> None:
    # Examples are YAML, read in pure Python: 1.4 MB (under the body bound) held the
    # gateway's event loop, which serves the CoAP contacts too, for over 20 seconds.
    one = "- description: e{}\n  input: {{payload_hex: '0102'}}\n  output: {{data: {{n: 2}}}}\n"
    # The last example is wrong, so that the answer comes once the file is read (a 422).
    text = "".join(one.format(i) for i in range(3000)) + "- input: {payload_hex: '01'}\n"
    for path, body in (
        ("/api/v1/parsers/test", {"source": V1, "device_type": "thermo", "examples": text}),
        ("/api/v1/parsers/thermo/versions", {"source": V1, "examples": text}),
    ):
        async with LoopStalls() as stalls:
            response = await client.post(path, json=body, headers=api.auth("write"), timeout=120)
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith("/invalid-examples")
        assert stalls.longest < stalls.took / 3, (path, stalls.longest, stalls.took)
