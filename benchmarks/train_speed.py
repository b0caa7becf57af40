"""Training throughput (tokens/s) of every variant at matched parameter count.

    python benchmarks/train_speed.py --model small --context 256
    python benchmarks/train_speed.py --model small --presets pure_wave_linear --contexts 256 1024

A training step is forward + backward + optimizer step (each preset's own optimizer and
loss, built as the trainer builds them, with RGD's resonance gate on from the first step),
on random tokens, after warm-up steps. The presets are measured in turns over several
rounds and each figure is the median round, so a passing background load hits all alike.
Ratios are against `--baseline` (default classic_rope, the strongest control). Prints a
Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from wavegpt import PRESETS, QFELoss, WaveGPT, WaveGPTConfig
from wavegpt.training.optim import build_optimizer


class Runner:
    """One preset's model, optimizer and batch, kept across rounds."""

    def __init__(self, config: WaveGPTConfig, batch: int):
        torch.manual_seed(0)
        self.config = dataclasses.replace(config, rgd_warmup_steps=1)  # the gate's full cost from step 1
        self.model = WaveGPT(self.config)
        self.opt = build_optimizer(self.model, lr=1e-4)
        self.loss_fn = QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None
        self.x = torch.randint(0, config.vocab_size, (batch, config.block_size))
        self.y = torch.randint(0, config.vocab_size, (batch, config.block_size))

    def step(self) -> None:
        logits, ce = self.model(self.x, self.y)
        loss = self.loss_fn(logits, self.y) if self.loss_fn else ce
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def tokens_per_second(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * self.x.numel() / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--baseline", default="classic_rope", help="the preset the ratios compare with")
    parser.add_argument("--contexts", nargs="+", type=int, default=[256])
    parser.add_argument("--tokens-per-batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per preset per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presets = list(dict.fromkeys([args.baseline, *args.presets]))
    print(f"model={args.model} tokens/batch={args.tokens_per_batch} threads={args.threads} "
          f"rounds={args.rounds}x{args.steps} steps torch={torch.__version__}")
    print(f"| preset | params | context | tokens/s | vs {args.baseline} |")
    print("|---|---|---|---|---|")
    for ctx in args.contexts:
        runners = {p: Runner(WaveGPTConfig.from_preset(args.model, p, block_size=ctx),
                             max(1, args.tokens_per_batch // ctx)) for p in presets}
        for r in runners.values():
            for _ in range(args.warmup):
                r.step()
        rounds: dict[str, list[float]] = {p: [] for p in presets}
        for _ in range(args.rounds):
            for p, r in runners.items():
                rounds[p].append(r.tokens_per_second(args.steps))
        base = statistics.median(rounds[args.baseline])
        for p in presets:
            tps = statistics.median(rounds[p])
            params = runners[p].model.num_parameters()
            print(f"| {p} | {params / 1e6:.2f}M | {ctx} | {tps:,.0f} | {tps / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
