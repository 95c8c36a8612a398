"""A stand-in for the sandbox runner, for the Docker adapter's tests: it reads
/workspace/job.json like the real runner and behaves as `params["fake"]` says, printing
protocol events on stdout. No ms-swift, so the tests take seconds.

Modes: events (N progress events and a result), lines (N numbered lines, mixed protocol
and plain text, the last without a newline), sleep (progress until SIGTERM, then a clean
exit 143), stubborn (ignores SIGTERM), oom (allocates until the kernel kills it), probe
(reports what the sandbox allows: uid, capabilities, writable paths, network).
"""

import json
import os
import signal
import sys
import time


def emit(kind, **data):
    sys.stdout.write(json.dumps({"v": 1, "type": kind, "ts": time.time(), **data}) + "\n")
    sys.stdout.flush()


def writable(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return True
    except OSError:
        return False


def status_field(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def main():
    with open("/workspace/job.json") as f:
        spec = json.load(f)
    params = spec.get("params", {})
    mode = params.get("fake", "events")
    n = int(params.get("n", 5))
    interval = float(params.get("interval", 0.0))
    emit("status", phase="starting", job_id=spec["id"], argv=spec["argv"])
    if mode == "events":
        for step in range(1, n + 1):
            emit("progress", step=step, max_steps=n, loss=round(2.0 / step, 4))
            time.sleep(interval)
        emit("result", ok=True, summary={"steps": n})
    elif mode == "lines":
        for i in range(n):
            if i == 31:
                sys.stdout.write("long line " + "y" * 40000 + "\n")
                sys.stdout.flush()
            elif i % 3 == 0:
                emit("progress", step=i, max_steps=n)
            else:
                sys.stdout.write(f"plain line {i} \u00e9\u00e8 " + "x" * (i * 50) + "\n")
                sys.stdout.flush()
            time.sleep(interval)
        sys.stdout.write("last line without newline")
        sys.stdout.flush()
    elif mode in ("sleep", "stubborn"):
        def on_term(signum, frame):
            emit("error", kind="internal", message="cancelled", hint="")
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term if mode == "sleep" else signal.SIG_IGN)
        deadline = time.time() + 300
        step = 0
        while time.time() < deadline:
            step += 1
            emit("progress", step=step)
            time.sleep(0.1)
    elif mode == "oom":
        hog = []
        for _ in range(4096):
            hog.append(bytearray(8 * 1024 * 1024))
            time.sleep(0.005)
        emit("result", ok=True, summary={"survived": len(hog)})
    elif mode == "probe":
        os.makedirs("/workspace/output", exist_ok=True)
        with open("/workspace/output/hello.txt", "w") as f:
            f.write("from the sandbox\n")
        mounts = {m["target"]: writable(os.path.join(m["target"], ".probe")) for m in spec.get("mounts", [])}
        emit("status", phase="probe", uid=os.getuid(), gid=os.getgid(), cap_eff=status_field("CapEff"),
             no_new_privs=status_field("NoNewPrivs"), root_writable=writable("/etc/hammer-probe"),
             tmp_writable=writable("/tmp/probe"), workspace_writable=writable("/workspace/probe"),
             cache_writable=writable("/cache/probe"), mounts_writable=mounts,
             interfaces=sorted(os.listdir("/sys/class/net")),
             secret=os.environ.get("HAMMER_TEST_SECRET", ""), env_job=os.environ.get("HAMMER_JOB_ID", ""))
        emit("result", ok=True, summary={})
    sys.exit(int(params.get("exit", 0)))


main()
