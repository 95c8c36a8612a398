"""A stand-in for the sandbox runner: writes protocol event lines to a file, then exits.

Run as `python -m tests.fakes.fake_job DIR STEPS INTERVAL MODE`. It is a real separate
process, so it keeps running while a test stops one gateway and starts another.
MODE: ok | fail | oom | hang (one status, then silence) | crash (exits without a result) |
links (succeeds, but its output holds symbolic links to host files) | leak (prints its HF_TOKEN
secret and fails with it in the error).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    workdir, steps, interval, mode = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    out = (workdir / "events.jsonl").open("a", encoding="utf-8")

    def emit(event_type: str, **data: object) -> None:
        out.write(json.dumps({"v": 1, "type": event_type, "ts": time.time(), **data}) + "\n")
        out.flush()

    def finish(code: int) -> int:
        out.close()
        (workdir / "exit_code.tmp").write_text(str(code))
        os.replace(workdir / "exit_code.tmp", workdir / "exit_code")
        return code

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(finish(143)))
    emit("status", phase="checking", device="cpu")
    inputs = workdir / "inputs"
    for key in json.loads((workdir / "inputs.json").read_text()) if (workdir / "inputs.json").exists() else []:
        found = sorted(p.relative_to(inputs / key).as_posix() for p in (inputs / key).rglob("*") if p.is_file()) \
            if (inputs / key).is_dir() else ([key] if (inputs / key).is_file() else [])
        if not found:
            emit("error", kind="internal", message=f"input {key} is missing", hint="")
            emit("result", ok=False)
            return finish(1)
        emit("log", stream="stdout", line=f"input {key}: {', '.join(found)}")
    if mode == "hang":
        time.sleep(3600)
    emit("status", phase="running")
    out.write("plain output from the trainer\n")
    out.flush()
    for step in range(1, steps + 1):
        time.sleep(interval)
        emit("progress", step=step, max_steps=steps, epoch=round(step / steps * 2, 3),
             loss=round(2.0 / (1 + 0.3 * step), 4), lr=1e-4, elapsed_s=step * interval,
             eta_s=(steps - step) * interval, memory_gib=0.5)
        if mode == "oom" and step == steps // 2:
            return finish(137)
        if mode == "crash" and step == steps // 2:
            return finish(1)
    if mode == "leak":  # a job that prints its token and fails with it in the error
        token = os.environ.get("HAMMER_SECRET_HF_TOKEN", "")
        out.write(f"debug: using token {token} for the hub\n")
        emit("error", kind="auth", message=f"the hub refused token {token}", hint=f"check {token}")
        emit("result", ok=False)
        return finish(1)
    if mode == "fail":
        emit("error", kind="dataset", message="line 3 of data.jsonl is not JSON", hint="Fix line 3.")
        emit("result", ok=False)
        return finish(2)
    (workdir / "output").mkdir(exist_ok=True)
    (workdir / "output" / "adapter_config.json").write_text("{}")
    if mode == "links":  # a hostile job: links out of its output, to host files
        os.symlink("/etc/hostname", workdir / "output" / "leak.txt")
        os.symlink("/etc", workdir / "output" / "etc")
        os.symlink("/etc/hostname", workdir / "loss_curve.png")
    else:
        (workdir / "loss_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    emit("sample", prompt="Say hi", response="hi")
    emit("artifact", name="adapter", path="output")
    emit("artifact", name="loss_curve", path="loss_curve.png")
    emit("result", ok=True, summary={"final_loss": 0.5, "steps": steps})
    return finish(0)


if __name__ == "__main__":
    sys.exit(main())
