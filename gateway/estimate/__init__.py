"""GPU memory estimator, instance picker and cost model: know before you launch.

    est = estimate("qwen-7b", tuner="lora", max_length=2048)   # per-GPU breakdown
    plan = pick(est, clouds=["aws", "gcp"])                    # cheapest fit + alternatives
    require_fit(est, instance)                                 # the orchestrator's gate
    oom_hint(est, "A10G", 22888)                               # advice after an OOM

Everything here is pure and synchronous (except `local_host_instance`, which runs
nvidia-smi): call it through `asyncio.to_thread` from the event loop if it matters.
The model, its sources and its limits: docs/estimate.md.
"""

from gateway.estimate.cli import add_cli, plan_from_args, run_cli
from gateway.estimate.hints import local_host_instance, oom_hint, oom_hint_for_job, parse_nvidia_smi
from gateway.estimate.inputs import custom_arch, estimate_from_params
from gateway.estimate.memory import (
    BREAKDOWN_KEYS,
    GIB,
    Estimate,
    EstimateError,
    estimate,
)
from gateway.estimate.picker import (
    DEFAULT_HEADROOM,
    Alternative,
    InstanceChoice,
    Plan,
    available_bytes,
    choose,
    fits,
    pick,
    require_fit,
)
from gateway.estimate.throughput import flops_per_token, gpu_spec, tokens_per_second

__all__ = [
    "BREAKDOWN_KEYS", "DEFAULT_HEADROOM", "GIB", "Alternative", "Estimate", "EstimateError",
    "InstanceChoice", "Plan", "add_cli", "available_bytes", "choose", "custom_arch", "estimate",
    "estimate_from_params", "fits", "flops_per_token", "gpu_spec", "local_host_instance", "oom_hint",
    "oom_hint_for_job", "parse_nvidia_smi", "pick", "plan_from_args", "require_fit", "run_cli",
    "tokens_per_second",
]
