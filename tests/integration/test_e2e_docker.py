"""Real jobs end to end: the web chat, the gateway, the Docker adapter, the sandbox image
and ms-swift training the demo model on the CPU. Slow tier (`docker` + `swift` markers).

The sandbox image must exist (`hammer image build`, done by `make test` before pytest).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import docker_available, wait_for
from tests.integration.test_web_chat import fields, open_page

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("HAMMER_TEST_IMAGE", "hammer-sandbox:latest")


def _image_present() -> bool:
    return docker_available() and subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                                                 timeout=30).returncode == 0


pytestmark = [
    pytest.mark.docker, pytest.mark.swift,
    pytest.mark.skipif(not _image_present(), reason=f"needs a Docker engine and the image {IMAGE} "
                       "(run `make test`, which starts dockerd and runs `hammer image build`)"),
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One /cache for the module: the demo model is made once and shared, as in real use."""
    path = tmp_path_factory.mktemp("hammer-cache")
    path.chmod(0o777)
    return path


def docker_toml(cache: Path, memory_gib: float = 6, extra: str = "") -> str:
    return (f'[cloud.docker]\ncache_dir = "{cache}"\ngrace_period_s = 3\n'
            f"[jobs]\nimage = \"{IMAGE}\"\nmemory_gib = {memory_gib}\ncpus = 2\nmax_concurrent_per_user = 5\n"
            + extra)


def containers(job_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=hammer.job_id={job_id}"], capture_output=True,
                         text=True, timeout=30).stdout
    return out.split()


async def test_finetune_demo_through_the_web_chat(make_hammer, web_user, cache_dir: Path, tmp_path: Path) -> None:
    hammer = await make_hammer(docker_toml(cache_dir), cloud="docker")
    url = hammer.services.public_url
    page = await open_page(web_user, hammer, "alice")
    session = page.user.session
    await page.send(type="command", text=".finetune demo-lora demo epochs=2")
    await wait_for(lambda: any(m["msg"].get("title", "").startswith("Job ") and m["msg"]["level"] in
                               ("success", "error") and "Result" in fields(m) for m in page.bot_messages()),
                   timeout=600, interval=0.5)
    report = [m for m in page.bot_messages() if "Result" in fields(m)][-1]
    assert fields(report)["Result"] == "succeeded", report
    job_id = report["msg"]["title"].split()[1]
    job = await hammer.store.get_job(job_id)
    phases = [t[1] for t in await hammer.store.transitions(job_id)]
    assert phases == ["queued", "provisioning", "running", "uploading", "succeeded"]
    progress = [e for e in await hammer.store.events(job_id) if e.type == "progress"]
    losses = [e.data["loss"] for e in progress if e.data.get("loss") is not None]
    assert len(losses) >= 2 and all(isinstance(v, float) and v > 0 for v in losses)  # ms-swift's numbers
    assert job.samples and job.samples[0]["response"] is not None
    assert report["msg"]["image"] and "Prompt:" in report["msg"]["text"]
    async with session.get(url + report["msg"]["image"]) as resp:
        png = await resp.read()
        assert resp.status == 200 and png.startswith(b"\x89PNG") and len(png) > 2000
    adapter_link = fields(report)["Adapter"]
    async with session.get(adapter_link) as resp:
        assert resp.status == 200 and "adapter_model.safetensors" in await resp.text()
    assert containers(job_id) == []  # cleaned up

    # The adapter loads with `swift infer --adapters` (inside the same hardened image).
    adapter_dir = hammer.settings.artifacts_dir / "jobs" / job_id / "adapter"
    assert (adapter_dir / "adapter_config.json").exists()
    cmd = ["docker", "run", "--rm", "--network", "none", "--user", "1000:1000", "--read-only",
           "--tmpfs", "/tmp", "-v", f"{cache_dir}:/cache", "-v", f"{adapter_dir}:/adapter:ro",
           "-e", "HF_HUB_OFFLINE=1", "--entrypoint", "swift", IMAGE, "infer", "--model", "/cache/models/demo",
           "--model_type", "qwen2", "--template", "qwen2_5", "--adapters", "/adapter",
           "--val_dataset", "/cache/datasets/demo.jsonl#2", "--max_new_tokens", "8", "--result_path", "/tmp/r.jsonl"]
    r = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


async def test_a_docker_finetune_feeds_jobs_on_docker_and_on_another_cloud(make_hammer, cache_dir: Path) -> None:
    """The adapter reaches later jobs through the artifact store: a real `swift infer`
    on Docker loads it from /inputs, and an export on the fake cloud receives its files."""
    from gateway.model import Actor, Conversation, Job, JobState
    hammer = await make_hammer(docker_toml(cache_dir, extra="[cloud.fake]\nsteps = 3\ninterval = 0.01\n"),
                               cloud="docker")
    actor, conv = Actor("web", "alice", "alice"), Conversation("web", "main")

    async def run(text: str) -> Job:
        job = await hammer.dispatch.execute(text, actor, conv)
        assert isinstance(job, Job)
        await wait_for(lambda: job.state.terminal, timeout=600, interval=0.5)
        assert job.state == JobState.SUCCEEDED, job.error
        return job

    tune = await run(".finetune demo-lora demo")
    key = tune.artifact_keys()["adapter"]
    stored = sorted(p.name for p in (hammer.settings.artifacts_dir / key).iterdir())
    assert "adapter_model.safetensors" in stored and "adapter_config.json" in stored
    infer = await run(f'.infer adapter={tune.id} prompt="Who are you?"')
    assert infer.spec.cloud == "docker" and infer.spec.inputs == (key,)
    assert infer.samples and infer.samples[0]["response"]  # the model answered with the adapter loaded
    export = await run(f".export {tune.id} cloud=fake")
    lines = [e.data["line"] for e in await hammer.store.events(export.id, types=("log",))]
    assert any(line.startswith(f"input {key}: ") and "adapter_model.safetensors" in line for line in lines)


async def test_cancel_mid_training_leaves_no_container(make_hammer, cache_dir: Path) -> None:
    hammer = await make_hammer(docker_toml(cache_dir), cloud="docker")
    from gateway.model import Actor, Conversation
    alice = Actor("web", "alice")
    job = await hammer.dispatch.execute(".finetune demo-lora demo epochs=100", alice, Conversation("web", "main"))
    await wait_for(lambda: job.progress.get("step", 0) >= 2, timeout=300, interval=0.2)
    assert len(containers(job.id)) == 1
    await hammer.dispatch.execute(f".cancel {job.id}", alice, Conversation("web", "main"))
    await wait_for(lambda: job.state.terminal, timeout=60)
    assert job.state.value == "cancelled"
    await wait_for(lambda: containers(job.id) == [], timeout=30)


async def test_tiny_memory_limit_ends_with_oom_and_the_hint(make_hammer, cache_dir: Path) -> None:
    hammer = await make_hammer(docker_toml(cache_dir, memory_gib=0.1), cloud="docker")
    from gateway.model import Actor, Conversation
    job = await hammer.dispatch.execute(".finetune demo-lora demo", Actor("web", "alice"), Conversation("web", "main"))
    await wait_for(lambda: job.state.terminal, timeout=300, interval=0.2)
    assert job.state.value == "failed"
    assert job.error["kind"] == "oom", job.error
    hint = job.error["hint"].lower()
    assert "batch" in hint or "max_length" in hint or "qlora" in hint
    await wait_for(lambda: containers(job.id) == [], timeout=30, interval=0.2)  # removed as the job ends


async def test_hardening_flags_of_a_running_job(make_hammer, cache_dir: Path) -> None:
    hammer = await make_hammer(docker_toml(cache_dir), cloud="docker")
    from gateway.model import Actor, Conversation
    alice = Actor("web", "alice")
    job = await hammer.dispatch.execute(".finetune demo-lora demo epochs=100", alice, Conversation("web", "main"))
    await wait_for(lambda: containers(job.id), timeout=120, interval=0.2)
    inspect = await asyncio.to_thread(subprocess.run, ["docker", "inspect", containers(job.id)[0]],
                                      capture_output=True, text=True, timeout=30)
    info = json.loads(inspect.stdout)[0]
    host = info["HostConfig"]
    assert info["Config"]["User"] in ("1000", "1000:1000")
    assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"]
    assert "no-new-privileges" in " ".join(host["SecurityOpt"])
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["NetworkMode"] == "none"
    assert host["Memory"] == 6 * 1024**3 and host["MemorySwap"] == host["Memory"]
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["NanoCpus"] == 2 * 10**9
    assert info["Config"]["Labels"]["hammer.job_id"] == job.id
    await hammer.dispatch.execute(f".cancel {job.id}", alice, Conversation("web", "main"))
    await wait_for(lambda: job.state.terminal, timeout=60)


async def _api(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        return await resp.json(content_type=None)


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True)


async def test_killing_the_gateway_during_training_loses_and_doubles_nothing(cache_dir: Path, tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "hammer.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\ndefault_cloud = "docker"\n'
                      f'[http]\nhost = "127.0.0.1"\nport = {port}\n[chat.web]\n' + docker_toml(cache_dir))
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    first = _serve(config, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_for(lambda: _up(session, url), timeout=60, interval=0.2)
            token = (tmp_path / "data" / "operator.token").read_text().strip()  # the operator's own API token
            session.headers["Authorization"] = f"Bearer {token}"
            body = await _api(session, "POST", url + "/api/commands",
                              json={"text": ".finetune demo-lora demo epochs=12"})
            assert body["ok"], body
            job_id = body["job"]["id"]

            async def step() -> int:
                job = await _api(session, "GET", f"{url}/api/jobs/{job_id}")
                return int(job["progress"].get("step") or 0)

            await wait_for(lambda: _at_least(step, 2), timeout=300, interval=0.3)
            first.send_signal(signal.SIGKILL)  # no goodbye: the process just dies
            first.wait(10)
            assert len(containers(job_id)) == 1  # the job keeps training without its gateway
            await asyncio.sleep(2)

            second = _serve(config, log)
            try:
                await wait_for(lambda: _up(session, url), timeout=60, interval=0.2)

                async def done() -> bool:
                    job = await _api(session, "GET", f"{url}/api/jobs/{job_id}")
                    return job["state"] in ("succeeded", "failed", "cancelled", "timed_out")

                await wait_for(done, timeout=600, interval=0.5)
                job = await _api(session, "GET", f"{url}/api/jobs/{job_id}")
                assert job["state"] == "succeeded", (job["error"], log.read_text()[-3000:])
                events = (await _api(session, "GET", f"{url}/api/jobs/{job_id}/events"))["events"]
                seqs = [e["seq"] for e in events]
                assert seqs == list(range(len(seqs)))  # nothing lost, nothing doubled
                steps = [e["data"]["step"] for e in events if e["type"] == "progress" and "loss" in e["data"]]
                assert steps == sorted(set(steps))
                async with session.get(url + "/metrics") as resp:
                    assert "hammer_launches_total 0" in await resp.text()  # the new gateway launched nothing
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()


async def _up(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url + "/healthz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _at_least(fn: Any, n: int) -> bool:
    return await fn() >= n


async def test_leftover_containers_of_ended_or_unknown_jobs_are_swept_at_start(make_hammer, cache_dir: Path,
                                                                               tmp_path: Path) -> None:
    from gateway.model import JobSpec, Placement
    data = tmp_path / "data"
    first = await make_hammer(docker_toml(cache_dir), cloud="docker", data_dir=data)
    docker = first.clouds["docker"]
    # A container whose job the store never recorded (the gateway died right after launching it).
    await docker.launch(JobSpec(id="0rphan01", task="sft", model="demo", argv=("swift", "--version"), image=IMAGE))
    other = await make_hammer(docker_toml(cache_dir), cloud="docker", data_dir=tmp_path / "other")
    await other.clouds["docker"].launch(JobSpec(id="0ther001", task="sft", model="demo", argv=("swift", "--version"),
                                                image=IMAGE))
    assert containers("0rphan01") and containers("0ther001")
    await first.stop()
    await make_hammer(docker_toml(cache_dir), cloud="docker", data_dir=data)
    assert containers("0rphan01") == []  # swept by its own gateway
    assert containers("0ther001")  # another gateway's container is left alone
    await other.clouds["docker"].cleanup(Placement("docker", "0ther001", {}))
    assert containers("0ther001") == []
