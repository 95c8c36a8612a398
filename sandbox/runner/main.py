"""The job's life inside the sandbox, step by step, as events on stdout.

checking (environment) -> preparing (demo model/dataset) -> validating (local datasets)
-> running (ms-swift, with progress from logging.jsonl) -> sampling -> reporting ->
`result`. Any failure ends with `error` {kind, message, hint} then `result` {ok: false};
SIGTERM ends with `status` {phase: cancelled} and exit 143.

Exit codes: 0 done, 1 failed, 2 dataset rejected before training, 124 runner time limit,
143 cancelled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.runner import artifacts as arts
from sandbox.runner import demo, egress
from sandbox.runner.child import Child
from sandbox.runner.classify import classify
from sandbox.runner.dataset_check import DatasetProblem, validate_file
from sandbox.runner.envcheck import check_environment
from sandbox.runner.events import Emitter
from sandbox.runner.job import DEMO_DATASET_ITEMS, Job, load_job, parse_prepare
from sandbox.runner.report import build_report, plot_loss_curve, write_report
from sandbox.runner.sample import choose_prompts, read_results, run_samples
from sandbox.runner.swift_progress import LogTail, ProgressTracker, find_logging_files

EXIT_OK, EXIT_FAILED, EXIT_DATASET, EXIT_TIMEOUT, EXIT_CANCELLED = 0, 1, 2, 124, 143
BUG_HINT = "this is a bug in hammer's sandbox runner; tell an admin the job id"


def runner_env(needs_network: bool = False, job_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ms-swift: writable caches even on a read-only root.

    The image says HF_HUB_OFFLINE=1 (jobs have no network); a job that was given a network
    to download gets it switched off unless its own env says otherwise.
    """
    cache = Path(os.environ.get("HAMMER_CACHE", "/cache"))
    defaults = {
        "HF_HOME": str(cache / "hf"),
        "MODELSCOPE_CACHE": str(cache / "modelscope"),
        "MPLCONFIGDIR": "/tmp/mpl",
        "HF_HUB_OFFLINE": "0" if needs_network else "1",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env = {**defaults, **os.environ}
    if needs_network and "HF_HUB_OFFLINE" not in (job_env or {}):
        env["HF_HUB_OFFLINE"] = "0"
    # The demo builder runs as `python3 -m sandbox.runner.demo`: make this package importable
    # for children wherever the runner itself was imported from (image, checkout, wheel).
    package_root = str(Path(__file__).resolve().parents[2])
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *[p for p in paths if p]])
    home = Path(env.get("HOME") or "/tmp/home")
    if not os.access(home if home.exists() else home.parent, os.W_OK):
        env["HOME"] = "/tmp/home"
    for key in ("HOME", "MPLCONFIGDIR", "HF_HOME", "MODELSCOPE_CACHE"):
        try:
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
    return env


class Runner:
    def __init__(self, emitter: Emitter) -> None:
        self.emit = emitter
        self.child: Child | None = None
        self.cancelled = False
        self.started = time.time()
        self.environment: dict[str, Any] = {}
        self.tracker = ProgressTracker()
        self.egress: asyncio.AbstractServer | None = None

    def set_child(self, child: Child | None) -> None:
        self.child = child
        if child is not None and self.cancelled:
            child.terminate()

    def on_sigterm(self) -> None:
        self.cancelled = True
        if self.child is not None:
            self.child.terminate()

    async def run(self, job_path: Path | None = None) -> int:
        try:
            job = load_job(job_path)
        except (OSError, ValueError) as exc:
            return self.fail("internal", f"cannot read the job file: {exc}", BUG_HINT)
        socket_path = os.environ.get("HAMMER_EGRESS_SOCKET")
        if socket_path:  # no network here: downloads go through hammer's allow-listing proxy
            try:
                self.egress = await egress.forward(socket_path)
            except OSError as exc:
                return self.fail("internal", f"cannot open the download proxy on 127.0.0.1: {exc}", BUG_HINT)
        self.emit.status("starting", job_id=job.id, argv=list(job.argv))
        job_env = job.spec.get("env") if isinstance(job.spec.get("env"), dict) else {}
        env = runner_env(bool(job.spec.get("needs_network")), job_env)
        cache = Path(env["HF_HOME"]).parent
        self.environment = await check_environment(job.workspace, cache)
        self.emit.status("checking", **self.environment)
        for entry in job.params.get("prepare", []):
            if self.cancelled:
                return self.cancel()
            if (code := await self.prepare(str(entry), env, job)) is not None:
                return code
        if (code := self.check_inputs(job)) is not None:
            return code
        if (code := self.validate(job)) is not None:
            return code
        if self.cancelled:
            return self.cancel()
        self.emit.status("running", command=" ".join(job.argv[:2]))
        outcome = await self.run_main(job, env)
        if outcome is not None:
            return outcome
        return await self.finish(job, env)

    async def prepare(self, entry: str, env: dict[str, str], job: Job) -> int | None:
        try:
            kind, path = parse_prepare(entry)
        except ValueError as exc:
            return self.fail("internal", str(exc), BUG_HINT)
        self.emit.status("preparing", what=kind, path=str(path))
        if kind != "demo_model":
            try:
                if kind == "prompts":  # infer: the prompts travel in params, never in argv
                    rows = [
                        {"messages": [{"role": "user", "content": str(p)}]}
                        for p in job.params.get("prompts", [])
                    ]
                    await asyncio.to_thread(demo.write_jsonl, path, rows)
                else:
                    await asyncio.to_thread(demo.ensure_dataset, path, DEMO_DATASET_ITEMS[kind])
            except OSError as exc:
                return self.fail(
                    "internal",
                    f"cannot write {path}: {exc}",
                    "the job's workspace and cache volumes must be writable by uid 1000; tell an admin",
                )
            return None
        self.child = Child(
            [sys.executable, "-m", "sandbox.runner.demo", "model", str(path)],
            cwd=job.workspace,
            env=env,
            emitter=self.emit,
        )
        result = await self.child.run(limit_s=1800)
        self.child = None
        if result.cancelled:
            return self.cancel()
        if result.returncode != 0:
            failure = classify(result.returncode, result.tail)
            kind_ = failure.kind if failure.kind == "oom" else "internal"
            return self.fail(
                kind_,
                f"making the demo model failed: {failure.message}",
                failure.hint if kind_ == "oom" else "check that the cache volume is writable; " + BUG_HINT,
            )
        return None

    def check_inputs(self, job: Job) -> int | None:
        """Earlier jobs' outputs this job builds on: each must be where the cloud put it
        (read-only, fetched from the artifact store) before ms-swift starts."""
        for key, path in job.inputs.items():
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else ([path] if path.is_file() else [])
            if not files:
                return self.fail("internal", f"the input {key} is not in the sandbox at {path}",
                                 "the cloud adapter did not deliver it; run the command again, or tell an admin")
            size = sum(p.stat().st_size for p in files)
            self.emit.log("stderr", f"hammer: input {key}: {len(files)} file(s), {size:,} bytes")
        return None

    def validate(self, job: Job) -> int | None:
        files = job.local_datasets()
        if not files:
            return None
        self.emit.status("validating", files=[job.relative(p) for p in files])
        for path in files:
            try:
                rows = validate_file(path, job.dataset_kind)
            except DatasetProblem as problem:
                where = {"file": job.relative(path), problem.unit: problem.line}
                self.emit.error("dataset", problem.message, problem.hint, **where)
                self.emit.emit("result", ok=False, summary={"error": "dataset", **where})
                return EXIT_DATASET
            self.emit.log("stderr", f"hammer: {job.relative(path)}: {rows} rows look fine")
        return None

    def poll_logging(self, job: Job, tails: dict[Path, LogTail]) -> None:
        for path in find_logging_files(job.output_dir, self.started):
            tails.setdefault(path, LogTail(path))
        for tail in tails.values():
            for record in tail.read_new():
                event = self.tracker.feed(record)
                if event is not None:
                    self.emit.emit(event[0], **event[1])

    async def run_main(self, job: Job, env: dict[str, str]) -> int | None:
        tails: dict[Path, LogTail] = {}
        self.child = Child(job.argv, cwd=job.workspace, env=env, emitter=self.emit)
        try:
            result = await self.child.run(
                poll=lambda: self.poll_logging(job, tails), limit_s=job.max_runtime_s
            )
        except FileNotFoundError:
            return self.fail("internal", f"the program {job.argv[0]!r} is not in this image", BUG_HINT)
        finally:
            self.child = None
        if result.cancelled and not result.timed_out:
            return self.cancel()
        if result.timed_out:
            self.fail_outputs(job, {"kind": "timeout"})
            return self.fail(
                "timeout",
                f"the job ran longer than its limit of {job.max_runtime_s:.0f} s",
                "train fewer steps or epochs, or ask an admin for a longer time limit",
            )
        if result.returncode != 0:
            failure = classify(result.returncode, result.tail)
            self.fail_outputs(job, {"kind": failure.kind, "message": failure.message})
            return self.fail(failure.kind, failure.message, failure.hint, exit_code=result.returncode)
        return None

    async def finish(self, job: Job, env: dict[str, str]) -> int:
        samples: list[dict[str, str]] = []
        checkpoint = arts.last_checkpoint(job, self.tracker)
        if job.is_training and checkpoint is not None:
            prompts = choose_prompts(job, job.local_datasets())
            self.emit.status("sampling", checkpoint=job.relative(checkpoint), prompts=len(prompts))
            samples = await run_samples(
                job, checkpoint, prompts, emitter=self.emit, env=env, on_child=self.set_child
            )
        elif job.command == "infer":
            samples = [s for f in arts.result_files(job, self.started) for s in read_results(f)][:3]
        if self.cancelled:
            return self.cancel()
        for sample in samples:
            self.emit.emit("sample", **sample)
        self.emit.status("reporting")
        found = self.write_outputs(job, ok=True, samples=samples, checkpoint=checkpoint)
        for item in found:
            self.emit.artifact(item["name"], item["path"])
        losses = self.tracker.losses
        summary = {
            "task": job.command,
            "final_loss": losses[-1][1] if losses else None,
            "steps": self.tracker.last_progress.get("step"),
            "max_steps": self.tracker.last_progress.get("max_steps"),
            "duration_s": round(time.time() - self.started, 2),
            "samples": len(samples),
            "artifacts": {a["name"]: a["path"] for a in found},
        }
        self.emit.emit("result", ok=True, summary=summary)
        return EXIT_OK

    def write_outputs(
        self,
        job: Job,
        *,
        ok: bool,
        samples: list[dict[str, str]] | None = None,
        checkpoint: Path | None = None,
        error: dict[str, Any] | None = None,
    ) -> list[dict[str, str]]:
        """loss_curve.png and report.json in the workspace; returns the artifact list."""
        curve = job.workspace / "loss_curve.png"
        try:
            drawn = plot_loss_curve(
                curve, self.tracker.losses, self.tracker.evals, title=f"{' '.join(job.argv[:2])} loss"
            )
        except Exception as exc:  # a plotting problem must not hide the training result
            self.emit.log("stderr", f"hammer: could not draw the loss curve: {exc}")
            drawn = False
        found = arts.collect(job, self.tracker, checkpoint, started=self.started, loss_curve=drawn)
        report = build_report(
            job_id=job.id,
            task=job.command,
            ok=ok,
            duration_s=time.time() - self.started,
            tracker=self.tracker,
            samples=samples or [],
            artifacts=found,
            environment=self.environment,
            error=error,
        )
        write_report(job.workspace / "report.json", report)
        return found

    def fail_outputs(self, job: Job, error: dict[str, Any]) -> None:
        """Even a failed job gets its report, loss curve so far and logs."""
        try:
            for item in self.write_outputs(job, ok=False, error=error):
                self.emit.artifact(item["name"], item["path"])
        except OSError as exc:
            self.emit.log("stderr", f"hammer: could not write the report: {exc}")

    def fail(self, kind: str, message: str, hint: str, exit_code: int | None = None) -> int:
        self.emit.error(kind, message, hint, **({"exit_code": exit_code} if exit_code is not None else {}))
        self.emit.emit(
            "result", ok=False, summary={"error": kind, "duration_s": round(time.time() - self.started, 2)}
        )
        return EXIT_TIMEOUT if kind == "timeout" else EXIT_FAILED

    def cancel(self) -> int:
        self.emit.status("cancelled", duration_s=round(time.time() - self.started, 2))
        return EXIT_CANCELLED


async def amain(emitter: Emitter | None = None, job_path: Path | None = None) -> int:
    runner = Runner(emitter or Emitter())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.on_sigterm)
    try:
        return await runner.run(job_path)
    except Exception as exc:  # the last line of defence: always end with error + result
        return runner.fail("internal", f"{type(exc).__name__}: {exc}", BUG_HINT)
