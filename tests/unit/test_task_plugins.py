"""Task plugins without ms-swift: what each command turns into, and every refusal.

ms-swift's own parser checks these argv in test_argv_swift.py (marker `swift`); here we
check hammer's side of the contract: the demo runs offline on the CPU, free text cannot
become a flag, uploads and prior jobs are mounted read-only, resources come from the
config, and every user mistake is a CommandError that says what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.commands import CommandError
from gateway.model import JobState, Mount
from plugins.argv import Argv
from tests.unit.taskctx import PLUGINS, build, make_ctx, make_prior_job, table


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    return make_ctx(tmp_path)


def flag(argv: tuple[str, ...], name: str) -> str:
    """The value after `--name` (fails when the flag is absent)."""
    i = argv.index(f"--{name}")
    return argv[i + 1]


def refused(text: str, ctx: Any) -> CommandError:
    with pytest.raises(CommandError) as info:
        build(text, ctx)
    err = info.value
    assert err.message and err.hint, "every refusal says what was wrong and what to do"
    return err


def test_every_plugin_registers_its_verbs() -> None:
    verbs: dict[str, tuple[str, ...]] = {}
    for plugin in PLUGINS:
        plugin.hammer_commands(lambda spec: verbs.__setitem__(spec.verb, spec.aliases))
    assert verbs == {"finetune": ("train", "sft"), "pretrain": ("pt",), "align": ("rlhf",),
                     "infer": ("ask",), "export": (), "eval": ("evaluate", "bench"), "download": ("fetch",)}
    t = table()
    for verb in verbs:
        assert t.specs[verb].build_job is not None
        assert t.specs[verb].examples, f"{verb} needs an example for .help"


def test_demo_finetune_runs_offline_on_the_cpu(ctx: Any) -> None:
    spec = build("finetune demo-lora demo", ctx)
    argv = spec.argv
    assert argv[:2] == ("swift", "sft")
    assert (flag(argv, "model"), flag(argv, "model_type"), flag(argv, "template")) == \
        ("/cache/models/demo", "qwen2", "qwen2_5")
    assert flag(argv, "check_model") == "false"
    assert flag(argv, "dataset") == "/cache/datasets/demo.jsonl"
    assert flag(argv, "tuner_type") == "lora" and "--train_type" not in argv
    assert flag(argv, "output_dir") == "/workspace/output"
    assert flag(argv, "logging_steps") == "1" and flag(argv, "report_to") == "tensorboard"
    assert int(flag(argv, "max_length")) >= 512
    assert spec.params["prepare"] == ["demo_model:/cache/models/demo",
                                      "demo_dataset:/cache/datasets/demo.jsonl"]
    assert spec.needs_network is False and spec.secrets == ()
    assert spec.resources.gpu_count == 0
    assert spec.id == ctx.job_id and spec.task == "sft" and spec.model == "demo"
    assert spec.datasets == ("demo",)


def test_resources_and_limits_come_from_the_config(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, '[jobs]\nmemory_gib = 3\ncpus = 1.5\nmax_runtime = "2h"\nidle_timeout = "5m"\n'
                             'image = "hammer-sandbox:test"\n')
    spec = build("finetune demo-lora demo", ctx)
    assert (spec.resources.memory_gib, spec.resources.cpus) == (3.0, 1.5)
    assert (spec.limits.max_runtime_s, spec.limits.idle_timeout_s) == (7200.0, 300.0)
    assert spec.image == "hammer-sandbox:test"


def test_hub_models_need_the_network_and_a_token_name(ctx: Any) -> None:
    spec = build("finetune qwen-7b-lora alpaca-zh gpus=2", ctx)
    assert flag(spec.argv, "model") == "Qwen/Qwen2.5-7B-Instruct"
    assert flag(spec.argv, "dataset") == "AI-ModelScope/alpaca-gpt4-data-zh"
    assert flag(spec.argv, "torch_dtype") == "bfloat16"
    assert flag(spec.argv, "gradient_checkpointing") == "true"
    lora = (flag(spec.argv, "lora_rank"), flag(spec.argv, "lora_alpha"), flag(spec.argv, "target_modules"))
    assert lora == ("8", "32", "all-linear")
    assert spec.needs_network and spec.secrets == ("MODELSCOPE_API_TOKEN",)
    assert "HF_TOKEN" not in " ".join(spec.argv)
    assert spec.env["NPROC_PER_NODE"] == "2" and spec.resources.gpu_count == 2
    assert spec.env["MODELSCOPE_CACHE"].startswith("/cache/")
    hf = build("finetune qwen-7b-lora alpaca-en hub=hf", ctx)
    assert flag(hf.argv, "use_hf") == "true" and flag(hf.argv, "dataset") == "vicgalle/alpaca-gpt4"
    assert hf.secrets == ("HF_TOKEN",)


def test_tuners(ctx: Any) -> None:
    full = build("finetune qwen-7b-full alpaca-zh", ctx).argv
    assert flag(full, "tuner_type") == "full" and "--lora_rank" not in full
    qlora = build("finetune qwen-7b alpaca-zh tuner=qlora", ctx)
    assert (flag(qlora.argv, "quant_method"), flag(qlora.argv, "quant_bits")) == ("bnb", "4")
    assert qlora.params["tuner"] == "qlora" and qlora.params["quant_bits"] == 4


@pytest.mark.parametrize("text", [
    'finetune demo-lora demo system="--output_dir=/etc"',
    'finetune demo-lora demo system="x --output_dir /etc"',
    'infer demo prompt="hi" system="--output_dir=/etc"',
])
def test_free_text_is_one_element(text: str, ctx: Any) -> None:
    argv = build(text, ctx).argv
    systems = [a for a in argv if a.startswith("--system")]
    assert len(systems) == 1 and systems[0].startswith("--system=")
    assert argv.count("--output_dir") <= 1
    assert "/etc" not in [a for a in argv if not a.startswith("--system=")]


def test_prompt_never_enters_argv(ctx: Any) -> None:
    spec = build('infer demo prompt="--output_dir=/etc; rm -rf /"', ctx)
    assert not any("rm -rf" in a or a == "--output_dir=/etc" for a in spec.argv)
    assert spec.params["prompts"] == ["--output_dir=/etc; rm -rf /"]
    assert "prompts:/workspace/prompts.jsonl" in spec.params["prepare"]
    assert flag(spec.argv, "val_dataset") == "/workspace/prompts.jsonl"


def test_sample_prompt_for_after_training(ctx: Any) -> None:
    spec = build('finetune demo-lora demo prompt="What is 2+2?"', ctx)
    assert spec.params["sample_prompts"] == ["What is 2+2?"]
    assert "What is 2+2?" not in " ".join(spec.argv)


def test_argv_builder_keeps_dash_values_attached() -> None:
    argv = Argv("swift", "sft").opt("seed", -1).opt("lr", 0.0001).opt("flag", True).opt("none", None)
    argv.text("system", "--x")
    assert argv.as_tuple() == ("swift", "sft", "--seed=-1", "--lr", "0.0001", "--flag", "true",
                               "--system=--x")
    with pytest.raises(ValueError):
        Argv().opt("list", ["a", "-b"])


def test_uploaded_dataset_is_mounted_read_only_and_validated(ctx: Any) -> None:
    spec = build("finetune demo-lora upload:faq.jsonl#20", ctx)
    assert flag(spec.argv, "dataset") == "/data/faq.jsonl#20"
    assert spec.mounts == (Mount(str(ctx.uploads_dir / "faq.jsonl"), "/data/faq.jsonl", True),)
    assert spec.params["validate_datasets"] == ["/data/faq.jsonl"]
    assert spec.needs_network is False


def test_align_methods_and_their_data(ctx: Any) -> None:
    dpo = build("align demo-lora demo", ctx)
    assert dpo.argv[:2] == ("swift", "rlhf") and flag(dpo.argv, "rlhf_type") == "dpo"
    assert flag(dpo.argv, "dataset") == "/cache/datasets/demo_preference.jsonl"
    assert "demo_preference_dataset:/cache/datasets/demo_preference.jsonl" in dpo.params["prepare"]
    kto = build("align demo-lora demo method=kto", ctx)
    assert flag(kto.argv, "dataset") == "/cache/datasets/demo_kto.jsonl"
    simpo = build("align qwen-7b-lora dpo-emoji method=simpo gamma=0.5 beta=2", ctx)
    assert (flag(simpo.argv, "simpo_gamma"), flag(simpo.argv, "beta")) == ("0.5", "2")
    assert float(flag(simpo.argv, "learning_rate")) == 5e-5


def test_megatron_sft(ctx: Any) -> None:
    spec = build("finetune llama3-70b-lora alpaca-en megatron=true tp=4 pp=2 sp=true gpus=16", ctx)
    argv = spec.argv
    assert argv[:2] == ("megatron", "sft")
    assert (flag(argv, "tensor_model_parallel_size"), flag(argv, "pipeline_model_parallel_size"),
            flag(argv, "sequence_parallel")) == ("4", "2", "true")
    assert flag(argv, "global_batch_size") == str(1 * 16 * 2)
    assert "--learning_rate" not in argv and flag(argv, "lr") == "0.0001"
    assert spec.params["tp"] == 4 and spec.params["pp"] == 2 and spec.resources.gpu_count == 16
    assert build("finetune qwen-7b-lora alpaca-zh megatron=true tp=2 pp=2", ctx).resources.gpu_count == 4


@pytest.mark.parametrize("text,code,words", [
    ("finetune qwen-7bb-lora demo", "unknown_model", "qwen-7b"),
    ("finetune demo-lora alpacca-zh", "unknown_dataset", "alpaca-zh"),
    ("finetune qwen-7b-qlora demo tuner=full", "bad_combination", "qlora"),
    ("finetune demo-qlora demo", "bad_combination", "GPU"),
    ("finetune demo-full demo rank=4", "bad_combination", "rank"),
    ("finetune demo-lora demo max_length=4096", "out_of_range", "512"),
    ("finetune qwen-7b-lora demo tp=2", "bad_combination", "megatron=true"),
    ("finetune qwen-7b-lora demo megatron=true tp=2 pp=2 gpus=6", "bad_combination", "gpus=4"),
    ("finetune qwen-7b-lora demo megatron=true sp=true", "bad_combination", "tp"),
    ("finetune qwen-7b-qlora demo megatron=true tp=2", "bad_combination", "QLoRA"),
    ("finetune demo-lora demo megatron=true gpus=0", "bad_combination", "GPU"),
    ("finetune qwen-7b-lora demo megatron=true epochs=1.5", "bad_value", "epochs"),
    ("finetune demo-lora upload:missing.jsonl", "upload_missing", "missing.jsonl"),
    ("finetune demo-lora upload:notes.txt", "bad_dataset_file", "jsonl"),
    ("align demo-lora alpaca-zh", "dataset_kind", "preference"),
    ("align qwen-7b-lora dpo-emoji method=kto", "dataset_kind", "kto"),
    ("align demo-lora demo method=dpo gamma=1", "bad_combination", "simpo"),
    ("finetune qwen-7b-lora hh-rlhf-cn hub=hf", "not_on_hub", "modelscope"),
    ('infer prompt="hi"', "missing_argument", "MODEL"),
    ('infer adapter=nosuchjob prompt="hi"', "job_not_found", "nosuchjob"),
    ("export", "missing_argument", "JOBID"),
    ("export model=qwen-7b", "nothing_to_do", "bits"),
    ("export model=qwen-7b bits=8 method=awq", "bad_combination", "gptq"),
    ("export model=qwen-7b method=gptq", "missing_argument", "bits"),
    ("export model=demo bits=4 method=bnb gpus=0", "bad_combination", "GPU"),
    ("export model=qwen-7b merge=true", "bad_combination", "merge"),
    ("download demo", "nothing_to_do", "hub"),
])
def test_refusals(text: str, code: str, words: str, ctx: Any) -> None:
    err = refused(text, ctx)
    assert err.code == code, (err.code, err.message)
    assert words.lower() in (err.message + " " + err.hint).lower()


def test_adapter_from_a_previous_job(ctx: Any) -> None:
    make_prior_job(ctx, "abc12345", model="demo")
    spec = build('infer adapter=abc12345 prompt="hi"', ctx)
    assert spec.inputs == ("jobs/abc12345/adapter",)  # fetched from the artifact store by the cloud
    assert flag(spec.argv, "adapters") == "/inputs/jobs/abc12345/adapter"
    assert flag(spec.argv, "model") == "/cache/models/demo"  # the base model, from the stored job's spec
    assert spec.needs_network is False and spec.params["adapter_job"] == "abc12345"
    assert not any("/jobs/" in m.source for m in spec.mounts)  # nothing of another cloud's disk


@pytest.mark.parametrize(("setup", "code"), [
    ("missing", "job_not_found"), ("running", "job_not_finished"), ("no_outputs", "no_adapter")])
def test_an_earlier_job_must_have_finished_with_an_adapter(setup: str, code: str, ctx: Any) -> None:
    if setup == "running":
        make_prior_job(ctx, "abc12345", state=JobState.RUNNING)
    elif setup == "no_outputs":
        make_prior_job(ctx, "abc12345").artifacts = []
    err = refused('infer adapter=abc12345 prompt="hi"', ctx)
    assert err.code == code and "abc12345" in err.message and err.hint


def test_full_finetune_weights_replace_the_model(ctx: Any) -> None:
    make_prior_job(ctx, "full0001", model="qwen2.5-7b", adapter=False, tuner="full")
    spec = build('infer adapter=full0001 prompt="hi"', ctx)
    assert flag(spec.argv, "model") == "/inputs/jobs/full0001/model"
    assert flag(spec.argv, "model_type") == "qwen2" and "--adapters" not in spec.argv
    assert spec.needs_network is False and spec.inputs == ("jobs/full0001/model",)
    err = refused("export full0001 merge=true", ctx)
    assert "full" in err.message


def test_export_merges_a_lora_job(ctx: Any) -> None:
    make_prior_job(ctx, "lora0001", model="qwen2.5-7b")
    merge = build("export lora0001", ctx)
    assert flag(merge.argv, "merge_lora") == "true"
    assert flag(merge.argv, "adapters") == "/inputs/jobs/lora0001/adapter"
    assert flag(merge.argv, "output_dir") == "/workspace/output/merged"
    assert merge.inputs == ("jobs/lora0001/adapter",)
    quant = build("export lora0001 bits=4", ctx)
    assert (flag(quant.argv, "quant_method"), flag(quant.argv, "quant_bits")) == ("awq", "4")
    assert flag(quant.argv, "dataset") == "AI-ModelScope/alpaca-gpt4-data-zh#256"
    assert quant.resources.gpu_count == 1


def test_training_jobs_count_their_tokens_for_the_cost_estimate(ctx: Any) -> None:
    preset = build("finetune qwen-7b-lora alpaca-zh epochs=2", ctx)
    assert preset.params["dataset_samples"] == 48_818
    assert preset.params["train_tokens"] == 48_818 * 2 * 300
    capped = build("finetune qwen-7b-lora alpaca-zh#1000", ctx)
    assert capped.params["dataset_samples"] == 1000
    upload = build("finetune demo-lora upload:faq.jsonl", ctx)
    assert upload.params["dataset_samples"] == 1  # counted: one row
    assert "train_tokens" not in build("finetune qwen-7b-lora wiki_zh", ctx).params  # size unknown
    steps = build("finetune qwen-7b-lora wiki_zh max_steps=100 batch_size=2 grad_accum=4", ctx)
    assert steps.params["train_tokens"] == 100 * 2 * 4 * 2048


def test_eval_and_download(ctx: Any) -> None:
    ev = build("eval qwen-7b benchmark=ceval limit=20", ctx)
    assert (flag(ev.argv, "eval_dataset"), flag(ev.argv, "eval_limit")) == ("ceval", "20")
    assert ev.needs_network
    dl = build("download qwen-7b", ctx)
    assert dl.argv == ("modelscope", "download", "--model", "Qwen/Qwen2.5-7B-Instruct")
    assert dl.resources.gpu_count == 0 and dl.needs_network
    hf = build('download llama3 hub=hf revision="main"', ctx)
    assert hf.argv == ("hf", "download", "meta-llama/Meta-Llama-3-8B-Instruct", "--revision=main")


def test_operator_extra_flags(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, '[commands.extra.finetune.warmup]\ntype = "float"\nflag = "--warmup_ratio"\n'
                             "min = 0.0\nmax = 0.5\n")
    spec = build("finetune demo-lora demo warmup=0.25", ctx)
    assert spec.argv[-1] == "--warmup_ratio=0.25"


def test_specs_round_trip_through_json(ctx: Any) -> None:
    from gateway.model import JobSpec
    spec = build("finetune demo-lora upload:faq.jsonl", ctx)
    assert JobSpec.from_dict(spec.to_dict()) == spec
