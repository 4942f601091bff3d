"""`preservarium parser ...` and `device ...` through the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_cli

GOOD = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"PRESERVARIUM_DATABASE_URL": database_url}


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def assert_one_line_error(done, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_upload_list_show_activate(env: dict[str, str], tmp_path: Path) -> None:
    first = run_cli(
        "parser",
        "upload",
        "efento",
        str(write(tmp_path, "a.py", GOOD.encode())),
        "--force",
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "1"
    second_source = GOOD.replace("'n'", "'size'")
    second = run_cli(
        "parser",
        "upload",
        "efento",
        str(write(tmp_path, "b.py", second_source.encode())),
        "--force",
        env=env,
    )
    assert second.stdout.strip() == "2"
    listed = json.loads(run_cli("parser", "list", "--json", env=env).stdout)
    assert [(p["device_type"], p["active_version"], p["latest_version"]) for p in listed] == [
        ("efento", 2, 2)
    ]
    assert run_cli("parser", "activate", "efento", "1", env=env).returncode == 0
    shown = json.loads(run_cli("parser", "show", "efento", "--json", env=env).stdout)
    assert (shown["version"], shown["source"]) == (1, GOOD)
    human = run_cli("parser", "show", "efento", "--version", "2", env=env)
    assert human.returncode == 0 and "size" in human.stdout


def test_upload_no_activate(env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path, "a.py", GOOD.encode())
    run_cli("parser", "upload", "efento", str(path), "--force", env=env)
    other = write(tmp_path, "b.py", GOOD.replace("'n'", "'m'").encode())
    done = run_cli("parser", "upload", "efento", str(other), "--no-activate", "--force", env=env)
    assert done.stdout.strip() == "2"
    shown = json.loads(run_cli("parser", "show", "efento", "--json", env=env).stdout)
    assert shown["version"] == 1


def test_upload_refuses_an_oversize_file(env: dict[str, str], tmp_path: Path) -> None:
    big = GOOD.encode() + b"#" * (256 * 1024)
    done = run_cli("parser", "upload", "efento", str(write(tmp_path, "big.py", big)), env=env)
    assert_one_line_error(done, "over the limit", "262144")


def test_upload_refuses_non_utf8(env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli(
        "parser", "upload", "efento", str(write(tmp_path, "l1.py", b"# \xff\xfe\n")), env=env
    )
    assert_one_line_error(done, "not UTF-8")


def test_upload_refuses_a_syntax_error_naming_the_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = b"def parse(payload, metadata):\n    return {\n\ndef x(:\n"
    done = run_cli("parser", "upload", "efento", str(write(tmp_path, "bad.py", bad)), env=env)
    assert_one_line_error(done, "syntax error at line")
    assert run_cli("parser", "list", "--json", env=env).stdout.strip() == "[]"


def test_unknown_type_is_one_line(env: dict[str, str]) -> None:
    assert_one_line_error(run_cli("parser", "show", "nope", env=env), "nope")
    assert_one_line_error(run_cli("parser", "activate", "nope", "1", env=env), "nope")


def test_device_registry(env: dict[str, str]) -> None:
    registered = run_cli("device", "register", "dev-1", "--type", "dragino", "--force", env=env)
    assert registered.returncode == 0, registered.stderr
    assert_one_line_error(
        run_cli("device", "register", "dev-1", "--type", "dragino", "--force", env=env),
        "already registered",
    )
    assert_one_line_error(
        run_cli("device", "register", "bad/id", "--type", "dragino", env=env), "invalid device id"
    )
    listed = json.loads(run_cli("device", "list", "--json", env=env).stdout)
    assert [(d["id"], d["device_type"]) for d in listed] == [("dev-1", "dragino")]
    shown = json.loads(run_cli("device", "show", "dev-1", "--json", env=env).stdout)
    assert shown["device_type"] == "dragino"
    assert run_cli("device", "remove", "dev-1", env=env).returncode == 0
    assert_one_line_error(run_cli("device", "show", "dev-1", env=env), "not registered")


def test_upload_refuses_an_import_outside_the_vetted_list(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = b"import json\nimport socket\ndef parse(payload, metadata):\n    return {}\n"
    done = run_cli("parser", "upload", "efento", str(write(tmp_path, "net.py", bad)), env=env)
    assert_one_line_error(done, "line 2", "'socket' is not allowed")
