"""Device import, by the API and the CLI (the same code): CSV, JSON and YAML; the whole
file checked first and nothing written when a row is wrong; importing again changes
nothing."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path

import httpx
from preservarium.repositories import SQLDeviceRepository, SQLParserRepository

from tests.api.conftest import SECRET_KEY, Api
from tests.support.cli import run_cli
from tests.support.waiting import LoopStalls

SOURCE = "def parse(payload, metadata):\n    return {}\n"
CSV = (
    "id,type,auth,attributes\n"
    'imp-1,thermo,token,"{""site"": ""north""}"\n'
    "imp-2,thermo,,\n"
    "imp-3,thermo,psk,{}\n"
)
BAD_CSV = CSV + "bad id,thermo,,\nimp-5,nosuchtype,,\nimp-6,thermo,password,\nimp-1,thermo,,\n"


async def _ids(api: Api) -> list[str]:
    return [record.id for record in await SQLDeviceRepository(api.context.engine).list()]


async def _parser(api: Api) -> None:
    await SQLParserRepository(api.context.engine).upload("thermo", SOURCE)


def _csv(
    client: httpx.AsyncClient, api: Api, text: str, **params: str
) -> Awaitable[httpx.Response]:
    return client.post("/api/v1/devices/import", content=text.encode(), params=params,
                       headers={**api.auth("write"), "content-type": "text/csv"})  # fmt: skip


async def test_a_bad_row_writes_nothing_and_every_bad_row_is_listed(
    api: Api, client: httpx.AsyncClient
) -> None:
    await _parser(api)
    response = await _csv(client, api, BAD_CSV)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [error["field"] for error in problem["errors"]] == [
        "row 4 (line 5)", "row 5 (line 6)", "row 6 (line 7)", "row 7 (line 8)",
    ]  # fmt: skip
    assert await _ids(api) == []


async def test_import_is_idempotent_and_reports_counts(api: Api, client: httpx.AsyncClient) -> None:
    await _parser(api)
    first = (await _csv(client, api, CSV)).json()
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0)
    issued = {document["device_id"]: document for document in first["credentials"]}
    assert issued.keys() == {"imp-1", "imp-3"} and issued["imp-3"]["psk"]
    again = (await _csv(client, api, CSV)).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert again["credentials"] == []
    changed = (await _csv(client, api, CSV.replace("north", "south"))).json()
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 2)
    device = await SQLDeviceRepository(api.context.engine).get("imp-1")
    assert device.attributes == {"site": "south"}


async def test_dry_run_writes_nothing(api: Api, client: httpx.AsyncClient) -> None:
    await _parser(api)
    report = (await _csv(client, api, CSV, dry_run="true")).json()
    assert report["dry_run"] is True and report["created"] == 3 and report["credentials"] == []
    assert await _ids(api) == []


async def test_json_and_yaml_bodies(api: Api, client: httpx.AsyncClient) -> None:
    await _parser(api)
    write = api.auth("write")
    rows = [{"id": "j-1", "type": "thermo", "attributes": {"k": 1}}]
    as_json = await client.post("/api/v1/devices/import", json=rows, headers=write)
    assert as_json.status_code == 200 and as_json.json()["created"] == 1
    yaml_text = "- id: y-1\n  type: thermo\n- id: y-2\n  type: thermo\n  auth: token\n"
    as_yaml = await client.post("/api/v1/devices/import", content=yaml_text.encode(),
                                params={"format": "yaml"}, headers=write)  # fmt: skip
    assert as_yaml.status_code == 200 and as_yaml.json()["created"] == 2
    bad_yaml = "- id: ok-1\n  type: thermo\n- id: bad id\n  type: thermo\n"
    refused = await client.post("/api/v1/devices/import", content=bad_yaml.encode(),
                                headers={**write, "content-type": "application/yaml"})  # fmt: skip
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["row 2 (line 3)"]
    unknown = await client.post("/api/v1/devices/import", content=b"x",
                                headers={**write, "content-type": "text/plain"})  # fmt: skip
    assert unknown.status_code == 415
    assert sorted(await _ids(api)) == ["j-1", "y-1", "y-2"]


async def test_the_cli_imports_the_same_way(
    api: Api, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await _parser(api)
    env = {"PRESERVARIUM_DATABASE_URL": api.database_url, "PRESERVARIUM_SECRET_KEY": SECRET_KEY}
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    refused = run_cli("device", "import", str(bad), "--json", env=env)
    assert refused.returncode == 1
    assert len(json.loads(refused.stdout)["errors"]) == 4 and await _ids(api) == []
    good = tmp_path / "devices.csv"
    good.write_text(CSV)
    done = run_cli("device", "import", str(good), "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["created"], report["unchanged"]) == (3, 0)
    through_api = (await _csv(client, api, CSV)).json()
    assert (through_api["created"], through_api["updated"], through_api["unchanged"]) == (0, 0, 3)


def _alias_bomb(levels: int, width: int) -> str:
    """A few hundred bytes of YAML whose aliases expand to width**levels strings."""
    lines = ['    a0: &a0 ["xxxxxxxxxxxxxxxxxxxxxxxx"]']
    for level in range(1, levels + 1):
        aliases = ",".join([f"*a{level - 1}"] * width)
        lines.append(f"    a{level}: &a{level} [{aliases}]")
    return "- id: bomb-1\n  type: thermo\n  attributes:\n" + "\n".join(lines) + "\n"


async def test_yaml_aliases_are_refused_before_they_expand(
    api: Api, client: httpx.AsyncClient
) -> None:
    # 10**6 strings from 400 bytes (each level more: ten times that): expanding it takes
    # seconds and gigabytes on the gateway's event loop. Aliases are refused as the file is read.
    await _parser(api)
    bomb = _alias_bomb(levels=6, width=10)
    assert len(bomb) < 1000
    response = await client.post("/api/v1/devices/import", content=bomb.encode(),
                                 headers={**api.auth("write"), "content-type": "application/yaml"},
                                 timeout=30)  # fmt: skip
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "file"
    assert "alias" in response.json()["detail"]
    assert await _ids(api) == []


async def test_a_large_yaml_file_is_read_off_the_event_loop(
    api: Api, client: httpx.AsyncClient
) -> None:
    # YAML is read in pure Python (tens of seconds for a few MB on a busy machine): read on
    # the gateway's event loop, it froze every contact and request while it lasted.
    await _parser(api)
    # Few rows (a short report), many values to read: 300 rows of 200 attributes.
    attributes = "{" + ", ".join(f"k{n}: {n}" for n in range(200)) + "}"
    text = "".join(f"- id: big-{i:05d}\n  type: thermo\n  attributes: {attributes}\n"
                   for i in range(300))  # fmt: skip
    async with LoopStalls() as stalls:
        response = await client.post("/api/v1/devices/import", content=text.encode(),
                                     params={"format": "yaml", "dry_run": "true"},
                                     headers=api.auth("write"), timeout=120)  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 300
    # The loop kept turning: its longest stall is a small part of the request's time.
    assert stalls.longest < stalls.took / 3, (stalls.longest, stalls.took)
