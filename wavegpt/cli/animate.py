"""wavegpt-animate: an MP4 of the wave dynamics while the model generates text.

    python animate.py --prompt "ROMEO:" --tokens 40 --output wave_dynamics.mp4
    python animate.py --checkpoint runs/tiny --layer 0 --head 1 --frames-per-token 3 --fps 12

Each generated token gets --frames-per-token frames showing, for that step of decoding:
the wave packet of the token being read, its attention (interference) over the context in
the chosen layer and head, the collapse of the next-token distribution (top 10, the
sampled token marked) and the text so far. A classic checkpoint has no wave packets; its
videos say so in that panel. Sampling flags mean what they mean for wavegpt-generate, so
the same checkpoint, --seed, --temperature, --top-k, --top-p and --repetition-penalty give
the same tokens.
The video is H.264 (yuv420p, faststart), playable in browsers and in the app.
"""

from __future__ import annotations

import argparse
import sys

from ..extras import require
from ..generation import check_prompt_text, load_for_generation
from ..validation import describe_os_error
from ..viz.animation import (
    MAX_FPS,
    MAX_FRAMES_PER_TOKEN,
    MAX_SIZE,
    MAX_TOKENS,
    MIN_FPS,
    MIN_SIZE,
    check_layer_head,
    check_output,
    check_render_args,
    parse_size,
    render_animation,
)
from . import add_sampling_arguments, checkpoint_or_shipped, prompt_parser, run_command, sampling_settings


def build_parser() -> argparse.ArgumentParser:
    p = prompt_parser("wavegpt-animate", __doc__)
    p.add_argument("--tokens", type=int, default=40, help=f"tokens to generate, 1 to {MAX_TOKENS} (default 40)")
    p.add_argument("--fps", type=int, default=8, help=f"video frames per second, {MIN_FPS} to {MAX_FPS} (default 8)")
    p.add_argument("--frames-per-token", type=int, default=1,
                   help=f"frames per generated token, 1 to {MAX_FRAMES_PER_TOKEN}; more frames ease the bars in "
                        "and let the wave packet travel (default 1)")
    p.add_argument("--output", metavar="FILE.mp4", default="wave_dynamics.mp4",
                   help="where to write the video; its folder must exist (default wave_dynamics.mp4)")
    p.add_argument("--size", metavar="WxH", default="1280x720",
                   help=f"frame size in pixels, both even, from {MIN_SIZE[0]}x{MIN_SIZE[1]} to "
                        f"{MAX_SIZE[0]}x{MAX_SIZE[1]} (default 1280x720)")
    p.add_argument("--layer", type=int, default=-1,
                   help="layer whose attention is shown; negative counts from the end (default -1, the last)")
    p.add_argument("--head", type=int, default=0, help="attention head shown (default 0)")
    add_sampling_arguments(p, seed_default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    return p


def run(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    args = build_parser().parse_args(argv)
    require("viz", "wavegpt-animate")


    # Everything that needs no model is checked before the (slow) checkpoint load.
    size = parse_size(args.size)
    check_render_args(args.tokens, args.fps, args.frames_per_token, size)
    settings = sampling_settings(args, args.tokens, flags={"max_new_tokens": "--tokens"})
    check_prompt_text(args.prompt)
    output = check_output(args.output)
    checkpoint = checkpoint_or_shipped(args.checkpoint)
    model, tokenizer = load_for_generation(checkpoint, args.device)
    check_layer_head(model, args.layer, args.head)
    with tqdm(total=args.tokens * args.frames_per_token, unit="frame", desc="rendering", file=sys.stderr,
              dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        result = render_animation(model, tokenizer, args.prompt, settings, output=output, fps=args.fps,
                                  frames_per_token=args.frames_per_token, layer=args.layer, head=args.head,
                                  size=size, progress=progress)
    print(result.path)
    print(f"{result.frames} frames in {result.seconds:.2f} s ({result.frames / max(result.seconds, 1e-9):.1f} "
          f"frames/s)")


def main(argv: list[str] | None = None) -> None:
    # OSError: e.g. ffmpeg failed or the disk filled up; no file is left at the output
    with run_command(also=[(OSError, lambda e: f"writing the video failed ({describe_os_error(e)}).", 1)]):
        run(argv)


if __name__ == "__main__":
    main()
