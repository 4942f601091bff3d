"""The service console scripts start and stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.net import free_port


@pytest.mark.parametrize("command", ["preservarium-gateway", "preservarium-sandbox"])
def test_starts_and_stops_on_sigterm(command: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PRESERVARIUM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "PRESERVARIUM_DB_AUTO_MIGRATE": "1",
        "PRESERVARIUM_SANDBOX_LISTEN": f"127.0.0.1:{free_port()}",
        "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{free_port()}",
        # The gateway's default is `required` device auth, which needs the secret key.
        "PRESERVARIUM_SECRET_KEY": "k" * 44,
        "PRESERVARIUM_COAPS_BIND": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        "PRESERVARIUM_API_LISTEN": f"127.0.0.1:{free_port()}",
        "PRESERVARIUM_METRICS_PORT": "0",
        "PRESERVARIUM_SANDBOX_WORKERS": "1",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / command)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = {"preservarium-gateway": "gateway serving", "preservarium-sandbox": "sandbox serving"}
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    for line in process.stderr:
        if ready[command] in line or time.monotonic() > deadline:
            break
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
