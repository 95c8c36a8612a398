"""The core made ready for remote clouds (issue 9): outputs go through the artifact store
whatever cloud ran a job, earlier jobs reach later ones by artifact key, the planner
prices every job once and cost approval works, the cost watchdog stops a job, button
clicks run the same verbs with the same checks, and links never leak host files."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from gateway.commands import CommandError
from gateway.model import Actor, Conversation, Interaction, JobState
from tests.conftest import wait_for
from tests.unit.test_orchestrator import ended, run_cmd

ALICE = Actor("web", "alice", "alice")
BOB = Actor("web", "bob", "bob")
BOSS = Actor("web", "boss", "boss")
CONV = Conversation("web", "main")
ROOT = Path(__file__).resolve().parents[2]
#: A GPU machine on the fake cloud, so jobs have a price.
GPU_CATALOG = """
[[cloud.fake.catalog]]
instance_type = "fake-a100"
gpu = "A100-80GB"
gpu_count = 1
gpu_memory_mib = 81920
vcpus = 12
ram_gib = 85.0
price_per_hour = 3.67
"""


async def test_an_adapter_reaches_a_job_on_another_cloud_through_the_artifact_store(make_hammer) -> None:
    hammer = await make_hammer("[cloud.fake2]\nsteps = 3\ninterval = 0.01\n")
    tune = await ended(hammer, await run_cmd(hammer, ".finetune demo-lora demo"))
    assert tune.state == JobState.SUCCEEDED and tune.spec.cloud == "fake"
    key = tune.artifact_keys()["adapter"]
    assert key == f"jobs/{tune.id}/adapter"
    stored = hammer.settings.artifacts_dir / key
    assert (stored / "adapter_config.json").is_file()  # in the store, not only on the fake cloud's disk

    for text in (f'.infer adapter={tune.id} prompt="hi" cloud=fake2', f".export {tune.id} cloud=fake2"):
        job = await ended(hammer, await run_cmd(hammer, text))
        assert job.state == JobState.SUCCEEDED, job.error
        assert job.spec.cloud == "fake2" and job.spec.inputs == (key,)
        assert f"/inputs/{key}" in job.spec.argv
        lines = [e.data["line"] for e in await hammer.store.events(job.id, types=("log",))]
        assert f"input {key}: adapter_config.json" in lines  # the second cloud got the file


async def test_an_input_missing_from_the_store_fails_the_launch_clearly(make_hammer) -> None:
    hammer = await make_hammer("[cloud.fake2]\nsteps = 3\ninterval = 0.01\n")
    tune = await ended(hammer, await run_cmd(hammer, ".finetune demo-lora demo"))
    import shutil
    shutil.rmtree(hammer.settings.artifacts_dir / tune.artifact_keys()["adapter"])
    job = await ended(hammer, await run_cmd(hammer, f'.infer adapter={tune.id} prompt="hi" cloud=fake2'))
    assert job.state == JobState.FAILED and job.error is not None
    assert "could not start the job on fake2" in job.error["message"]


async def test_cloud_option_names_an_enabled_cloud(make_hammer) -> None:
    hammer = await make_hammer()
    with pytest.raises(CommandError) as info:
        await run_cmd(hammer, ".finetune demo-lora demo cloud=mars")
    assert info.value.code == "no_cloud" and "fake" in info.value.message and "cloud=" in info.value.hint


async def test_plan_prices_the_job_and_an_expensive_one_waits_for_an_admin(make_hammer) -> None:
    hammer = await make_hammer(GPU_CATALOG + '[policy]\nrequire_approval_over_usd = 0.01\nadmins = ["web:boss"]\n')
    planned = await hammer.planner.plan(hammer.commands.parse(".finetune qwen-7b-lora alpaca-zh#1000", ALICE, CONV))
    cost = planned.to_dict()["policy"]
    assert cost["needs_approval"] is True and cost["estimated_cost_usd"] > 0.01
    assert "fake-a100" in cost["cost_basis"] and "tokens" in cost["cost_basis"]  # from the dataset's size
    assert planned.spec.price_per_hour == 3.67
    unknown = await hammer.planner.plan(hammer.commands.parse(".finetune qwen-7b-lora wiki_zh", ALICE, CONV))
    assert "max runtime" in unknown.cost.basis  # size unknown: the runtime limit is the ceiling
    assert unknown.cost.estimated_usd == pytest.approx(3.67 * 6)

    job = await run_cmd(hammer, ".finetune qwen-7b-lora alpaca-zh#1000")
    assert job.state == JobState.PENDING_APPROVAL
    with pytest.raises(CommandError) as info:
        await hammer.dispatch.approve_job(job.id, BOB)
    assert info.value.code == "denied"
    await hammer.dispatch.approve_job(job.id, BOSS)
    assert (await ended(hammer, job)).state == JobState.SUCCEEDED
    audit = [r for r in hammer.audit.read() if r.get("kind") == "approval"]
    assert audit and audit[-1]["actor"] == "web:boss" and audit[-1]["approved"] is True
    admin_job = await run_cmd(hammer, ".finetune qwen-7b-lora alpaca-zh#1000", BOSS)
    assert admin_job.state != JobState.PENDING_APPROVAL  # admins approve their own


def test_hammer_plan_json_shows_the_cost_decision(tmp_path: Path) -> None:
    config = tmp_path / "hammer.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\ndefault_cloud = "fake"\n'
                      '[plugins]\nmodules = ["tests.fakes.cloud"]\n[cloud.docker]\nenabled = false\n'
                      "[cloud.fake]\n" + GPU_CATALOG
                      + "[policy]\nrequire_approval_over_usd = 0.01\n")
    import json
    import os
    import sys
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "plan", "--json", ".finetune qwen-7b-lora wiki_zh"],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HAMMER_CONFIG": str(config)},
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["policy"]["needs_approval"] is True and out["policy"]["estimated_cost_usd"] > 0
    assert isinstance(out["policy"]["cost_basis"], str) and out["job"]["cloud"] == "fake"
    assert not (tmp_path / "data" / "hammer.db").exists()  # planning writes no store


async def test_the_cost_watchdog_stops_a_job_over_its_limit(make_hammer) -> None:
    hammer = await make_hammer(GPU_CATALOG + "[jobs]\nmax_cost_usd = 1.0\nmax_concurrent_per_user = 5\n")
    hammer.orchestrator._watchdog.cancel()
    job = await run_cmd(hammer, ".finetune qwen-7b-lora alpaca-zh#10 max_steps=1000000")
    assert job.spec.limits.max_cost_usd == 1.0 and job.spec.price_per_hour == 3.67
    await wait_for(lambda: job.state == JobState.RUNNING, 10)
    await hammer.orchestrator.check_watchdogs(time.time() + 3600)  # an hour at $3.67/h
    stored = await ended(hammer, job)
    assert stored.state == JobState.FAILED and stored.error and stored.error["kind"] == "cost"
    assert "$1.00" in stored.error["message"]


async def test_a_click_runs_the_verb_with_the_same_checks(make_hammer) -> None:
    hammer = await make_hammer("[cloud.fake]\nsteps = 400\ninterval = 0.05\n")
    job = await run_cmd(hammer, ".fakejob")
    web = hammer.chat["web"]
    answers = []

    async def respond(interaction, msg):  # what the clicking person alone sees
        answers.append((interaction.actor.user_id, msg))

    web.respond = respond
    for action in ("cancel", "approve"):
        await hammer.dispatch.handle_interaction(Interaction(BOB, CONV, action, job.id))
    assert [a[0] for a in answers] == ["bob", "bob"]
    assert "Only the person who started" in answers[0][1].title and "admin" in answers[1][1].title
    assert not (await hammer.store.get_job(job.id)).state.terminal
    await hammer.dispatch.handle_interaction(Interaction(BOB, CONV, "cancel", "not a job!"))
    assert answers[-1][1].level == "error" and "job id" in answers[-1][1].title
    await hammer.dispatch.handle_interaction(Interaction(ALICE, CONV, "cancel", job.id))
    assert (await ended(hammer, job)).state == JobState.CANCELLED


async def test_links_in_a_job_output_never_copy_host_files(make_hammer) -> None:
    hammer = await make_hammer()
    job = await ended(hammer, await run_cmd(hammer, ".fakejob mode=links"))
    assert job.state == JobState.SUCCEEDED
    stored = hammer.settings.artifacts_dir / "jobs" / job.id
    assert (stored / "adapter" / "adapter_config.json").is_file()
    assert not (stored / "adapter" / "leak.txt").exists() and not (stored / "adapter" / "etc").exists()
    assert not (stored / "loss_curve.png").exists() and "loss_curve" not in job.artifact_keys()
    hostname = Path("/etc/hostname").read_bytes()  # noqa: ASYNC240 - a test reading one small file
    assert all(p.read_bytes() != hostname for p in stored.rglob("*") if p.is_file())
    lines = [e.data["line"] for e in await hammer.store.events(job.id, types=("log",))]
    note = next(line for line in lines if "left out of the artifacts" in line)
    assert "output/leak.txt" in note and "output/etc" in note and "loss_curve.png" in note


def test_no_plugin_reads_a_clouds_settings_or_disk() -> None:
    found = []
    for path in (ROOT / "plugins").glob("*.py"):
        text = path.read_text()
        if re.search(r'cloud\["docker"\]|workspace/job\.json|workspace_root', text):
            found.append(path.name)
    assert not found


async def test_status_gives_fresh_links_and_uploads_lists_ones_own(make_hammer) -> None:
    hammer = await make_hammer()
    job = await ended(hammer, await run_cmd(hammer, ".fakejob"))
    answer = await hammer.dispatch.execute(f".status {job.id}", ALICE, CONV)
    adapter = dict(answer.fields)["Adapter"]
    assert "/artifacts/jobs/" in adapter and "sig=" in adapter and "exp=" in adapter
    mine = hammer.uploads.root / "web-alice"
    mine.mkdir(parents=True)
    (mine / "faq.jsonl").write_text("{}\n")
    assert "upload:faq.jsonl" in (await hammer.dispatch.execute(".uploads", ALICE, CONV)).text
    assert "no datasets" in (await hammer.dispatch.execute(".uploads", BOB, CONV)).text
