"""Generation speed: incremental decoding against recomputing the context, and how linear
mode's per-token cost stays flat as the context grows.

    python benchmarks/generate_speed.py
    python benchmarks/generate_speed.py --presets classic --new-tokens 128 --threads 4

(a) For each preset, new tokens/s with the cache and without it, generating --new-tokens
    from a --prompt-tokens prompt at the size's block_size (small: 256, so a run may cross
    one slide of the window), and the speedup (target >= 5x).
(b) The constant-state mixers (--flat-presets: pure_wave_linear, wave_network,
    wave_network_modulation) with block_size 2048: time per decoded token after prefilling a
    prompt of --short-context and of --long-context tokens, and their ratio (target <= 1.3x:
    the recurrent state does not grow with the context).

Random-init weights (the speed does not depend on training); the timings go through
`wavegpt.sampling.sample_tokens`, the loop every command uses. Prints Markdown tables;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from wavegpt import WaveGPT, WaveGPTConfig
from wavegpt.sampling import sample_tokens


def build(size: str, preset: str, vocab: int, **overrides: int) -> WaveGPT:
    torch.manual_seed(0)
    return WaveGPT(WaveGPTConfig.from_preset(size, preset, vocab_size=vocab, **overrides)).eval()


def prompt(model: WaveGPT, length: int) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(1))


def tokens_per_second(model: WaveGPT, idx: torch.Tensor, new_tokens: int, use_cache: bool) -> float:
    """New tokens/s over the whole call, prefill included (what a user waits for)."""
    gen = torch.Generator().manual_seed(0)
    for _ in sample_tokens(model, idx, 4, use_cache=use_cache, generator=gen):  # warm-up
        pass
    start = time.perf_counter()
    for _ in sample_tokens(model, idx, new_tokens, use_cache=use_cache, generator=gen):
        pass
    return new_tokens / (time.perf_counter() - start)


def seconds_per_decoded_token(model: WaveGPT, idx: torch.Tensor, new_tokens: int) -> float:
    """Cached decoding time per token after the prefill (the first token's step is excluded)."""
    gen = torch.Generator().manual_seed(0)
    start = 0.0
    for i, _ in enumerate(sample_tokens(model, idx, new_tokens + 1, generator=gen)):
        if i == 0:
            start = time.perf_counter()
    return (time.perf_counter() - start) / new_tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="small", help="size preset (default small)")
    p.add_argument("--presets", nargs="+", default=["full_physics", "classic", "pure_wave_linear", "wave_network",
                                                    "wave_network_modulation"])
    p.add_argument("--flat-presets", nargs="+", default=["pure_wave_linear", "wave_network", "wave_network_modulation"],
                   help="presets timed in part (b)")
    p.add_argument("--only-flat", action="store_true", help="run part (b) only")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--short-context", type=int, default=64)
    p.add_argument("--long-context", type=int, default=1024)
    p.add_argument("--decode-tokens", type=int, default=64, help="decoded tokens timed in part (b)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # Other busy processes make threads wait at every parallel region, which hurts the many
    # small ops of cached decoding far more than recomputation: note the load with the numbers.
    load = f" load={os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"model={args.model} vocab={args.vocab} threads={args.threads}{load} torch={torch.__version__}\n")

    if args.only_flat:
        args.presets = []
    print(f"(a) {args.new_tokens} new tokens from a {args.prompt_tokens}-token prompt")
    print("| preset | block_size | cache on (tok/s) | cache off (tok/s) | speedup |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        model = build(args.model, preset, args.vocab)
        idx = prompt(model, args.prompt_tokens)
        on = tokens_per_second(model, idx, args.new_tokens, use_cache=True)
        off = tokens_per_second(model, idx, args.new_tokens, use_cache=False)
        print(f"| {preset} | {model.config.block_size} | {on:.1f} | {off:.1f} | {on / off:.1f}x |", flush=True)

    block = max(2048, args.long_context + args.decode_tokens + 1)
    print(f"\n(b) block_size {block}: cached decoding after a prefill")
    print(f"| preset | ms/token at context {args.short_context} | at {args.long_context} "
          f"| long/short (target <= 1.3x) |")
    print("|---|---|---|---|")
    for preset in args.flat_presets:
        model = build(args.model, preset, args.vocab, block_size=block)
        times = {}
        for ctx in (args.short_context, args.long_context):
            seconds_per_decoded_token(model, prompt(model, ctx), 4)  # warm-up at this length
            times[ctx] = seconds_per_decoded_token(model, prompt(model, ctx), args.decode_tokens)
        ratio = times[args.long_context] / times[args.short_context]
        print(f"| {preset} | {1000 * times[args.short_context]:.2f} | {1000 * times[args.long_context]:.2f} | "
              f"{ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
