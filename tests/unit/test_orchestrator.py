"""Orchestrator behaviour with the test cloud adapter, loaded through the real plugin
manager: transitions, watchdogs, cancel, the per-user limit, plugin vetoes, restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.commands import CommandError
from gateway.hookspecs import hookimpl
from gateway.model import Actor, Conversation, Job, JobState
from tests.conftest import wait_for

ALICE = Actor("web", "alice", "alice")
BOB = Actor("web", "bob", "bob")
CONV = Conversation("web", "main")


async def run_cmd(hammer, text: str, actor: Actor = ALICE) -> Job:
    job = await hammer.dispatch.execute(text, actor, CONV)
    assert isinstance(job, Job), job
    return job


async def ended(hammer, job: Job, timeout: float = 30) -> Job:
    await wait_for(lambda: job.state.terminal, timeout)
    stored = await hammer.store.get_job(job.id)
    assert stored is not None
    return stored


async def test_job_walks_every_state_and_records_every_event(make_hammer):
    hammer = await make_hammer()
    job = await ended(hammer, await run_cmd(hammer, ".fakejob"))
    assert job.state == JobState.SUCCEEDED
    assert [t[1] for t in await hammer.store.transitions(job.id)] == [
        "queued", "provisioning", "running", "uploading", "succeeded"]
    events = await hammer.store.events(job.id)
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.data["step"] for e in events if e.type == "progress"] == list(range(1, 11))
    assert job.samples == [{"prompt": "Say hi", "response": "hi"}]
    assert job.result and job.result["links"]["adapter"].startswith("http://127.0.0.1:")
    # the event archive went through the artifact store
    await wait_for(lambda: list((hammer.settings.artifacts_dir / "archive").rglob(f"{job.id}.jsonl.gz")))


async def test_runner_error_fails_with_its_kind_and_hint(make_hammer):
    hammer = await make_hammer()
    job = await ended(hammer, await run_cmd(hammer, ".fakejob mode=fail"))
    assert job.state == JobState.FAILED
    assert job.error == {"kind": "dataset", "message": "line 3 of data.jsonl is not JSON", "hint": "Fix line 3."}


async def test_exit_137_without_error_event_is_oom(make_hammer):
    hammer = await make_hammer()
    job = await ended(hammer, await run_cmd(hammer, ".fakejob mode=oom"))
    assert job.state == JobState.FAILED and job.error and job.error["kind"] == "oom"
    assert "batch_size" in job.error["hint"]


async def test_crash_without_result_fails_with_exit_code(make_hammer):
    hammer = await make_hammer()
    job = await ended(hammer, await run_cmd(hammer, ".fakejob mode=crash"))
    assert job.state == JobState.FAILED and "exit code 1" in job.error["message"]


async def test_max_runtime_watchdog_times_out(make_hammer):
    hammer = await make_hammer()
    hammer.orchestrator.watchdog_interval_s = 0.05
    hammer.orchestrator._watchdog.cancel()
    hammer.orchestrator._watchdog = asyncio.create_task(hammer.orchestrator._watch())
    job = await ended(hammer, await run_cmd(hammer, ".fakejob mode=hang max_runtime=0.5"))
    assert job.state == JobState.TIMED_OUT
    assert job.error["kind"] == "timeout" and "longer than its limit" in job.error["message"]
    assert job.id in hammer.clouds["fake"].cancelled


async def test_idle_watchdog_times_out_a_silent_job(make_hammer):
    hammer = await make_hammer()
    job = await run_cmd(hammer, ".fakejob mode=hang idle_timeout=0.3")
    await wait_for(lambda: job.state == JobState.RUNNING)
    await asyncio.sleep(0.4)
    await hammer.orchestrator.check_watchdogs(time.time())
    job = await ended(hammer, job)
    assert job.state == JobState.TIMED_OUT and "no progress" in job.error["message"]


async def test_cancel_stops_the_job_and_the_machine(make_hammer):
    hammer = await make_hammer("[cloud.fake]\nsteps = 200\ninterval = 0.05\n")
    job = await run_cmd(hammer, ".fakejob")
    await wait_for(lambda: job.progress.get("step", 0) >= 2)
    with pytest.raises(CommandError) as err:
        await hammer.dispatch.execute(f".cancel {job.id}", BOB, CONV)
    assert err.value.code == "denied"
    await hammer.dispatch.execute(f".cancel {job.id}", ALICE, CONV)
    job = await ended(hammer, job)
    assert job.state == JobState.CANCELLED
    assert hammer.clouds["fake"].cancelled == [job.id]
    steps_at_cancel = job.progress["step"]
    await asyncio.sleep(0.3)
    assert (await hammer.store.get_job(job.id)).progress["step"] == steps_at_cancel


async def test_per_user_concurrency_limit(make_hammer):
    hammer = await make_hammer("[jobs]\nmax_concurrent_per_user = 2\n[cloud.fake]\nsteps = 400\ninterval = 0.05\n")
    a = await run_cmd(hammer, ".fakejob")
    await run_cmd(hammer, ".fakejob")
    with pytest.raises(CommandError) as err:
        await run_cmd(hammer, ".fakejob")
    assert err.value.code == "denied" and "limit 2" in err.value.message
    await run_cmd(hammer, ".fakejob", BOB)  # someone else is not affected
    await hammer.dispatch.execute(f".cancel {a.id}", ALICE, CONV)
    await ended(hammer, a)
    await run_cmd(hammer, ".fakejob")  # a slot is free again
    decisions = [r for r in hammer.audit.read() if r["kind"] == "policy"]
    assert [d["allowed"] for d in decisions] == [True, True, False, True, True]


class Veto:
    @hookimpl
    def hammer_policy_check(self, actor, command, spec):
        return "bob is on holiday" if actor.user_id == "bob" else None


class Broken:
    @hookimpl
    def hammer_policy_check(self, actor, command, spec):
        raise RuntimeError("boom")


async def test_policy_plugins_can_veto_and_a_raising_plugin_fails_closed(make_hammer):
    hammer = await make_hammer()
    hammer.plugins.register(Veto(), "veto")
    with pytest.raises(CommandError) as err:
        await run_cmd(hammer, ".fakejob", BOB)
    assert "bob is on holiday" in err.value.message
    await run_cmd(hammer, ".fakejob", ALICE)
    hammer.plugins.register(Broken(), "broken")
    with pytest.raises(CommandError) as err:
        await run_cmd(hammer, ".fakejob", ALICE)
    assert "policy plugin broken failed" in err.value.message


async def test_restart_mid_job_reattaches_and_records_every_event_once(make_hammer, tmp_path: Path):
    data = tmp_path / "shared"
    extra = "[cloud.fake]\nsteps = 30\ninterval = 0.05\n"
    first = await make_hammer(extra, data_dir=data)
    job = await run_cmd(first, ".fakejob")
    await wait_for(lambda: job.progress.get("step", 0) >= 5)
    await first.stop()  # the gateway goes away; the job keeps running
    seen_before = job.last_seq
    await asyncio.sleep(0.3)

    second = await make_hammer(extra, data_dir=data)
    assert second.orchestrator.launches == 0
    resumed = second.orchestrator.jobs[job.id]
    done = await ended(second, resumed)
    assert done.state == JobState.SUCCEEDED
    events = await second.store.events(job.id)
    assert [e.seq for e in events] == list(range(len(events)))  # none lost, none doubled
    assert [e.data["step"] for e in events if e.type == "progress"] == list(range(1, 31))
    assert done.last_seq > seen_before
    assert second.clouds["fake"].launched == [] and first.clouds["fake"].launched == [job.id]


async def test_job_lost_while_gateway_was_down_is_failed_not_relaunched(make_hammer, tmp_path: Path):
    data = tmp_path / "shared"
    first = await make_hammer("[cloud.fake]\nsteps = 100\ninterval = 0.05\n", data_dir=data)
    job = await run_cmd(first, ".fakejob")
    await wait_for(lambda: job.state == JobState.RUNNING)
    await first.stop()
    await first.clouds["fake"].cancel(job.placement)
    await wait_for(lambda: (Path(job.placement.handle["dir"]) / "exit_code").exists())
    import shutil
    shutil.rmtree(Path(job.placement.handle["dir"]))
    second = await make_hammer(data_dir=data)
    done = await ended(second, second.orchestrator.jobs[job.id])
    assert done.state == JobState.FAILED and "disappeared" in done.error["message"]
    assert second.orchestrator.launches == 0


async def test_a_store_file_that_is_not_a_database_gets_a_clear_error(tmp_path: Path):
    from gateway.store import Store, StoreError
    bad = tmp_path / "hammer.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as err:
        await Store(bad).open()
    assert "not a hammer database" in str(err.value) and "store.path" in str(err.value)


async def test_a_job_that_cannot_fit_the_machine_is_refused_before_anything_starts(make_hammer):
    hammer = await make_hammer()  # the fake cloud offers one CPU-only machine
    with pytest.raises(CommandError) as err:
        await hammer.dispatch.execute(".finetune qwen-7b-lora alpaca-zh", ALICE, CONV)
    assert err.value.code == "does_not_fit"
    assert "19." in err.value.message and "GiB" in err.value.message  # the estimated need
    assert "QLoRA" in err.value.hint  # and the alternatives
    assert await hammer.store.list_jobs() == [] and hammer.clouds["fake"].launched == []
    job = await run_cmd(hammer, ".finetune demo-lora demo")  # the tiny demo model fits a CPU
    await wait_for(lambda: hammer.clouds["fake"].launched == [job.id])


async def test_plan_shows_the_estimate_and_the_machine(make_hammer):
    hammer = await make_hammer()
    reply = await hammer.dispatch.execute(".plan finetune qwen-7b-lora alpaca-zh epochs=2", ALICE, CONV)
    shown = dict(reply.fields)
    assert "GiB per GPU" in shown["GPU memory"] and "L4" in shown["Cheapest machine"]
    assert shown["On fake"].startswith("does not fit")
    assert "swift sft" in reply.text and "--tuner_type lora" in reply.text
    assert await hammer.store.list_jobs() == []


async def test_log_lines_skip_the_job_row_but_resume_after_them(tmp_path: Path):
    from gateway.model import JobSpec, SandboxEvent
    from gateway.store import Store
    store = await Store(tmp_path / "h.db").open()
    try:
        job = await store.create_job(JobSpec(id="logjob", task="sft", model="demo"))
        await store.add_event(job, SandboxEvent(0, "progress", {"step": 1}))
        for seq in range(1, 4):
            await store.add_event(job, SandboxEvent(seq, "log", {"line": "x"}), view_changed=False)
        reloaded = await store.get_job("logjob")
        assert reloaded.last_seq == 3  # a restarted gateway resumes at seq 4, not 1
        assert [j.last_seq for j in await store.list_jobs()] == [3]
    finally:
        await store.close()
