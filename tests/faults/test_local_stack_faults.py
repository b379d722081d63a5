"""`make run`'s launcher under the faults a developer's laptop sees: the launcher killed outright, the fake
TalentLMS stopped on purpose or crashing, and secrets supplied from the environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SUPPLIED_ADMIN_TOKEN = "supplied-admin-token-4f9c2e"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: str) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", int(port))) == 0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc: no extra dependency)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")
def test_stack_dies_whole_when_killed_fakes_come_and_go_and_supplied_secrets_stay_hidden(
    tmp_path: Path,
) -> None:
    ports = {
        name: str(_free_port())
        for name in (
            "INGEST_PORT",
            "ENROLLMENT_PORT",
            "SUBSCRIPTION_PORT",
            "ANALYTICS_PORT",
            "TALENTLMS_FAKE_PORT",
        )
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HOTMART_HOTTOK", "TALENTLMS_BASE_URL", "TALENTLMS_API_KEY", "PUBSUB_EMULATOR_HOST")
    }
    env.update(
        ports,
        COURSEBRIDGE_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
        ADMIN_TOKEN=SUPPLIED_ADMIN_TOKEN,
    )
    log_path = tmp_path / "stack.log"
    log = log_path.open("wb")
    launcher = subprocess.Popen(
        [sys.executable, "tools/local_stack.py", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    fake_port = ports["TALENTLMS_FAKE_PORT"]

    def ready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{ports['INGEST_PORT']}/readyz", timeout=1).ok
        except requests.RequestException:
            return False

    def control(state: str) -> None:
        subprocess.run(
            [sys.executable, "tools/local_stack.py", "fake", state], cwd=ROOT, env=env, check=True, timeout=30
        )

    try:
        try:
            wait_for(ready, "ingest to be ready", 90)
            wait_for(lambda: _port_open(fake_port), "the fake TalentLMS to listen", 30)
        except AssertionError as error:
            raise AssertionError(log_path.read_text()[-3000:]) from error

        # The fake stopped on purpose stays down, and the stack keeps running; then it comes back.
        control("down")
        wait_for(lambda: not _port_open(fake_port), "the fake to stop on request", 30)
        assert launcher.poll() is None and ready()
        control("up")
        wait_for(lambda: _port_open(fake_port), "the fake to start again on request", 30)

        # A fake that dies is restarted; the stack goes on.
        (fake,) = [pid for pid in _children(launcher.pid) if "talentlms_fake" in _cmdline(pid)]
        os.kill(fake, signal.SIGKILL)
        wait_for(
            lambda: any("talentlms_fake" in _cmdline(p) for p in _children(launcher.pid) if p != fake),
            "the fake to be restarted",
            30,
        )
        wait_for(lambda: _port_open(fake_port), "the restarted fake to listen", 30)
        assert launcher.poll() is None

        # The launcher killed outright (no handler can run): every service goes with it.
        children = _children(launcher.pid)
        assert len(children) >= 9, [_cmdline(p) for p in children]
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait(10)
        try:
            wait_for(
                lambda: not any(_alive(p) for p in children), "every child to exit after the launcher", 120
            )
        except AssertionError as error:
            survivors = [_cmdline(p) for p in children if _alive(p)]
            raise AssertionError(f"{survivors}\n{log_path.read_text()[-4000:]}") from error
        wait_for(
            lambda: not any(_port_open(port) for port in ports.values()), "every port to be released", 30
        )
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        log.close()

    output = log_path.read_text()
    assert SUPPLIED_ADMIN_TOKEN not in output
    assert "ADMIN_TOKEN      (from your environment, not shown)" in output
    assert "HOTMART_HOTTOK   dev-hotmart_hottok-" in output  # generated here, so shown


def test_a_real_talentlms_url_without_its_key_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "COURSEBRIDGE_DATA_DIR": str(tmp_path / "data")}
    env.pop("TALENTLMS_API_KEY", None)
    env["TALENTLMS_BASE_URL"] = "https://acme.talentlms.com/api/v1"
    result = subprocess.run(
        [sys.executable, "tools/local_stack.py", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "TALENTLMS_API_KEY is not" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
