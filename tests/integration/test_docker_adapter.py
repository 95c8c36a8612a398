"""The Docker cloud adapter against a real engine, with a fake runner image.

The image (tests/integration/docker_image) is built here FROM hammer's Debian base
(`hammer image base` / `hammer image build` make `hammer-base:bookworm`), so these tests
take seconds and need neither ms-swift nor a registry. They check what a user would
notice: events arrive in order and exactly once across a gateway restart, the container
is locked down (seen from `docker inspect` and from inside), cancel is quick and leaves
nothing behind, and a job killed for memory ends with an `oom` error and a hint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.cloud.docker import DockerAdapter, ImageMissing
from gateway.app import standalone_services
from gateway.model import JobSpec, Limits, Mount, Placement, Resources, SandboxEvent
from tests.conftest import docker_problem

pytestmark = pytest.mark.docker

IMAGE = "hammer-test-runner:latest"
BASE = os.environ.get("HAMMER_TEST_BASE", "hammer-base:bookworm")
HERE = Path(__file__).parent / "docker_image"


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)




@pytest.fixture(scope="module")
def test_image() -> str:
    """Build the fake-runner image FROM hammer's base (no registry involved); without the
    base, an image built earlier will do."""
    problem = docker_problem()
    if problem:
        pytest.skip(problem)
    if _docker("image", "inspect", BASE, timeout=20).returncode == 0:
        built = _docker("build", "--network", "none", "-q", "--build-arg", f"BASE={BASE}", "-t", IMAGE,
                        str(HERE), timeout=300)
        assert built.returncode == 0, built.stderr
    elif _docker("image", "inspect", IMAGE, timeout=20).returncode != 0:
        pytest.skip(f"no {BASE} image to build the test image from; make it with `hammer image base`")
    return IMAGE


_LAUNCHED: list[Placement] = []
AdapterFactory = Callable[..., DockerAdapter]


@pytest.fixture
async def make_adapter(tmp_path: Path, test_image: str) -> AsyncIterator[AdapterFactory]:
    """`make_adapter(**config)`: DockerAdapters over one tmp data dir (a second one is a
    restarted gateway). Every container a test launched is removed afterwards."""
    made: list[DockerAdapter] = []

    def make(**config: Any) -> DockerAdapter:
        services = standalone_services(tmp_path / "data", secret=_secret)
        a = DockerAdapter({"grace_period_s": 2, **config}, services)
        made.append(a)
        return a

    yield make
    for p in _LAUNCHED:  # never leave a container behind, whatever the test did
        _docker("rm", "-f", p.handle["container_id"], timeout=60)
    _LAUNCHED.clear()
    for a in made:
        await a.close()


@pytest.fixture
def adapter(make_adapter: AdapterFactory) -> DockerAdapter:
    return make_adapter()


def _secret(ref: str) -> str:
    assert ref == "env:HAMMER_TEST_SECRET_SOURCE"
    return "s3cret-value"


def job(prefix: str, fake: str, *, image: str = IMAGE, memory_gib: float = 0.25, **params: Any) -> JobSpec:
    """A job for the fake runner; ids are unique per run (container names are engine-wide)."""
    return JobSpec(id=f"{prefix}-{secrets.token_hex(3)}", task="test", model="none",
                   params={"fake": fake, **params},
                   argv=("fake-runner", "--mode", fake), image=image,
                   resources=Resources(memory_gib=memory_gib, cpus=1.0, pids=256),
                   limits=Limits(max_runtime_s=120), env={"HAMMER_TEST_ENV": "1"})


async def launch(adapter: DockerAdapter, spec: JobSpec) -> Placement:
    placement = await adapter.launch(spec)
    _LAUNCHED.append(placement)
    return placement


async def collect(adapter: DockerAdapter, placement: Placement, since: int = 0, limit: int | None = None,
                  wait_s: float = 60) -> list[SandboxEvent]:
    out: list[SandboxEvent] = []

    async def run() -> None:
        gen = adapter.events(placement, since)
        try:
            async for event in gen:
                out.append(event)
                if limit is not None and len(out) >= limit:
                    return
        finally:
            await gen.aclose()

    await asyncio.wait_for(run(), wait_s)
    return out


def inspect(container_id: str) -> dict[str, Any]:
    import json
    result = _docker("inspect", container_id)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]  # type: ignore[no-any-return]


def container_exists(container_id: str) -> bool:
    return _docker("inspect", container_id).returncode == 0


# -- tests ---------------------------------------------------------------------------------------


async def test_launch_streams_events_and_reports_status(adapter: DockerAdapter) -> None:
    p = await launch(adapter, job("evt", "events", n=5))
    events = await collect(adapter, p)
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.type for e in events] == ["status"] + ["progress"] * 5 + ["result"]
    assert [e.data["step"] for e in events if e.type == "progress"] == [1, 2, 3, 4, 5]
    assert events[0].data["argv"] == ["fake-runner", "--mode", "events"]  # from job.json, not a Cmd override
    status = await adapter.status(p)
    assert (status.running, status.exit_code, status.oom_killed) == (False, 0, False)
    workspace = await adapter.collect(p)
    assert workspace == adapter.workspace_root / p.job_id / "workspace"
    assert (workspace / "job.json").stat().st_mode & 0o777 == 0o644
    st = workspace.stat()
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == 1000  # the job's own, nobody else's


async def test_container_is_hardened(adapter: DockerAdapter, make_adapter: AdapterFactory, tmp_path: Path
        ) -> None:
    os.environ["HAMMER_TEST_SECRET_SOURCE"] = "unused"
    a = make_adapter(secrets={"HAMMER_TEST_SECRET": "env:HAMMER_TEST_SECRET_SOURCE"},
                        keep_containers=True)
    data = tmp_path / "inputs"
    data.mkdir()
    (data / "faq.jsonl").write_text("{}\n")
    spec = job("hard", "probe", memory_gib=0.5)
    spec = dataclasses.replace(spec, secrets=("HAMMER_TEST_SECRET",),
                               mounts=(Mount(str(data), "/data", read_only=False),))
    p = await launch(a, spec)
    events = await collect(a, p)
    info = inspect(p.handle["container_id"])
    host, config = info["HostConfig"], info["Config"]
    assert config["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert "size=2g" in host["Tmpfs"]["/tmp"] and "mode=1777" in host["Tmpfs"]["/tmp"]
    assert host["NetworkMode"] == "none"
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024 * 1024
    assert host["PidsLimit"] == 256 and host["NanoCpus"] == 1_000_000_000
    assert config["Labels"]["hammer.job_id"] == spec.id and config["Labels"]["hammer.managed"] == "true"
    assert config["Cmd"] in (None, [])  # the image's ENTRYPOINT (the runner) runs unchanged
    assert "s3cret-value" not in (Path(p.handle["workspace"]) / "job.json").read_text()
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/workspace"]["RW"] and not mounts["/cache"]["RW"] and not mounts["/data"]["RW"]

    probe = next(e.data for e in events if e.type == "status" and e.data.get("phase") == "probe")
    assert (probe["uid"], probe["gid"]) == (1000, 1000)
    assert int(probe["cap_eff"], 16) == 0 and probe["no_new_privs"] == "1"
    assert probe["root_writable"] is False and probe["tmp_writable"] is True
    assert probe["workspace_writable"] is True and probe["cache_writable"] is False  # it fills no cache
    assert probe["mounts_writable"] == {"/data": False}  # read-only although the spec asked for rw
    assert probe["interfaces"] == ["lo"]
    assert probe["secret"] == "s3cret-value" and probe["env_job"] == spec.id
    assert (Path(p.handle["workspace"]) / "output" / "hello.txt").read_text() == "from the sandbox\n"
    await a.cleanup(p)  # keep_containers: cleanup keeps it
    assert container_exists(p.handle["container_id"])


async def test_cancel_mid_run_is_quick_and_leaves_nothing(adapter: DockerAdapter) -> None:
    p = await launch(adapter, job("cncl", "sleep"))
    first = await collect(adapter, p, limit=3)
    assert first[0].type == "status"
    started = time.monotonic()
    await adapter.cancel(p)
    assert time.monotonic() - started < 5
    assert not container_exists(p.handle["container_id"])
    assert await adapter.reattach(p) is False
    rest = await collect(adapter, p, since=3, wait_s=10)
    assert rest == []  # the stream ends; no synthetic error for a cancelled job
    assert (await adapter.status(p)).running is False


async def test_cancel_kills_a_job_that_ignores_sigterm(adapter: DockerAdapter, make_adapter: AdapterFactory
        ) -> None:
    a = make_adapter(grace_period_s=1)
    p = await launch(a, job("cncl", "stubborn"))
    await collect(a, p, limit=2)
    started = time.monotonic()
    await a.cancel(p)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 6, elapsed
    assert not container_exists(p.handle["container_id"])


async def test_out_of_memory_ends_with_an_oom_error(adapter: DockerAdapter, make_adapter: AdapterFactory
        ) -> None:
    p = await launch(adapter, job("oom", "oom", memory_gib=32 / 1024))
    events = await collect(adapter, p)
    last = events[-1]
    assert last.type == "error" and last.data["kind"] == "oom"
    assert "batch_size" in last.data["hint"] and "qlora" in last.data["hint"]
    assert last.seq == events[-2].seq + 1
    status = await adapter.status(p)
    assert status.oom_killed is True and status.exit_code == 137
    # A restarted gateway sees the same synthetic event, with the same seq, exactly once.
    again = make_adapter()
    replay = await collect(again, p)
    assert [(e.seq, e.type) for e in replay] == [(e.seq, e.type) for e in events]
    assert await collect(again, p, since=last.seq) == [replay[-1]]
    assert await collect(again, p, since=last.seq + 1) == []


async def test_events_resume_after_a_restart_without_loss_or_duplicates(
        adapter: DockerAdapter, make_adapter: AdapterFactory
        ) -> None:
    p = await launch(adapter, job("resm", "lines", n=60, interval=0.02))
    head = await collect(adapter, p, limit=20)
    assert [e.seq for e in head] == list(range(20))
    restarted = make_adapter()
    assert await restarted.reattach(p) is True
    tail = await collect(restarted, p, since=20)
    full = await collect(make_adapter(), p)
    assert [e.seq for e in head + tail] == list(range(len(full)))
    assert [(e.type, e.data) for e in head + tail] == [(e.type, e.data) for e in full]
    assert full[-1].data["line"] == "last line without newline"
    assert any(e.type == "log" and "\u00e9\u00e8" in e.data["line"] for e in full)
    assert len(full) == 62  # the starting status, 60 lines, and the last one without a newline
    long = [e for e in full if e.type == "log" and e.data["line"].startswith("long line")]
    assert len(long) == 1  # 40,000 characters: the engine splits it; we join it again


async def test_cleanup_leaves_no_container(adapter: DockerAdapter) -> None:
    p = await launch(adapter, job("clean", "events", n=1))
    await collect(adapter, p)
    assert container_exists(p.handle["container_id"])
    await adapter.cleanup(p)
    assert not container_exists(p.handle["container_id"])
    await adapter.cleanup(p)  # idempotent
    assert await adapter.reattach(p) is False
    mine = [c for c in await adapter.managed_containers() if c["Labels"].get("hammer.job_id") == p.job_id]
    assert mine == []
    assert (await adapter.collect(p) / "job.json").is_file()  # the output stays for adapter=JOBID


async def test_launching_twice_is_refused(adapter: DockerAdapter) -> None:
    spec = job("twice", "events", n=1)
    p = await launch(adapter, spec)
    with pytest.raises(RuntimeError, match="never launches a job twice"):
        await adapter.launch(spec)
    await collect(adapter, p)


async def test_missing_image_says_how_to_build_it(adapter: DockerAdapter) -> None:
    with pytest.raises(ImageMissing, match="hammer image build"):
        await adapter.launch(job("noimg", "events", image="hammer-no-such-image:never"))


async def test_catalog_and_doctor(adapter: DockerAdapter) -> None:
    [host] = await adapter.catalog()
    assert (host.cloud, host.instance_type, host.price_per_hour) == ("docker", "local", 0.0)
    assert host.vcpus >= 1
    checks = await adapter.check()
    assert checks[0].ok and "Docker engine" in checks[0].what
