"""One command that measures every GPU path of wavegpt in a few minutes (GitHub issue 26).

    python benchmarks/gpu_check.py --out gpu_check.json                          # one GPU: at most 8 minutes
    python benchmarks/gpu_check.py --quick --out gpu_check.json                  # one GPU: about 4 minutes
    python benchmarks/gpu_check.py --quick --device cpu --out /tmp/gpu_check_cpu.json   # 2 CPU cores: < 5 min
    python benchmarks/gpu_check.py --smoke --device cpu --out /tmp/smoke.json    # every section in seconds (the test)

Sections, each with a deadline of its own inside one overall limit (--time-limit; what a deadline cuts
off is listed under "skipped" with the reason, never half-measured):

1. training: tokens/s of a full step (forward, backward, the preset's own optimizer and loss, RGD's gate
   on from step 1, on random tokens) for classic_rope and the wave presets baseline, full_physics,
   pure_wave_linear and wave_network, at tiny and small (medium when time allows), in fp32, bf16
   autocast, fp16 autocast with a GradScaler, and compiled (torch.compile, inductor; bf16 autocast on
   CUDA, fp32 on the CPU). Within a size and mode the presets are timed in alternating rounds
   (A B C ... A B C ...) and each figure is the median round; every figure is also given against
   classic_rope in the same mode. Peak memory (CUDA: the step's peak allocation less what the other
   models hold) and MFU against the device's dense peak (nanoGPT's estimate: 6 N + attention flops per
   token; null where the peak is not known, and on the CPU).
2. mixers: forward + backward time of each token mixer alone (interference, classic softmax attention,
   pure-wave quadratic, pure-wave linear, Wave Network) over a grid of context lengths (256 to 8,192 on
   a GPU) at a fixed number of tokens per batch, and the crossover length from which linear mode and the
   Wave Network beat softmax attention (null if none in the grid).
3. decode: cached decoding ms/token through wavegpt's own sampler, the time to read every weight once
   (one pass over all parameters in one flat buffer: the memory-bandwidth floor of a decode step), and
   their ratio.
4. convergence: baseline against classic_rope for a fixed token budget, in fp32 and in bf16, held-out
   nats/char (TinyShakespeare from the data cache if it is there, or --data; the CPU --quick and --smoke
   runs use a generated corpus); nothing is downloaded.
5. machine: CPU, cores, memory, GPU name and memory, torch, CUDA, cuDNN, TF32 settings, load average.

Writes FILE.json and FILE.md (the same tables, also printed). Nothing is asserted: a mode torch cannot
run here is recorded as skipped with the reason, an error in one measurement is recorded and the rest
go on. Random-init weights except in the convergence section.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wavegpt import QFELoss, WaveGPT, WaveGPTConfig

# Deep imports, all here, so a moved module is one edit.
from wavegpt.args import TrainArgs
from wavegpt.data import DataError, default_cache_dir, get_batch, iter_eval_batches, prepare_corpus
from wavegpt.sampling import sample_tokens
from wavegpt.training.optim import build_optimizer, lr_at

PRESETS = ("classic_rope", "baseline", "full_physics", "pure_wave_linear", "wave_network")
CONTROL = "classic_rope"
MODES = ("fp32", "bf16", "fp16", "compile")
MIXERS = {  # mixer name -> the preset whose first block's mixer it is
    "interference": "baseline",
    "softmax": "classic_rope",
    "pure_wave_quadratic": "pure_wave",
    "pure_wave_linear": "pure_wave_linear",
    "wave_network": "wave_network",
}
# Dense (no sparsity) peak TFLOP/s by device name: (bf16/fp16 tensor, tf32 tensor, plain fp32). Matched in
# order, first hit wins, so the more specific names come first. From NVIDIA's data sheets.
PEAK_TFLOPS = (
    ("H200", (989.0, 494.0, 67.0)),
    ("H100 PCIe", (756.0, 378.0, 51.0)),
    ("H100 NVL", (835.0, 418.0, 60.0)),
    ("H100", (989.0, 494.0, 67.0)),
    ("H800", (989.0, 494.0, 67.0)),
    ("GH200", (989.0, 494.0, 67.0)),
    ("A100", (312.0, 156.0, 19.5)),
    ("A800", (312.0, 156.0, 19.5)),
    ("L40S", (362.0, 183.0, 91.6)),
    ("L4", (121.0, 60.0, 30.3)),
    ("A10G", (70.0, 35.0, 31.2)),
    ("A10", (125.0, 62.5, 31.2)),
)
# Section budgets as shares of --time-limit, in the order the sections run (compile last: one compile
# cannot be interrupted, so an overrun there costs nothing that follows).
SHARES = {"training": 0.32, "mixers": 0.13, "decode": 0.08, "convergence": 0.22, "compile": 0.25}
# A tiny architecture for --smoke (every section in seconds; the figures mean nothing).
SMOKE_ARCH = dict(d_model=32, n_layers=2, n_heads=2, num_waves=8, num_harmonics=2, block_size=32, chunk_size=8)


class CheckError(Exception):
    """A request the script cannot honour; the message is one sentence."""


@dataclasses.dataclass
class Plan:
    """How much of each section a run measures (set by --quick / --smoke and the device)."""

    time_limit: float
    sizes: list[str]
    tokens_per_step: int
    warmup: int
    rounds: int
    steps: int
    compile_sizes: list[str]
    compile_presets: list[str]
    compile_estimate_s: float  # a first compile's expected cost, before one was timed
    mixer_width: str
    mixer_lengths: list[int]
    mixer_tokens: int
    mixer_reps: int
    decode_sizes: list[str]
    decode_presets: list[str]
    decode_tokens: int
    conv_size: str
    conv_steps: int
    conv_batch: int
    conv_block: int | None
    conv_eval_batches: int
    conv_corpus_chars: int
    arch: dict[str, int]
    notes: list[str]


def make_plan(device: str, quick: bool, smoke: bool, time_limit: float | None) -> Plan:
    cuda = device == "cuda"
    if smoke:
        return Plan(time_limit or 60, ["tiny"], 64, 1, 2, 1, [], [], 0.0, "tiny", [16, 32], 64, 1, ["tiny"],
                    ["baseline", CONTROL], 4, "tiny", 2, 4, None, 1, 30_000, dict(SMOKE_ARCH),
                    ["--smoke: a tiny architecture and one step of everything; the figures mean nothing"])
    if cuda:
        return Plan(time_limit or (240 if quick else 460),
                    ["tiny", "small"] if quick else ["tiny", "small", "medium"], 16384, 3, 3 if quick else 5, 4,
                    ["tiny", "small"], list(PRESETS), 60.0, "small",
                    [256, 512, 1024, 2048, 4096, 8192], 16384, 3 if quick else 5,
                    ["tiny", "small"] if quick else ["tiny", "small", "medium"],
                    ["baseline", CONTROL, "pure_wave_linear", "wave_network"], 64 if quick else 128,
                    "small", 60 if quick else 120, 32, None, 20, 1_000_000, {}, [])
    if quick:
        return Plan(time_limit or 270, ["tiny", "small"], 512, 1, 3, 1, ["tiny"], ["baseline"], 60.0, "tiny",
                    [128, 256, 512, 1024], 2048, 3, ["tiny", "small"], ["baseline", CONTROL], 48,
                    "tiny", 30, 8, 64, 4, 120_000, {},
                    ["--quick on the CPU: 512 tokens per training step, fp16 (emulated on CPUs, slow) after fp32 "
                     "and bf16 of both sizes so that the deadline cuts it first, one compiled model (tiny "
                     "baseline), a 30-step convergence check at tiny on a generated corpus"])
    return Plan(time_limit or 1200, ["tiny", "small"], 4096, 2, 3, 2, ["tiny"], list(PRESETS), 90.0, "tiny",
                [128, 256, 512, 1024, 2048], 4096, 3, ["tiny", "small"], ["baseline", CONTROL, "pure_wave_linear",
                                                                          "wave_network"], 64,
                "tiny", 60, 16, 128, 10, 300_000, {}, [])


# --- time budget ----------------------------------------------------------------------------------------------


class Budget:
    """The overall limit and the section now running; every skip is recorded with its reason."""

    def __init__(self, total: float):
        self.start = time.perf_counter()
        self.end = self.start + total
        self.total = total
        self.skipped: list[dict[str, str]] = []
        self.section, self.deadline, self.seconds = "", self.end, total

    def begin(self, section: str, share: float, last: bool = False) -> None:
        """Start a section with `share` of the overall limit (the last one: all that is left)."""
        self.section = section
        self.seconds = max(0.0, self.end - time.perf_counter()) if last else share * self.total
        self.deadline = min(time.perf_counter() + self.seconds, self.end)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def skip(self, what: str, reason: str | None = None) -> None:
        why = reason or f"the {self.section} section's deadline ({self.seconds:.0f} s) was reached"
        self.skipped.append({"section": self.section, "what": what, "reason": why})


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def error_text(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first[:300]}"


def free(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()


# --- precision and flops ------------------------------------------------------------------------------------


def mode_dtype(mode: str, device: str) -> torch.dtype | None:
    """The autocast dtype of a mode (None: plain float32)."""
    if mode == "bf16" or (mode == "compile" and device == "cuda"):
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def unsupported(mode: str, device: str) -> str | None:
    """Why torch cannot run this mode here, or None."""
    dtype = mode_dtype(mode, device)
    if device == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(0)} has no bf16"
    try:
        with torch.autocast(device_type=device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            torch.nn.functional.linear(torch.ones(2, 2, device=device), torch.ones(2, 2, device=device))
        if mode == "fp16":
            torch.amp.GradScaler(device)
    except Exception as e:  # an autocast dtype or scaler this torch build lacks on this device
        return f"torch {torch.__version__} cannot run {mode} on {device} ({error_text(e)})"
    return None


def peak_tflops(device: str, dtype: torch.dtype | None) -> tuple[float | None, str | None]:
    """The device's dense peak for this precision and the table row it came from (None on the CPU or unknown)."""
    if device != "cuda":
        return None, None
    name = torch.cuda.get_device_name(0)
    for key, (half, tf32, fp32) in PEAK_TFLOPS:
        if key in name:
            if dtype is not None:
                return half, key
            return (tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32), key
    return None, None


def flops_per_token(config: WaveGPTConfig, n_params: int) -> float:
    """nanoGPT's estimate for a training step: 6 N + 12 L d T (the two (T x T) products of attention,
    forward and backward). Linear mode pays its chunk-local products (12 L d C) plus the state (12 L d W)
    instead of 12 L d T; the Wave Network's mixing is elementwise (no extra term)."""
    L, d, T = config.n_layers, config.d_model, config.block_size
    if config.model_type == "wave" and config.attention.startswith("wave_network"):
        attention = 0.0
    elif config.model_type == "wave" and config.attention == "pure_wave" and config.mode == "linear":
        attention = 12.0 * L * d * (min(config.chunk_size, T) + config.num_waves)
    else:
        attention = 12.0 * L * d * T
    return 6.0 * n_params + attention


def matmul_params(model: WaveGPT) -> int:
    """N for the estimate: every parameter except a learned position table (as nanoGPT counts)."""
    n = model.num_parameters()
    position = getattr(model.embedding, "position", None)
    if isinstance(position, torch.nn.Embedding):
        n -= position.weight.numel()
    return n


def tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


# --- 1. training ---------------------------------------------------------------------------------------------


class TrainRunner:
    """One preset's model, optimizer, loss and batch in one mode, kept across the alternating rounds."""

    def __init__(self, size: str, preset: str, mode: str, device: str, tokens: int, arch: dict[str, int]):
        torch.manual_seed(0)
        config = WaveGPTConfig.from_preset(size, preset, **arch)
        self.config = dataclasses.replace(config, rgd_warmup_steps=1)  # the gate's full cost from step 1
        self.raw = WaveGPT(self.config).to(device)
        self.opt = build_optimizer(self.raw, lr=1e-4)
        self.model = torch.compile(self.raw) if mode == "compile" else self.raw
        self.dtype = mode_dtype(mode, device)
        self.scaler = torch.amp.GradScaler(device) if mode == "fp16" else None
        self.loss_fn = QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None
        batch = max(1, tokens // self.config.block_size)
        gen = torch.Generator().manual_seed(1)
        shape = (batch, self.config.block_size)
        self.x = torch.randint(0, self.config.vocab_size, shape, generator=gen).to(device)
        self.y = torch.randint(0, self.config.vocab_size, shape, generator=gen).to(device)
        self.device = device
        self.loss = float("nan")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=self.dtype)

    def step(self) -> torch.Tensor:
        with self.autocast():
            logits, ce = self.model(self.x, self.y)
            loss = self.loss_fn(logits, self.y) if self.loss_fn else ce
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return loss

    def timed(self, steps: int) -> float:
        sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.step()
        sync(self.device)
        elapsed = time.perf_counter() - start
        self.loss = loss.item()
        return elapsed

    def resident_bytes(self) -> int:
        """Weights, gradients, optimizer state and the batch: what this runner holds between steps."""
        state = [t for s in self.opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        params = list(self.raw.parameters())
        return tensor_bytes([*params, *(p.grad for p in params if p.grad is not None), *state, self.x, self.y])

    def peak_memory_mb(self) -> float | None:
        """CUDA: this runner's own peak over one step (the step's peak less what the other runners hold)."""
        if self.device != "cuda":
            return None
        sync(self.device)
        before = torch.cuda.memory_allocated()
        others = before - self.resident_bytes()
        torch.cuda.reset_peak_memory_stats()
        self.step()
        sync(self.device)
        return (torch.cuda.max_memory_allocated() - others) / 2**20

    @property
    def tokens(self) -> int:
        return self.x.numel()


def measure_group(size: str, mode: str, presets: list[str], device: str, plan: Plan, budget: Budget,
                  warm: dict[str, TrainRunner] | None = None) -> list[dict[str, Any]]:
    """Alternating rounds over the presets of one size and mode (all built and warmed first)."""
    runners: dict[str, TrainRunner] = dict(warm or {})
    entries: dict[str, dict[str, Any]] = {}
    for preset in presets:
        if preset in runners:
            continue
        if budget.left() <= 0:
            budget.skip(f"training {size} {mode} {preset}")
            continue
        entry = entries.setdefault(preset, {"size": size, "mode": mode, "preset": preset})
        try:
            runner = TrainRunner(size, preset, mode, device, plan.tokens_per_step, plan.arch)
            start = time.perf_counter()
            runner.timed(plan.warmup)
            entry["warmup_s"] = round(time.perf_counter() - start, 2)
            entry["peak_memory_mb"] = runner.peak_memory_mb()
            runners[preset] = runner
        except Exception as e:  # an OOM or a path torch cannot take: record it, go on with the rest
            entry["error"] = error_text(e)
            free(device)
    times: dict[str, list[float]] = {p: [] for p in runners}
    last_round = 0.0
    for r in range(plan.rounds):
        started = time.perf_counter()
        if r and budget.left() < last_round:
            budget.skip(f"training {size} {mode}: rounds {r + 1}-{plan.rounds}")
            break
        for preset, runner in list(runners.items()):
            try:
                times[preset].append(runner.timed(plan.steps))
            except Exception as e:
                entries.setdefault(preset, {"size": size, "mode": mode, "preset": preset})["error"] = error_text(e)
                del runners[preset]
                free(device)
        last_round = time.perf_counter() - started
    out = []
    for preset in presets:
        if preset not in runners and preset not in entries:
            continue
        entry = entries.setdefault(preset, {"size": size, "mode": mode, "preset": preset})
        runner = runners.get(preset)
        if runner is not None and times.get(preset):
            tps = runner.tokens * plan.steps / statistics.median(times[preset])
            dtype = runner.dtype
            peak, row = peak_tflops(device, dtype)
            fpt = flops_per_token(runner.config, matmul_params(runner.raw))
            entry.update(
                precision=precision_name(dtype),
                parameters=runner.raw.num_parameters(), context=runner.config.block_size,
                tokens_per_step=runner.tokens, rounds=len(times[preset]), steps_per_round=plan.steps,
                tokens_per_s=round(tps, 1), round_tokens_per_s=[round(runner.tokens * plan.steps / t, 1)
                                                               for t in times[preset]],
                flops_per_token=fpt, achieved_tflops=round(fpt * tps / 1e12, 4),
                peak_tflops=peak, peak_row=row, mfu=None if peak is None else round(fpt * tps / (peak * 1e12), 4),
                weights_and_optimizer_mb=round(runner.resident_bytes() / 2**20, 1),
                last_loss=runner.loss, loss_finite=math.isfinite(runner.loss))
            entry.setdefault("peak_memory_mb", None)
            if entry["peak_memory_mb"] is not None:
                entry["peak_memory_mb"] = round(entry["peak_memory_mb"], 1)
        out.append(entry)
    control = next((e for e in out if e["preset"] == CONTROL and "tokens_per_s" in e), None)
    for e in out:
        e[f"vs_{CONTROL}"] = round(e["tokens_per_s"] / control["tokens_per_s"], 3) \
            if control and "tokens_per_s" in e else None
    runners.clear()
    free(device)
    return out


def training_section(device: str, plan: Plan, budget: Budget) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    # fp32 and bf16 of tiny and small first, then fp16 (emulated, slow on CPUs), then medium: a deadline
    # cuts what matters least.
    order = [(s, m) for s in ("tiny", "small") for m in ("fp32", "bf16")] + [("tiny", "fp16"), ("small", "fp16")]
    for size, mode in order + [("medium", m) for m in ("fp32", "bf16", "fp16")]:
        if size not in plan.sizes:
            budget.skip(f"training {size} {mode}", "not in this run's plan (see the notes)"
                        if size != "medium" or device == "cuda" else "medium is measured on GPUs only")
            continue
        why = unsupported(mode, device)
        if why:
            budget.skip(f"training {size} {mode}", why)
            results.append({"size": size, "mode": mode, "skipped": why})
            continue
        if budget.left() <= 0:
            budget.skip(f"training {size} {mode}")
            continue
        results.extend(measure_group(size, mode, list(PRESETS), device, plan, budget))
    return results


def compile_section(device: str, plan: Plan, budget: Budget, eager: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compile in priority order (classic_rope and baseline of each size first) while the estimated compile
    time still fits, then alternating rounds per size among the compiled models."""
    results: list[dict[str, Any]] = []
    if not plan.compile_presets:
        budget.skip("training compile", "--smoke: compiling takes tens of seconds even for the smallest model")
        return [{"mode": "compile", "skipped": "--smoke"}]
    why = unsupported("compile", device)
    if why:
        budget.skip("training compile", why)
        return [{"mode": "compile", "skipped": why}]
    import torch._dynamo  # one compiled model per preset and size: more than dynamo's default cache holds

    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(256, getattr(torch._dynamo.config, name)))
    first = [(s, p) for s in plan.compile_sizes for p in plan.compile_presets if p in (CONTROL, "baseline")]
    order = first + [(s, p) for s in plan.compile_sizes for p in plan.compile_presets if (s, p) not in first]
    compiled: dict[str, dict[str, TrainRunner]] = {}
    compile_s: dict[tuple[str, str], float] = {}
    errors: dict[tuple[str, str], str] = {}
    memory: dict[tuple[str, str], float | None] = {}
    estimate = plan.compile_estimate_s
    reserve = 0.15 * budget.seconds  # kept for the timed rounds
    for size, preset in order:
        if budget.left() - reserve < estimate:
            budget.skip(f"compile {size} {preset}", f"the compile section's deadline ({budget.seconds:.0f} s) "
                        f"leaves no room for another compile (the last took {estimate:.0f} s)")
            continue
        try:
            runner = TrainRunner(size, preset, "compile", device, plan.tokens_per_step, plan.arch)
            start = time.perf_counter()
            runner.timed(max(2, plan.warmup))
            warm = time.perf_counter() - start
            step = runner.timed(1)
            compile_s[(size, preset)] = max(0.0, warm - max(2, plan.warmup) * step)
            estimate = warm * (1.3 if size == "tiny" else 1.1)
            memory[(size, preset)] = runner.peak_memory_mb()
            compiled.setdefault(size, {})[preset] = runner
        except Exception as e:
            errors[(size, preset)] = error_text(e)
            free(device)
    for size in plan.compile_sizes:
        runners = compiled.get(size, {})
        group = measure_group(size, "compile", list(runners), device, plan, budget, warm=runners) if runners else []
        for e in group:
            e["compile_s"] = round(compile_s.get((size, e["preset"]), float("nan")), 1)
            mb = memory.get((size, e["preset"]))
            e["peak_memory_mb"] = None if mb is None else round(mb, 1)
            eager_same = next((r for r in eager if r.get("size") == size and r.get("preset") == e["preset"]
                               and r.get("mode") == ("bf16" if device == "cuda" else "fp32")
                               and "tokens_per_s" in r), None)
            e["vs_eager"] = round(e["tokens_per_s"] / eager_same["tokens_per_s"], 3) \
                if eager_same and "tokens_per_s" in e else None
        results.extend(group)
        for (s, p), err in errors.items():
            if s == size:
                results.append({"size": s, "mode": "compile", "preset": p, "error": err})
    for size in plan.sizes:
        if size not in plan.compile_sizes:
            budget.skip(f"compile {size}", "not in this run's plan (see the notes)")
    return results


# --- 2. mixers -----------------------------------------------------------------------------------------------


def mixers_section(device: str, plan: Plan, budget: Budget) -> dict[str, Any]:
    dtype = torch.bfloat16 if device == "cuda" else None
    lengths = plan.mixer_lengths
    modules = {}
    for name, preset in MIXERS.items():
        torch.manual_seed(0)
        config = WaveGPTConfig.from_preset(plan.mixer_width, preset, **{**plan.arch, "n_layers": 1,
                                                                        "block_size": max(lengths)})
        modules[name] = WaveGPT(config).blocks[0].attn.to(device)
    width = WaveGPTConfig.from_preset(plan.mixer_width, "baseline", **plan.arch).d_model
    ms: dict[str, dict[int, float | str]] = {name: {} for name in modules}
    for T in lengths:
        if budget.left() <= 0:
            budget.skip(f"mixers at context {T}")
            continue
        B = max(1, plan.mixer_tokens // T)
        x = torch.randn(B, T, width, device=device, requires_grad=True)

        def run(module, x: torch.Tensor = x) -> None:
            with torch.autocast(device_type=device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                y, _ = module(x, 0)
            y.backward(torch.ones_like(y))
            x.grad = None

        times: dict[str, list[float]] = {name: [] for name in modules}
        for name, module in modules.items():  # warm-up
            try:
                run(module)
                run(module)
            except Exception as e:
                ms[name][T] = error_text(e)
                free(device)
        for _ in range(plan.mixer_reps):
            for name, module in modules.items():  # alternating, as the training rounds
                if isinstance(ms[name].get(T), str):
                    continue
                sync(device)
                start = time.perf_counter()
                run(module)
                sync(device)
                times[name].append(time.perf_counter() - start)
        for name in modules:
            if times[name]:
                ms[name][T] = round(1000 * statistics.median(times[name]), 3)
        del x
        free(device)

    def crossover(name: str) -> int | None:
        """The shortest length from which `name` is faster than softmax attention at every longer one."""
        best = None
        for T in reversed(lengths):
            a, b = ms[name].get(T), ms["softmax"].get(T)
            if not isinstance(a, float) or not isinstance(b, float) or a >= b:
                break
            best = T
        return best

    return {"precision": "bf16" if dtype else "fp32", "width": plan.mixer_width, "d_model": width,
            "tokens_per_batch": plan.mixer_tokens, "lengths": lengths,
            "fwd_bwd_ms": {name: {str(T): v for T, v in row.items()} for name, row in ms.items()},
            "crossover": {"pure_wave_linear": crossover("pure_wave_linear"),
                          "wave_network": crossover("wave_network")}}


# --- 3. decode -----------------------------------------------------------------------------------------------


def weight_read_ms(model: WaveGPT, device: str, reps: int = 20) -> tuple[float, int]:
    """Median time of one pass over every weight, held in one flat buffer (one kernel: the bandwidth floor)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    for _ in range(3):
        flat.sum()
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        flat.sum()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), flat.numel() * flat.element_size()


def weight_read_per_tensor_ms(model: WaveGPT, device: str, reps: int = 10) -> float:
    """The same pass as one op per parameter tensor (what a decode step pays in per-op overhead on top)."""
    params = [p.detach() for p in model.parameters()]
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        for p in params:
            p.sum()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def decode_ms(model: WaveGPT, device: str, new_tokens: int, runs: int = 3) -> float:
    """Cached decoding, ms per token after the prefill (wavegpt's own sampler), median of several runs."""
    idx = torch.randint(0, model.config.vocab_size, (1, min(16, model.config.block_size // 2)),
                        generator=torch.Generator().manual_seed(1)).to(device)
    new_tokens = min(new_tokens, model.config.block_size - idx.shape[1] - 1)  # no slide of the window

    def once(n: int) -> float:
        gen = torch.Generator(device=device).manual_seed(0)
        start = 0.0
        for i, _ in enumerate(sample_tokens(model, idx, n + 1, generator=gen)):
            if i == 0:
                sync(device)
                start = time.perf_counter()
        sync(device)
        return (time.perf_counter() - start) / n

    once(4)
    return 1000 * statistics.median(once(new_tokens) for _ in range(runs))


def decode_section(device: str, plan: Plan, budget: Budget) -> list[dict[str, Any]]:
    rows = []
    for size in plan.decode_sizes:
        for preset in plan.decode_presets:
            if budget.left() <= 0:
                budget.skip(f"decode {size} {preset}")
                continue
            row: dict[str, Any] = {"size": size, "preset": preset}
            try:
                torch.manual_seed(0)
                model = WaveGPT(WaveGPTConfig.from_preset(size, preset, **plan.arch)).to(device).eval()
                read, nbytes = weight_read_ms(model, device)
                ms = decode_ms(model, device, plan.decode_tokens)
                row.update(parameters=model.num_parameters(), weight_bytes=nbytes, decode_ms_per_token=round(ms, 4),
                           weight_read_ms=round(read, 4), weight_read_gb_per_s=round(nbytes / read / 1e6, 1),
                           decode_over_weight_read=round(ms / read, 2), decode_tokens_per_s=round(1000 / ms, 1),
                           weight_read_per_tensor_ms=round(weight_read_per_tensor_ms(model, device), 4))
            except Exception as e:
                row["error"] = error_text(e)
            rows.append(row)
            free(device)
    return rows


# --- 4. convergence ------------------------------------------------------------------------------------------

WORDS = ("the wave phase light sea sound field rises falls meets bright dark night day love hate king queen "
         "speak hear see know go come stay fly sleep dream heart hand eye word time death life sweet fair "
         "good noble gentle brave true false old young my thy his her our your what why when where how").split()
SPEAKERS = ("ROMEO", "JULIET", "NURSE", "FRIAR", "KING", "QUEEN", "CLOWN", "DUKE")


def generated_text(n_chars: int, seed: int = 0) -> str:
    """A deterministic play-like text with real structure (speakers, a small grammar), for the CPU checks."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_chars:
        lines = []
        for _ in range(rng.randint(1, 4)):
            words = [rng.choice(WORDS[:12]), rng.choice(WORDS[12:40]), rng.choice(WORDS[40:])]
            words += [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
            lines.append(" ".join(words).capitalize() + rng.choice(".,;!?"))
        block = f"{rng.choice(SPEAKERS)}:\n" + "\n".join(lines) + "\n\n"
        parts.append(block)
        size += len(block)
    return "".join(parts)


def convergence_corpus(data: str | None, device: str, plan: Plan, smoke_or_cpu_quick: bool, folder: Path):
    """(corpus, description): --data, else TinyShakespeare from the data cache (GPU runs), else generated."""
    vocab = 1024 if not plan.arch else 257
    cache = folder / "cache"
    if data is not None:
        return prepare_corpus(None, data, vocab, cache), f"--data {data}"
    shakespeare = default_cache_dir() / "tinyshakespeare.txt"
    if not smoke_or_cpu_quick and shakespeare.is_file():
        return prepare_corpus(None, str(shakespeare), vocab, cache), f"TinyShakespeare ({shakespeare})"
    path = folder / "generated.txt"
    path.write_text(generated_text(plan.conv_corpus_chars), encoding="utf-8")
    why = "" if smoke_or_cpu_quick else " (no TinyShakespeare in the data cache and no --data)"
    return prepare_corpus(None, str(path), vocab, cache), f"generated, {plan.conv_corpus_chars:,} chars{why}"


def train_for_budget(corpus, preset: str, dtype: torch.dtype | None, device: str, plan: Plan, steps: int,
                     stop_at: float) -> dict[str, Any]:
    """The trainer's recipe (lr schedule, AdamW/RGD, QFE, grad clip 1.0) for `steps` steps, then held-out loss."""
    overrides = dict(plan.arch, vocab_size=corpus.tokenizer.vocab_size)
    if plan.conv_block:
        overrides["block_size"] = plan.conv_block
    config = WaveGPTConfig.from_preset(plan.conv_size, preset, **overrides)
    torch.manual_seed(1337)
    model = WaveGPT(config).to(device)
    args = TrainArgs(max_steps=steps, warmup_steps=max(1, steps // 10), batch_size=plan.conv_batch)
    opt = build_optimizer(model, lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None
    gen = torch.Generator().manual_seed(1337)
    T = config.block_size

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device, dtype=dtype)

    start = time.perf_counter()
    done = 0
    for step in range(steps):
        if time.perf_counter() > stop_at:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args) * group.get("lr_scale", 1.0)
        x, y = (t.to(device) for t in get_batch(corpus.train, plan.conv_batch, T, gen))
        with autocast():
            logits, ce = model(x, y)
            loss = loss_fn(logits, y) if loss_fn else ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        if config.model_type == "wave" and config.bootstrap_embedding:
            floor = 0.5 + 0.4 * min(1.0, (step + 1) / steps)  # the trainer's wave-share schedule
            with torch.no_grad():
                model.embedding.wave_ratio.clamp_(min=math.log(floor / (1 - floor)))
        done += 1
    sync(device)
    wall = time.perf_counter() - start
    model.eval()
    nats, count = 0.0, 0
    with torch.no_grad(), autocast():
        for x, y in iter_eval_batches(corpus.val, plan.conv_batch, T, plan.conv_eval_batches):
            _, loss = model(x.to(device), y.to(device))
            nats += loss.float().item() * y.numel()
            count += y.numel()
    per_token = nats / count
    return {"preset": preset, "precision": precision_name(dtype),
            "size": plan.conv_size, "context": T, "steps": done, "tokens": done * plan.conv_batch * T,
            "complete": done == steps, "wall_s": round(wall, 2), "tokens_per_s": round(done * plan.conv_batch * T
                                                                                     / max(wall, 1e-9), 1),
            "val_nats_per_token": round(per_token, 5),
            "val_nats_per_char": round(per_token * len(corpus.val) / corpus.val_chars, 5)}


def convergence_section(device: str, plan: Plan, budget: Budget, data: str | None, cpu_quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wavegpt-gpu-check-") as tmp:
        corpus, described = convergence_corpus(data, device, plan, cpu_quick or bool(plan.arch), Path(tmp))
        runs = []
        plan_runs = [(p, d) for d in (None, torch.bfloat16) for p in ("baseline", CONTROL)]
        if unsupported("bf16", device):
            plan_runs = [(p, d) for p, d in plan_runs if d is None]
            budget.skip("convergence bf16", unsupported("bf16", device))
        last = 0.0
        for preset, dtype in plan_runs:
            name = f"convergence {preset} {'fp32' if dtype is None else 'bf16'}"
            if budget.left() <= 0 or (runs and budget.left() < 0.5 * last):
                budget.skip(name)
                continue
            start = time.perf_counter()
            try:
                runs.append(train_for_budget(corpus, preset, dtype, device, plan, plan.conv_steps, budget.deadline))
                if not runs[-1]["complete"]:
                    budget.skip(f"{name}: steps {runs[-1]['steps'] + 1}-{plan.conv_steps}")
            except Exception as e:
                runs.append({"preset": preset, "precision": "fp32" if dtype is None else "bf16",
                             "error": error_text(e)})
            last = time.perf_counter() - start
            free(device)
    by = {(r["preset"], r["precision"]): r.get("val_nats_per_char") for r in runs if r.get("complete")}
    gap = {p: (round(by[(p, "bf16")] - by[(p, "fp32")], 5) if (p, "bf16") in by and (p, "fp32") in by
               else None) for p in ("baseline", CONTROL)}
    block = plan.conv_block or WaveGPTConfig.from_preset(plan.conv_size, "baseline", **plan.arch).block_size
    return {"data": described, "token_budget": plan.conv_steps * plan.conv_batch * block, "size": plan.conv_size,
            "runs": runs, "bf16_minus_fp32_nats_per_char": gap}


# --- 5. machine ------------------------------------------------------------------------------------------------


def machine(device: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    mem_gb = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    info: dict[str, Any] = {
        "cpu": cpu, "cpu_cores": os.cpu_count(), "memory_gb": mem_gb, "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()
        if torch.backends.cudnn.is_available() else None, "python": platform.python_version(),
        "platform": platform.platform(), "device": device, "gpu": None, "gpu_memory_gb": None,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    gpu_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count(),
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    float32_matmul_precision=torch.get_float32_matmul_precision())
    return info


def describe_machine(m: dict[str, Any]) -> str:
    where = f"{m['gpu']} ({m['gpu_memory_gb']} GiB)" if m.get("gpu") else "no GPU"
    return (f"{m['cpu']}, {m['cpu_cores']} cores, {m['memory_gb']} GiB, {where}, torch {m['torch']}, "
            f"CUDA {m['cuda']}, cuDNN {m['cudnn']}, {m['torch_threads']} torch thread(s)")


# --- report -----------------------------------------------------------------------------------------------------


def fmt(v: Any, spec: str = ",.0f") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return format(v, spec)


def load(values: list[float] | None) -> str:
    return "-" if not values else ", ".join(f"{v:.1f}" for v in values)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# wavegpt GPU check ({report['device']}{', --quick' if report['quick'] else ''}"
             f"{', --smoke' if report['smoke'] else ''})", "",
             f"Machine: {describe_machine(m)}; load average {load(m['load_average_start'])} at the start, "
             f"{load(m['load_average_end'])} at the end. "
             f"Wall time {report['wall_s']:.0f} s of a {report['time_limit_s']:.0f} s limit.", ""]
    for note in report["notes"]:
        lines.append(f"Note: {note}.")
    lines += ["", "## Training (tokens/s, median of alternating rounds; ratios against classic_rope in the same mode)",
              "", "| size | mode | preset | tokens/s | vs classic_rope | MFU | peak memory MB | compile s | vs eager |",
              "|---|---|---|---|---|---|---|---|---|"]
    for e in report["training"]:
        if "tokens_per_s" in e:
            mode = e["mode"] + (f" ({e['precision']})" if e["mode"] == "compile" else "")
            mfu = None if e.get("mfu") is None else f"{100 * e['mfu']:.1f}%"
            ratio = None if e.get("vs_classic_rope") is None else f"{e['vs_classic_rope']:.2f}x"
            eager = None if e.get("vs_eager") is None else f"{e['vs_eager']:.2f}x"
            lines.append(f"| {e['size']} | {mode} | {e['preset']} | {fmt(e['tokens_per_s'])} | {fmt(ratio)} | "
                         f"{fmt(mfu)} | {fmt(e.get('peak_memory_mb'), ',.0f')} | {fmt(e.get('compile_s'), '.0f')} | "
                         f"{fmt(eager)} |")
        elif "error" in e:
            lines.append(f"| {e.get('size', '-')} | {e['mode']} | {e.get('preset', '-')} | error: {e['error']} "
                         "| | | | | |")
    mx = report["mixers"]
    if mx and "fwd_bwd_ms" in mx:
        lines += ["", f"## Mixers alone: forward + backward ms ({mx['precision']}, width {mx['width']} "
                  f"(d_model {mx['d_model']}), {mx['tokens_per_batch']:,} tokens per batch)", "",
                  "| mixer | " + " | ".join(f"T={T}" for T in mx["lengths"]) + " |",
                  "|---|" + "---|" * len(mx["lengths"])]
        for name, row in mx["fwd_bwd_ms"].items():
            lines.append(f"| {name} | " + " | ".join(fmt(row.get(str(T)), ".2f") for T in mx["lengths"]) + " |")
        cx = mx["crossover"]
        lines += ["", f"Crossover (beats softmax attention from this length on): pure_wave_linear "
                  f"{fmt(cx['pure_wave_linear'], 'd')}, wave_network {fmt(cx['wave_network'], 'd')} "
                  "(- : not within the grid)."]
    elif mx and "error" in mx:
        lines += ["", f"## Mixers: error: {mx['error']}"]
    lines += ["", "## Cached decode (wavegpt's sampler, batch 1) against reading every weight once", "",
              "| size | preset | params | decode ms/token | weight read ms | GB/s | decode / weight read |",
              "|---|---|---|---|---|---|---|"]
    for r in report["decode"]:
        if "decode_ms_per_token" in r:
            lines.append(f"| {r['size']} | {r['preset']} | {r['parameters'] / 1e6:.2f}M | "
                         f"{r['decode_ms_per_token']:.3f} | {r['weight_read_ms']:.3f} | "
                         f"{r['weight_read_gb_per_s']:.1f} | {r['decode_over_weight_read']:.1f}x |")
        elif "error" in r:
            lines.append(f"| {r['size']} | {r['preset']} | error: {r['error']} | | | | |")
    cv = report["convergence"]
    if cv and "runs" in cv:
        lines += ["", f"## Convergence: {cv['token_budget']:,} tokens, held-out nats/char ({cv['data']})", "",
                  "| preset | precision | steps | tokens | nats/char | tokens/s | wall s |",
                  "|---|---|---|---|---|---|---|"]
        for r in cv["runs"]:
            if "val_nats_per_char" in r:
                lines.append(f"| {r['preset']} | {r['precision']} | {r['steps']} | {r['tokens']:,} | "
                             f"{r['val_nats_per_char']:.4f} | {fmt(r['tokens_per_s'])} | {r['wall_s']:.1f} |")
            else:
                lines.append(f"| {r['preset']} | {r['precision']} | error: {r.get('error')} | | | | |")
        gap = cv["bf16_minus_fp32_nats_per_char"]
        lines += ["", "bf16 - fp32 nats/char: " + ", ".join(f"{p} {fmt(g, '+.4f')}" for p, g in gap.items()) + "."]
    elif cv and "error" in cv:
        lines += ["", f"## Convergence: error: {cv['error']}"]
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['section']}: {s['what']} ({s['reason']})" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def run_section(report: dict[str, Any], key: str, fn: Callable[[], Any], empty: Any) -> None:
    try:
        report[key] = fn()
    except Exception as e:  # one broken section must not cost the others' figures
        report[key] = {"error": error_text(e)} if isinstance(empty, dict) else [{"mode": key, "error": error_text(e)}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a shorter run (GPU: about 4 minutes; CPU: under 5)")
    parser.add_argument("--smoke", action="store_true", help="every section shrunk to seconds (the test's run)")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON; the Markdown table goes beside it (.md)")
    parser.add_argument("--data", help="a text file or folder for the convergence check (default: TinyShakespeare "
                                       "from the data cache on GPUs, a generated corpus on the CPU)")
    parser.add_argument("--time-limit", type=float, help="overall seconds (default: 460 on a GPU, 240 --quick)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args(argv)
    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise CheckError(f"--device cuda was asked for, but torch {torch.__version__} sees no CUDA GPU here "
                             f"(CUDA build: {torch.version.cuda or 'none'}); run it on a GPU machine or pass "
                             "--device cpu.")
        if args.time_limit is not None and not 10 <= args.time_limit <= 3600:
            raise CheckError(f"--time-limit must be between 10 and 3600 seconds, not {args.time_limit:g}.")
        if args.threads is not None and args.threads < 1:
            raise CheckError(f"--threads must be at least 1, not {args.threads}.")
        if args.data is not None and not Path(args.data).expanduser().exists():
            raise CheckError(f"--data {args.data} does not exist.")
        out = Path(args.out).expanduser()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckError(f"cannot create the folder for --out {out} ({e.strerror}).") from None
    except CheckError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    plan = make_plan(device, args.quick, args.smoke, args.time_limit)
    budget = Budget(plan.time_limit)
    report: dict[str, Any] = {"schema": "wavegpt-gpu-check/1", "device": device, "quick": args.quick,
                              "smoke": args.smoke, "time_limit_s": plan.time_limit, "machine": machine(device),
                              "modes": list(MODES), "presets": list(PRESETS), "control": CONTROL,
                              "notes": list(plan.notes)}
    if device == "cpu":
        report["notes"].append("fp16 on the CPU runs through torch's CPU autocast and GradScaler where torch has them "
                               "(wavegpt-train itself refuses fp16 on the CPU)")
        report["notes"].append("on the CPU peak memory is not measured per model (null; weights_and_optimizer_mb "
                               "is given) and MFU is null (no peak table for CPUs)")
    print(f"gpu_check: {describe_machine(report['machine'])}; limit {plan.time_limit:.0f} s", file=sys.stderr)
    sections = [
        ("training", lambda: training_section(device, plan, budget), []),
        ("mixers", lambda: mixers_section(device, plan, budget), {}),
        ("decode", lambda: decode_section(device, plan, budget), []),
        ("convergence", lambda: convergence_section(device, plan, budget, args.data,
                                                    device == "cpu" and args.quick), {}),
        ("compile", lambda: compile_section(device, plan, budget, report.get("training", [])), []),
    ]
    timings = {}
    for key, fn, empty in sections:
        budget.begin(key, SHARES[key], last=key == sections[-1][0])
        start = time.perf_counter()
        print(f"gpu_check: {key} (up to {budget.left():.0f} s)", file=sys.stderr, flush=True)
        run_section(report, key, fn, empty)
        timings[key] = round(time.perf_counter() - start, 1)
    compiled = report.pop("compile")
    report["training"] = [*report["training"], *compiled]
    report["section_wall_s"] = timings
    report["skipped"] = budget.skipped
    report["wall_s"] = round(time.perf_counter() - budget.start, 1)
    report["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    table = markdown(report)
    try:
        out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(table, encoding="utf-8")
    except OSError as e:
        print(f"gpu_check: cannot write {out} ({e.strerror}).", file=sys.stderr)
        return 1
    print(table)
    print(f"gpu_check: wrote {out} and {out.with_suffix('.md')} in {report['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        sys.exit(1)
