"""Animation speed: frames/s of `wavegpt.viz.animation.render_animation` at 1280x720, and where the time goes.

    python benchmarks/animation_speed.py
    python benchmarks/animation_speed.py --models small tiny --tokens 60 --threads 1

For each model size (random-init weights of the `full_physics` preset; speed does not depend
on training), one render of --tokens tokens, one frame per token, the whole call timed
(figure setup, ffmpeg start and the final mux included). The time splits into the model's
share (the forward passes and sampling inside `sample_tokens`), drawing (updating and
rasterising the figure) and encoding (handing frames to ffmpeg, which encodes in its own
process meanwhile, and finishing the file). "render+encode frames/s" is frames over drawing
plus encoding: the animation's own speed, whatever the model costs (target >= 10).
The tokenizer is trained on the package's own source so that the vocabulary is realistic
(1024 tokens) without downloading anything. Torch runs on --threads threads (default 1:
decoding one token is many tiny ops, and on a small CPU shared with other work a second
thread mostly waits; compare with benchmarks/generate_speed.py). Prints a Markdown table;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from wavegpt import WaveGPT, WaveGPTConfig
from wavegpt.tokenizer import WaveTokenizer
from wavegpt.viz.animation.render import render_animation


def corpus() -> list[str]:
    """The package's source files: enough varied text for a 1024-token BPE, offline."""
    root = Path(__file__).resolve().parent.parent / "wavegpt"
    return [p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["small", "tiny"], help="size presets (default small tiny)")
    p.add_argument("--preset", default="full_physics")
    p.add_argument("--tokens", type=int, default=60)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    tokenizer = WaveTokenizer.train(corpus(), vocab_size=args.vocab)
    load = f" load={os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{args.tokens} tokens, 1 frame per token, {size[0]}x{size[1]}, preset {args.preset}, "
          f"vocab {tokenizer.vocab_size}, threads={args.threads}{load} torch={torch.__version__}\n")
    print("| model | params | wall frames/s | model s | drawing s | encoding s | other s | render+encode frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            config = WaveGPTConfig.from_preset(name, args.preset, vocab_size=tokenizer.vocab_size)
            model = WaveGPT(config).eval()
            r = render_animation(model, tokenizer, "The wave", tokens=args.tokens, output=Path(tmp) / f"{name}.mp4",
                                 size=size, seed=0, top_k=50)
            other = r.seconds - r.model_seconds - r.draw_seconds - r.encode_seconds
            print(f"| {name} | {model.num_parameters() / 1e6:.1f}M | {r.frames / r.seconds:.1f} | "
                  f"{r.model_seconds:.2f} | {r.draw_seconds:.2f} | {r.encode_seconds:.2f} | {other:.2f} | "
                  f"{r.frames / (r.draw_seconds + r.encode_seconds):.1f} |", flush=True)
    print("\n'other' is setup: building the figure, loading fonts, starting ffmpeg.")


if __name__ == "__main__":
    main()
