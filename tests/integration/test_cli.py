"""The `hammer` command line, run as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import hammer_toml

ROOT = Path(__file__).resolve().parents[2]


def hammer(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)


async def ahammer(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def test_plan_json_success_shape() -> None:
    r = hammer("plan", "--json", ".finetune demo-lora demo epochs=2")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] is True
    assert d["command"]["verb"] == "finetune" and d["command"]["args"]["epochs"] == 2.0
    job = d["job"]
    assert {"task", "argv", "image", "resources", "limits"} <= set(job)
    assert job["argv"][:2] == ["swift", "sft"] and "--tuner_type" in job["argv"]
    assert "--train_type" not in job["argv"]


def test_plan_json_user_error_exits_2() -> None:
    r = hammer("plan", "--json", ".finetune demo-lora demo epoch=2")
    assert r.returncode == 2
    d = json.loads(r.stdout)
    assert d == {"ok": False, "error": {"code": "unknown_key", "message": d["error"]["message"],
                                        "hint": d["error"]["hint"]}}
    assert "epochs=" in d["error"]["hint"]


def test_plan_text_and_help() -> None:
    r = hammer("plan", ".finetune qwen-7b-lora alpaca-zh")
    assert r.returncode == 0 and "swift sft" in r.stdout
    for sub in ("serve", "plan", "run", "jobs", "logs", "cancel", "doctor", "estimate"):
        h = hammer(sub, "--help")
        assert h.returncode == 0 and "usage: hammer" in h.stdout and len(h.stdout) > 200, sub
    assert "check" in hammer("config", "--help").stdout


def test_no_subcommand_prints_help_and_exits_2() -> None:
    r = hammer()
    assert r.returncode == 2 and "serve" in r.stdout


async def test_run_jobs_logs_cancel_against_a_running_gateway(make_hammer, tmp_path: Path) -> None:
    h = await make_hammer("[cloud.fake]\nsteps = 15\ninterval = 0.05\n")
    cfg = tmp_path / "cli.toml"
    cfg.write_text(hammer_toml(h.data_dir).replace("port = 0", f"port = {h.port}"))
    code, out, err = await ahammer("run", "--config", str(cfg), ".fakejob")
    assert code == 0, err
    assert "step 15/15" in out and "succeeded" in out and "adapter: http://" in out
    job_id = out.split()[1]
    code, out, _ = await ahammer("jobs", "--config", str(cfg), "--json")
    assert code == 0 and json.loads(out)[0]["id"] == job_id
    code, out, _ = await ahammer("logs", "--config", str(cfg), job_id)
    assert code == 0 and "plain output from the trainer" in out and f"job {job_id} succeeded" in out
    code, out, err = await ahammer("run", "--config", str(cfg), ".fakejob mode=fail")
    assert code == 1 and "line 3 of data.jsonl" in out
    code, out, err = await ahammer("run", "--config", str(cfg), "--detach", ".fakejob mode=hang")
    hang_id = out.split()[1]
    code, out, err = await ahammer("cancel", "--config", str(cfg), hang_id)
    assert code == 0 and "cancelled" in out, err
    code, out, err = await ahammer("run", "--config", str(cfg), ".fintune x")
    assert code == 2 and "Unknown command" in err and ".finetune" in err


def test_run_without_a_gateway_says_how_to_start_one(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\n[http]\nport = 9\n')
    r = hammer("run", "--config", str(cfg), ".jobs")
    assert r.returncode == 2 and "hammer serve" in r.stderr and "Traceback" not in r.stderr
    r = hammer("jobs", "--config", str(cfg))
    assert r.returncode == 2 and "no store" in r.stderr


def test_doctor_reports_problems_with_fixes(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path}/data"\n[chat.web]\n[chat.nosuch]\n')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hammer.db").write_text("garbage" * 200)
    r = hammer("doctor", "--config", str(cfg))
    assert r.returncode == 1
    assert "not a hammer database" in r.stdout and "chat.nosuch: no such adapter" in r.stdout
    assert "fix:" in r.stdout and "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("args", [["logs"], ["cancel"], ["plan"]])
def test_missing_arguments_are_usage_errors(args: list[str]) -> None:
    r = hammer(*args)
    assert r.returncode == 2 and "usage: hammer" in r.stderr


def test_estimate_recommends_several_big_gpus_for_a_70b_lora() -> None:
    r = hammer("estimate", "--json", "llama3-70b", "--tuner", "lora")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    rec = plan["recommendation"]
    assert rec is not None and 2 <= rec["gpu_count"] <= 8 and rec["gpu_memory_gib"] >= 40
    assert plan["request"]["gpus"] == rec["gpu_count"] and any("no GPU count was given" in n for n in plan["notes"])
    fixed = json.loads(hammer("estimate", "--json", "llama3-70b", "--tuner", "lora", "--gpus", "1").stdout)
    assert fixed["recommendation"] is None  # an explicit count is respected


def test_estimate_into_a_closed_pipe_prints_no_traceback() -> None:
    import os
    for extra in ([], ["--json"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before anything is written, as after `| head -1`
        try:
            r = subprocess.run([sys.executable, "-m", "gateway.cli", "estimate", "llama3-70b", *extra], cwd=ROOT,
                               stdout=write_end, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(write_end)
        assert b"Traceback" not in r.stderr and b"BrokenPipe" not in r.stderr, r.stderr
        assert r.returncode in (0, 1)  # rich exits 1 on a closed pipe, quietly
