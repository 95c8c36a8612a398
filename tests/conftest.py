"""Shared fixtures: a real gateway (`make_hammer`) on 127.0.0.1 with a tmp data dir,
the test cloud adapter `fake` loaded through the real plugin manager, and no Docker."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Hammer
from gateway.config import parse_settings


def hammer_toml(data_dir: Path, extra: str = "", *, web: bool = True, cloud: str = "fake") -> str:
    """A config for tests: loopback, port 0, the fake cloud by default."""
    parts = [
        f'[gateway]\ndata_dir = "{data_dir}"\ndefault_cloud = "{cloud}"\n',
        '[http]\nhost = "127.0.0.1"\nport = 0\n',
        '[plugins]\nmodules = ["tests.fakes.cloud"]\n',
        f"[chat.web]\nenabled = {'true' if web else 'false'}\n",
    ]
    if "[cloud.fake]" not in extra and cloud == "fake":
        parts.append("[cloud.fake]\nsteps = 10\ninterval = 0.02\n")
    if "[cloud.docker]" not in extra and cloud != "docker":
        parts.append("[cloud.docker]\nenabled = false\n")  # the embedded default enables it
    if "[jobs]" not in extra:
        parts.append("[jobs]\nmax_concurrent_per_user = 5\n")
    return "\n".join(parts) + "\n" + extra


@pytest.fixture
async def make_hammer(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Hammer]]]:
    """`await make_hammer(extra_toml, data_dir=None, web=True)` -> a started Hammer.
    Every gateway made here is stopped at the end of the test."""
    made: list[Hammer] = []

    async def factory(extra: str = "", *, data_dir: Path | None = None, web: bool = True,
                      cloud: str = "fake") -> Hammer:
        text = hammer_toml(data_dir or tmp_path / "data", extra, web=web, cloud=cloud)
        hammer = Hammer(parse_settings(text, "test config"))
        await hammer.start()
        made.append(hammer)
        return hammer

    yield factory
    for h in made:
        try:
            await asyncio.wait_for(h.stop(), 30)
        except Exception:
            pass


@pytest.fixture
async def web_user() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """`await web_user(hammer, "alice", role="member")` -> a signed-in tests.webclient.WebUser."""
    from tests.webclient import WebUser
    made: list[WebUser] = []

    async def factory(hammer: Hammer, name: str, role: str = "member") -> WebUser:
        user = await WebUser.sign_in(hammer, name, role)
        made.append(user)
        return user

    yield factory
    for user in made:
        await user.close()


async def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02) -> None:
    """Poll until `predicate()` (sync or async) is truthy; fail the test after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def docker_problem() -> str | None:
    """Why Docker tests cannot run here (None when they can): the skip reason names the fix."""
    if shutil.which("docker") is None:
        return "no docker CLI on this host (run scripts/docker-up.sh, which installs docker.io)"
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
            return "the Docker engine is not running (run scripts/docker-up.sh)"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the Docker engine does not answer: {exc}"
    return None


def docker_available() -> bool:
    return docker_problem() is None


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose plugins through config, not the caller's HAMMER_PLUGINS."""
    if "HAMMER_PLUGINS" in os.environ:
        monkeypatch.delenv("HAMMER_PLUGINS")
