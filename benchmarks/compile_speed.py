"""Training throughput of torch.compile (inductor) and bf16 autocast against eager float32.

    python benchmarks/compile_speed.py --models tiny small --presets full_physics classic

A step is forward + backward + optimizer step, as the trainer runs it (the preset's own
optimizer and loss, RGD's gate on from the first step) on random tokens: `eager` is the plain
model, `compiled` the model through torch.compile (what `wavegpt-train --compile` and
`accelerate launch --dynamo_backend inductor` train; the optimizer stays eager), `bf16` the
eager model under CPU/GPU bf16 autocast (what `--mixed-precision bf16` trains). The modes
are timed in turns over several rounds and each figure is the median round; compile time
(the first steps) is reported separately. Prints a Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time

import torch

from wavegpt import QFELoss, WaveGPT, WaveGPTConfig
from wavegpt.training.optim import build_optimizer

MODES = ("eager", "compiled", "bf16")


class Runner:
    def __init__(self, config: WaveGPTConfig, batch: int, mode: str, device: str):
        torch.manual_seed(0)
        self.config = dataclasses.replace(config, rgd_warmup_steps=1)
        model = WaveGPT(self.config).to(device)
        self.opt = build_optimizer(model, lr=1e-4)
        self.model = torch.compile(model) if mode == "compiled" else model
        self.autocast = (lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)) if mode == "bf16" \
            else contextlib.nullcontext
        self.loss_fn = QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None
        self.x = torch.randint(0, config.vocab_size, (batch, config.block_size), device=device)
        self.y = torch.randint(0, config.vocab_size, (batch, config.block_size), device=device)
        self.device = device

    def step(self) -> None:
        with self.autocast():
            logits, ce = self.model(self.x, self.y)
            loss = self.loss_fn(logits, self.y) if self.loss_fn else ce
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def timed(self, steps: int) -> float:
        self._sync()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self._sync()
        return time.perf_counter() - start

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "small"])
    parser.add_argument("--presets", nargs="+", default=["full_physics", "classic"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--tokens-per-batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu, {args.threads} thread(s)"
    print(f"tokens/batch={args.tokens_per_batch} rounds={args.rounds}x{args.steps} steps, {where}, "
          f"torch {torch.__version__}")
    header = " | ".join(f"{m} tokens/s" for m in args.modes)
    ratios = " | ".join(f"{m} / eager" for m in args.modes if m != "eager")
    print(f"| model | preset | {header} | {ratios} | compile time (s) |")
    print("|" + "---|" * (2 + 2 * len(args.modes)))
    for size in args.models:
        for preset in args.presets:
            config = WaveGPTConfig.from_preset(size, preset)
            batch = max(1, args.tokens_per_batch // config.block_size)
            runners = {m: Runner(config, batch, m, args.device) for m in args.modes}
            warm = {m: r.timed(args.warmup) for m, r in runners.items()}
            times: dict[str, list[float]] = {m: [] for m in args.modes}
            for _ in range(args.rounds):
                for m, r in runners.items():
                    times[m].append(r.timed(args.steps))
            tokens = args.steps * batch * config.block_size
            tps = {m: tokens / statistics.median(times[m]) for m in args.modes}
            compile_s = "-"
            if "compiled" in tps:  # warm-up time beyond what the same steps cost once compiled
                compile_s = f"{warm['compiled'] - args.warmup * statistics.median(times['compiled']) / args.steps:.0f}"
            cells = " | ".join(f"{tps[m]:,.0f}" for m in args.modes)
            rel = " | ".join(f"{tps[m] / tps['eager']:.2f}x" for m in args.modes if m != "eager" and "eager" in tps)
            print(f"| {size} | {preset} | {cells} | {rel} | {compile_s} |", flush=True)


if __name__ == "__main__":
    main()
