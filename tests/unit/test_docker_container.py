"""The Docker adapter's pure parts, without an engine: the container it asks for (the
hardening), the line numbering that makes event streams resumable, its configuration,
and the message a user gets when there is no engine at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.cloud.docker import DockerAdapter, DockerConfig, DockerUnavailable, hammer_cloud_adapters
from adapters.cloud.docker.container import container_body
from adapters.cloud.docker.logstream import LineNumberer, docker_time, oom_event
from gateway.app import standalone_services
from gateway.model import JobSpec, Mount, Placement, Resources


def spec(**changes: Any) -> JobSpec:
    base: dict[str, Any] = dict(id="abc12345", task="sft", model="demo", image="hammer-sandbox:latest",
                                argv=("swift", "sft", "--model", "x"), env={"A": "1"},
                                resources=Resources(memory_gib=2.0, cpus=1.5, pids=512))
    base.update(changes)
    return JobSpec(**base)


def body(s: JobSpec | None = None, *, gpus: int = 0, secrets: dict[str, str] | None = None,
         **config: Any) -> dict[str, Any]:
    return container_body(s or spec(), workspace=Path("/srv/jobs/abc12345/workspace"),
                          cache=Path("/srv/cache"), config=DockerConfig(**config), secrets=secrets or {},
                          gpu_count=gpus, labels={"x": "y"})


def test_the_container_is_locked_down() -> None:
    b = body()
    host = b["HostConfig"]
    assert b["User"] == "1000:1000" and b["Image"] == "hammer-sandbox:latest"
    assert "Cmd" not in b and "Entrypoint" not in b  # the image's runner, unchanged
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["Tmpfs"]["/tmp"].startswith("rw,") and "size=2g" in host["Tmpfs"]["/tmp"]
    assert "mode=1777" in host["Tmpfs"]["/tmp"]
    assert host["Memory"] == host["MemorySwap"] == 2 * 1024**3  # no swap
    assert host["NanoCpus"] == 1_500_000_000 and host["PidsLimit"] == 512
    assert host["NetworkMode"] == "none" and "DeviceRequests" not in host
    assert b["Labels"] == {"x": "y", "hammer.job_id": "abc12345", "hammer.managed": "true",
                           "hammer.task": "sft"}
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/workspace"]["Source"] == "/srv/jobs/abc12345/workspace"
    assert not mounts["/workspace"]["ReadOnly"]
    assert mounts["/cache"]["Source"] == "/srv/cache" and mounts["/cache"]["ReadOnly"]  # it fills nothing


def test_only_jobs_that_fill_the_shared_cache_may_write_it(tmp_path: Path) -> None:
    def cache_ro(s: JobSpec) -> bool:
        b = container_body(s, workspace=tmp_path / "ws", cache=tmp_path, config=DockerConfig(), secrets={},
                           gpu_count=0, labels={})
        return next(m for m in b["HostConfig"]["Mounts"] if m["Target"] == "/cache")["ReadOnly"]

    demo = spec(params={"prepare": ["demo_model:/cache/models/demo", "demo_dataset:/cache/datasets/demo.jsonl"]})
    assert not cache_ro(demo)  # the first demo job builds the model there
    (tmp_path / "models" / "demo").mkdir(parents=True)
    (tmp_path / "models" / "demo" / "config.json").write_text("{}")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "demo.jsonl").write_text("{}\n")
    assert cache_ro(demo)  # later ones only read it
    assert cache_ro(spec(needs_network=True)) and not cache_ro(spec(task="download"))  # only .download fills it
    proxied = container_body(spec(needs_network=True), workspace=tmp_path, cache=tmp_path, config=DockerConfig(),
                             secrets={}, gpu_count=0, labels={}, network="hammer-net-abc12345",
                             extra_env={"HTTPS_PROXY": "http://hammer-egress:3128"})
    assert proxied["HostConfig"]["NetworkMode"] == "hammer-net-abc12345"
    assert "HTTPS_PROXY=http://hammer-egress:3128" in proxied["Env"]


def test_network_only_for_jobs_that_download() -> None:
    assert body(spec(needs_network=True), network="hammer-jobs")["HostConfig"]["NetworkMode"] == "hammer-jobs"
    assert body(spec(needs_network=False), network="hammer-jobs")["HostConfig"]["NetworkMode"] == "none"


def test_gpus_are_requested_only_when_asked_for() -> None:
    assert body(gpus=2)["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}]


def test_inputs_are_always_read_only_and_cannot_shadow_the_sandbox() -> None:
    b = body(spec(mounts=(Mount("/home/u/up/faq.jsonl", "/data/faq.jsonl", read_only=False),)))
    [extra] = [m for m in b["HostConfig"]["Mounts"] if m["Target"] == "/data/faq.jsonl"]
    assert extra["ReadOnly"] is True
    for target in ("/workspace", "/workspace/x", "/cache", "/tmp/x", "relative", "/data/../etc"):
        with pytest.raises(ValueError):
            body(spec(mounts=(Mount("/x", target),)))


def test_secrets_only_as_environment() -> None:
    b = body(secrets={"HF_TOKEN": "hf_abc"})
    assert "HF_TOKEN=hf_abc" in b["Env"] and "A=1" in b["Env"] and "HAMMER_JOB_ID=abc12345" in b["Env"]
    assert "hf_abc" not in str(spec().to_dict())


def test_operator_limits_override_the_job() -> None:
    host = body(memory_gib=1, cpus=0.5, pids=64)["HostConfig"]
    assert host["Memory"] == 1024**3 and host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 64


def test_config_rejects_literal_secrets_and_unknown_keys() -> None:
    assert DockerConfig(secrets={"HF_TOKEN": "env:HF_TOKEN"}).secrets == {"HF_TOKEN": "env:HF_TOKEN"}
    with pytest.raises(ValidationError):
        DockerConfig(secrets={"HF_TOKEN": "hf_literal_token"})
    with pytest.raises(ValidationError):
        DockerConfig(keep_container=True)  # type: ignore[call-arg]
    assert DockerAdapter.config_model is DockerConfig


def test_the_plugin_registers_the_docker_cloud() -> None:
    got: list[tuple[str, Any]] = []
    hammer_cloud_adapters(lambda name, factory: got.append((name, factory)))
    assert got == [("docker", DockerAdapter)]


# -- numbering the output ----------------------------------------------------------------------


def test_lines_split_across_chunks_are_numbered_once() -> None:
    n = LineNumberer()
    chunks = ['{"v": 1, "type": "progress", "st', 'ep": 1}\nplain ', "text\n", "", "a\nb\nc", "d"]
    events = [e for c in chunks for e in n.feed(c)] + list(n.close())
    assert [(e.seq, e.type) for e in events] == [(0, "progress"), *((i, "log") for i in range(1, 5))]
    assert events[0].data == {"step": 1}
    assert [e.data.get("line") for e in events[1:]] == ["plain text", "a", "b", "cd"]


def test_since_skips_but_still_counts() -> None:
    lines = "".join(f'{{"v": 1, "type": "{t}"}}\n' for t in ("status", "error", "progress", "result"))
    n = LineNumberer(since=2)
    events = list(n.feed(lines))
    assert [e.seq for e in events] == [2, 3]
    assert n.count == 4 and n.saw_error and n.saw_result  # the skipped error still counts


def test_the_synthetic_oom_event_is_the_same_on_every_replay() -> None:
    a = oom_event(7, 137, 32 * 1024**2, "2026-01-02T03:04:05.123456789Z")
    b = oom_event(7, 137, 32 * 1024**2, "2026-01-02T03:04:05.123456789Z")
    assert a == b and a.seq == 7 and a.type == "error"
    assert a.data["kind"] == "oom" and "qlora" in a.data["hint"] and "batch_size" in a.data["hint"]
    assert a.ts == pytest.approx(1767323045.123457)
    assert docker_time("0001-01-01T00:00:00Z") is None and docker_time("") is None


# -- no engine -----------------------------------------------------------------------------------


async def test_no_engine_says_how_to_start_one(tmp_path: Path) -> None:
    services = standalone_services(tmp_path, secret=lambda ref: "")
    adapter = DockerAdapter({"url": f"unix://{tmp_path}/no-docker.sock"}, services)
    try:
        with pytest.raises(DockerUnavailable) as info:
            await adapter.launch(spec())
        assert "scripts/docker-up.sh" in str(info.value) and "systemctl start docker" in str(info.value)
        checks = await adapter.check()
        assert checks[0].ok is False and "docker-up.sh" in checks[0].fix
        with pytest.raises(DockerUnavailable):
            await adapter.reattach(Placement("docker", "abc12345", {"container_id": "x"}))
    finally:
        await adapter.close()


def test_a_job_that_reads_the_shared_cache_finds_its_models_as_links(tmp_path: Path) -> None:
    from adapters.cloud.docker.network import link_shared_cache
    cache, ws = tmp_path / "cache", tmp_path / "ws"
    (cache / "modelscope" / "models" / "Qwen" / "Qwen2.5-7B-Instruct").mkdir(parents=True)
    (cache / "hf" / "hub" / "models--meta-llama--Llama-3").mkdir(parents=True)
    (cache / "modelscope" / "datasets" / "json" / "default-123").mkdir(parents=True)  # a processing cache
    link_shared_cache(cache, ws)
    assert not (ws / ".cache" / "modelscope" / "datasets").exists()  # stays the job's own (it writes locks)
    ms = ws / ".cache" / "modelscope" / "models" / "Qwen" / "Qwen2.5-7B-Instruct"
    assert ms.is_symlink() and str(ms.readlink()) == "/cache/modelscope/models/Qwen/Qwen2.5-7B-Instruct"
    hf = ws / ".cache" / "hf" / "hub" / "models--meta-llama--Llama-3"
    assert str(hf.readlink()) == "/cache/hf/hub/models--meta-llama--Llama-3"
    assert not (ws / ".cache" / "modelscope" / "models" / "Qwen").is_symlink()  # new downloads land here, its own
    b = container_body(spec(needs_network=True), workspace=ws, cache=cache, config=DockerConfig(), secrets={},
                       gpu_count=0, labels={})
    assert "MODELSCOPE_CACHE=/workspace/.cache/modelscope" in b["Env"] and "HF_HOME=/workspace/.cache/hf" in b["Env"]
