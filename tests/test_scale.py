"""Scaling out through Accelerate: the launcher's settings, bf16, compiled models, FSDP2, trackers.

Multi-process runs go through the real `accelerate launch` (torchrun underneath, gloo on the CPU); on a
two-core machine a launch costs ~10 s of start-up, so one FSDP2 launch trains several runs
(tests/scale_worker.py) and each test checks several things.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file, save_file

from tests.conftest import (
    REPO,
    TINY_FLAGS,
    assert_finite_checkpoint,
    cli_env,
    free_port,
    metrics,
    ok,
    run_train,
    saved_step,
    summary_line,
    tiny_args,
)
from wavegpt import WaveGPT
from wavegpt.training import train
from wavegpt.training.scaling import ScaleError, refuse_unshardable

LAUNCH = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--num_processes", "2",
          "--num_machines", "1", "--dynamo_backend", "no"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_fsdp2_trains_like_ddp_gates_rgd_on_whole_matrices_and_resumes_exactly(corpus, cache, tmp_path):
    """One `accelerate launch --use_fsdp --fsdp_version 2` with two CPU processes, five runs of 4 steps:
    AdamW (baseline) under DDP and FSDP2; RGD + QFE (full_physics, the bootstrap embedding's wave_ratio
    sharded too, gate on from step 1) under DDP, and under FSDP2 stopped at step 2 and resumed from the
    sharded checkpoint; and full_physics under FSDP2 in bf16 (parameters cast by FSDP's mixed-precision
    policy, activations by autocast). Evaluation uses 3 batches on 2 processes."""
    root = tmp_path / "runs"
    cmd = [*LAUNCH, "--mixed_precision", "no", "--main_process_port", str(free_port()), "--use_fsdp",
           "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
           "--fsdp_transformer_layer_cls_to_wrap", "Block", "--fsdp_state_dict_type", "SHARDED_STATE_DICT",
           "--fsdp_reshard_after_forward", "true", "--fsdp_cpu_ram_efficient_loading", "false",
           "tests/scale_worker.py", str(root), str(corpus), str(cache),
           "adamw_ddp:baseline:ddp", "rgd_ddp:full_physics:ddp", "adamw_fsdp:baseline",
           "rgd_fsdp:full_physics:stop=2", "rgd_fsdp:full_physics:resume", "bf16_fsdp:full_physics:bf16"]
    ok(subprocess.run(cmd, cwd=REPO, env=cli_env(cache), capture_output=True, text=True, timeout=300))

    record = json.loads((root / "rgd_fsdp" / "run.json").read_text())["accelerate"]
    assert record["distributed_type"] == "FSDP" and record["fsdp_version"] == 2 and record["num_processes"] == 2
    assert json.loads((root / "adamw_ddp" / "run.json").read_text())["accelerate"]["distributed_type"] == "MULTI_CPU"
    # AdamW: sharded training is data parallelism, to float rounding.
    assert max_difference(weights(root / "adamw_fsdp"), weights(root / "adamw_ddp")) <= 1e-5
    # RGD gathers each sharded matrix to gate it as a whole, so it equals unsharded RGD (it did not fall back
    # to AdamW: that would be far from the DDP run); and 2 + 2 resumed steps equal the DDP run's 4.
    assert max_difference(weights(root / "rgd_fsdp"), weights(root / "rgd_ddp")) <= 1e-5
    assert max_difference(weights(root / "rgd_fsdp"), weights(root / "adamw_fsdp")) > 1e-3
    assert [m["step"] for m in metrics(root / "rgd_fsdp")] == [1, 2, 3, 4]
    for x, y in zip(metrics(root / "rgd_ddp"), metrics(root / "rgd_fsdp")):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-5) and y.get("val") == pytest.approx(x.get("val"), abs=1e-5)
    state = root / "rgd_fsdp" / "checkpoint" / "accelerate"
    assert {p.name for p in state.iterdir()} >= {"optimizer_0", "random_states_0.pkl", "random_states_1.pkl"}
    assert WaveGPT.from_pretrained(root / "rgd_fsdp").embedding.wave_ratio.shape == (1,)
    bf16 = json.loads((root / "bf16_fsdp" / "run.json").read_text())["accelerate"]
    assert bf16["precision"] == "bf16" and bf16["distributed_type"] == "FSDP"
    assert {m["precision"] for m in metrics(root / "bf16_fsdp")} == {"bf16"}
    assert_finite_checkpoint(root / "bf16_fsdp" / "checkpoint")
    # Evaluation: 3 batches on 2 processes, yet each process ran 2 forward passes per evaluation (two each run).
    counts = [json.loads((root / f"forwards_{rank}.json").read_text()) for rank in (0, 1)]
    assert counts[0] == counts[1] == {name: 4 for name in ("adamw_ddp", "rgd_ddp", "adamw_fsdp", "rgd_fsdp",
                                                           "bf16_fsdp")}


def test_two_process_ddp_trains_in_bf16_with_the_launchers_settings(corpus, cache, tmp_path):
    """`accelerate launch --mixed_precision bf16` with ACCELERATE_GRADIENT_ACCUMULATION_STEPS=2 in the environment
    (accelerate launch's own --gradient_accumulation_steps is a DeepSpeed setting), train.py given neither:
    both settings apply, and the metrics, run.json and the summary say bf16."""
    out = tmp_path / "run"
    cmd = [*LAUNCH, "--multi_gpu", "--mixed_precision", "bf16",
           "--main_process_port", str(free_port()), "train.py", "--cpu", *map(str, TINY_FLAGS), "--data", str(corpus),
           "--max-steps", "3", "--out", str(out), "--report-to", "none"]
    env = cli_env(cache, ACCELERATE_GRADIENT_ACCUMULATION_STEPS="2")
    result = ok(subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240))
    assert "2 process(es) on cpu:0, bf16, MULTI_CPU" in result.stdout
    summary = summary_line(result.stdout)
    assert summary["precision"] == "bf16" and summary["tokens"] == 3 * 4 * 32 * 2 * 2  # accumulation 2, 2 processes
    assert {m["precision"] for m in metrics(out)} == {"bf16"}
    record = json.loads((out / "run.json").read_text())
    assert record["mixed_precision"] is None and record["grad_accum"] is None  # not given: a resume asks again
    assert record["accelerate"]["precision"] == "bf16" and record["accelerate"]["grad_accum"] == 2
    assert_finite_checkpoint(out / "checkpoint")


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return found


def test_compiled_run_saves_plain_weights_that_generate_resume_and_tensorboard_read(corpus, cache, tmp_path):
    """The launcher's dynamo backend (eager here: the same wrapper and key prefix as inductor, without the
    compile time; --compile itself is the slow test below) on the classic preset, whose tied head broke the
    first save. Also: train.py's flags beat the launcher's environment, bf16 runs on one CPU process, and a
    resumed run writes TensorBoard events into the same log folder, val metric included."""
    out = tmp_path / "run"
    launcher = {"ACCELERATE_DYNAMO_BACKEND": "EAGER", "ACCELERATE_MIXED_PRECISION": "bf16",
                "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "3"}
    flags = [*TINY_FLAGS, "--preset", "classic", "--data", corpus, "--out", out, "--max-steps", "4",
             "--eval-interval", "2", "--save-interval", "2", "--log-interval", "1", "--grad-accum", "1",
             "--report-to", "tensorboard"]
    first = ok(run_train([*flags, "--stop-at", "2"], cache, **launcher))
    assert "1 process(es) on cpu, bf16, compiled (eager)" in first.stdout
    assert summary_line(first.stdout)["tokens"] == 2 * 4 * 32  # --grad-accum 1 beat the launcher's 3
    names = set(weights(out))
    assert names and not [n for n in names if "_orig_mod" in n]
    model = assert_finite_checkpoint(out / "checkpoint")
    assert model.config.preset == "classic"
    sample = ok(subprocess.run([sys.executable, "generate.py", "--checkpoint", str(out), "--prompt", "the king",
                                "--max-new-tokens", "5", "--seed", "1"], cwd=REPO, env=cli_env(cache),
                               capture_output=True, text=True, timeout=120))
    assert sample.stdout.startswith("the king")

    resumed = ok(run_train(["--out", out, "--resume", "--no-progress", "--mixed-precision", "no"], cache, **launcher))
    assert "1 process(es) on cpu, fp32, compiled (eager)" in resumed.stdout
    assert saved_step(out) == 4 and [m["step"] for m in metrics(out)] == [1, 2, 3, 4]
    assert [m["precision"] for m in metrics(out)] == ["bf16", "bf16", "fp32", "fp32"]
    assert not [n for n in weights(out) if "_orig_mod" in n]

    logs = out / "tensorboard" / "wavegpt"  # one folder for the run, written by both invocations
    assert len(list(logs.glob("events.out.tfevents.*"))) == 2
    scalars = tensorboard_scalars(logs)
    assert [step for step, _ in scalars["val"]] == [2, 4]
    val_rows = {m["step"]: m["val"] for m in metrics(out) if "val" in m}
    assert [v for _, v in scalars["val"]] == pytest.approx([val_rows[2], val_rows[4]], rel=1e-6)
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_compile_flag_trains_with_inductor_and_saves_plain_weights(corpus, cache, tmp_path):
    """--compile (inductor, C++ code generation: about a minute on two cores)."""
    out = tmp_path / "run"
    flags = [*TINY_FLAGS, "--data", corpus, "--out", out, "--max-steps", "2", "--compile", "--report-to", "none"]
    result = ok(run_train(flags, cache, timeout=600))
    assert "compiled (inductor)" in result.stdout
    assert not [n for n in weights(out) if "_orig_mod" in n]
    ok(run_train(["--out", out, "--resume", "--max-steps", "3", "--no-progress"], cache, timeout=600))
    assert saved_step(out) == 3
    assert_finite_checkpoint(out / "best")


def test_rgd_refuses_flat_shards_and_fp16_needs_a_gpu():
    for kind, version in ((DistributedType.FSDP, 1), (DistributedType.DEEPSPEED, None)):
        with pytest.raises(ScaleError, match="^RGD needs whole weight matrices .* flattened shards; use FSDP2"):
            refuse_unshardable("rgd", kind, version)
        refuse_unshardable("adamw", kind, version)  # AdamW does not care
    refuse_unshardable("rgd", DistributedType.FSDP, 2)
    refuse_unshardable("rgd", DistributedType.MULTI_GPU, None)


def test_fp16_on_the_cpu_is_refused_not_silently_fp32(corpus, cache, tmp_path, capsys):
    from wavegpt.cli.train import main

    with pytest.raises(SystemExit) as exited:
        main([*map(str, TINY_FLAGS), "--data", str(corpus), "--out", str(tmp_path / "run"), "--mixed-precision", "fp16",
              "--cache-dir", str(cache)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: fp16 mixed precision needs a GPU; on the CPU use bf16 "
                                               "(--mixed-precision bf16).")


def test_checkpoints_from_before_fsdp_support_load_and_resume(corpus, cache, tmp_path):
    """Run folders written before this change: wave_ratio a 0-d tensor, optimizer state and RNG in
    trainer_state.pt, no accelerate/ folder. They load, and --resume continues them."""
    args = dict(preset="full_physics", save_interval=2, max_steps=4)
    train(tiny_args(tmp_path, corpus, cache, **args, stop_at=2))
    ckpt = tmp_path / "run" / "checkpoint"
    # Rewrite it in the old layout.
    tensors = load_file(str(ckpt / "model.safetensors"))
    ratio = tensors["embedding.wave_ratio"]
    tensors["embedding.wave_ratio"] = ratio.reshape(())
    save_file(tensors, str(ckpt / "model.safetensors"))
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    optimizer = torch.load(ckpt / "accelerate" / "optimizer.bin", weights_only=True)
    for moments in optimizer["state"].values():  # the old 0-d parameter had 0-d moments
        for key, value in moments.items():
            if key != "step" and value.shape == (1,):
                moments[key] = value.reshape(())
    rng = torch.load(ckpt / "accelerate" / "random_states_0.pkl", weights_only=False)["torch_manual_seed"]
    torch.save({**state, "optimizer": optimizer, "torch_rng": [rng]}, ckpt / "trainer_state.pt")
    for f in (ckpt / "accelerate").iterdir():
        f.unlink()
    (ckpt / "accelerate").rmdir()

    loaded = WaveGPT.from_pretrained(ckpt)
    assert loaded.embedding.wave_ratio.shape == (1,) and torch.equal(loaded.embedding.wave_ratio.data, ratio)
    summary = train(tiny_args(tmp_path, corpus, cache, **args, resume=True))
    assert summary["steps"] == 4 and saved_step(tmp_path / "run") == 4
    assert (ckpt / "accelerate").is_dir()  # saved in the new layout from now on


def test_a_tracker_that_is_not_installed_is_refused_not_dropped():
    import accelerate.utils

    from wavegpt.training.scaling import TRACKERS, tracker_names

    missing = [t for t in TRACKERS if not getattr(accelerate.utils, f"is_{t}_available", lambda: True)()]
    if not missing:
        pytest.skip("every tracker is installed here")
    with pytest.raises(ScaleError, match=rf"^--report-to {missing[0]} needs the {missing[0]} package"):
        tracker_names(missing[0])
    assert tracker_names("none") is None
