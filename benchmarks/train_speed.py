"""Training throughput (tokens/s) of every variant at matched parameter count.

    python benchmarks/train_speed.py --model small --context 256
    python benchmarks/train_speed.py --model small --presets pure_wave_linear --contexts 256 1024

A training step is forward + backward + optimizer step (each preset's own optimizer and
loss), on random tokens, after warm-up steps. Prints a Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import torch

from wavegpt import PRESETS, RGD, QFELoss, WaveGPT, WaveGPTConfig


def tokens_per_second(config: WaveGPTConfig, batch: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = WaveGPT(config)
    if config.optimizer == "rgd":
        opt = RGD(model.parameters(), lr=1e-4, resonance_strength=config.resonance_strength, warmup_steps=1)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None
    x = torch.randint(0, config.vocab_size, (batch, config.block_size))
    y = torch.randint(0, config.vocab_size, (batch, config.block_size))
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        logits, ce = model(x, y)
        loss = loss_fn(logits, y) if loss_fn else ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch * config.block_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--presets", nargs="+", default=["classic", *[p for p in PRESETS if p != "classic"]])
    parser.add_argument("--contexts", nargs="+", type=int, default=[256])
    parser.add_argument("--tokens-per-batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"model={args.model} tokens/batch={args.tokens_per_batch} threads={args.threads} torch={torch.__version__}")
    print("| preset | params | context | tokens/s | vs classic |")
    print("|---|---|---|---|---|")
    classic: dict[int, float] = {}
    for ctx in args.contexts:
        for preset in args.presets:
            config = WaveGPTConfig.from_preset(args.model, preset, block_size=ctx)
            tps = tokens_per_second(config, max(1, args.tokens_per_batch // ctx), args.steps, args.warmup)
            if preset == "classic":
                classic[ctx] = tps
            ratio = f"{tps / classic[ctx]:.2f}x" if ctx in classic else "-"
            params = WaveGPT(config).num_parameters()
            print(f"| {preset} | {params / 1e6:.2f}M | {ctx} | {tps:,.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
