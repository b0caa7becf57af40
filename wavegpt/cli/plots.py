"""wavegpt-plots: PNG plots of a trained wave model's wave packets, phases and interference.

    wavegpt-plots --checkpoint runs/tiny --out plots/
    wavegpt-plots --checkpoint runs/tiny/best --text "JULIET: O Romeo, Romeo!" --metrics runs/tiny/metrics.jsonl

Writes learning_curve.png (when the run's metrics.jsonl is found, or --metrics names one),
frequency_heatmap.png, phase_distribution.png, harmonic_profiles.png, wave_packets.png,
polar_phases.png, complex_plane.png, spectrogram.png, interference_pattern.png and
wave_surface_3d.png, then prints their paths. A classic checkpoint has no wave packets: only
its learning curve is written, and the command fails with exit status 2.
"""

from __future__ import annotations

import argparse

from ..extras import require
from . import add_checkpoint_argument, checkpoint_or_shipped, command_errors, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wavegpt-plots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_argument(p)
    p.add_argument("--out", metavar="FOLDER", default="plots",
                   help="folder for the PNG files, created if missing (default plots/)")
    p.add_argument("--text", default=None,
                   help="sample text whose tokens are drawn (default: a few lines of Romeo and Juliet)")
    p.add_argument("--metrics", metavar="PATH", default=None,
                   help="metrics.jsonl for the learning curve (default: the run folder's, if any)")
    return p


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    require("viz", "wavegpt-plots", ("matplotlib",))
    from ..viz.wave_plots import DEFAULT_SAMPLE_TEXT, plot_wave_model

    checkpoint = checkpoint_or_shipped(args.checkpoint)
    text = DEFAULT_SAMPLE_TEXT if args.text is None else args.text
    written = plot_wave_model(checkpoint, args.out, metrics_path=args.metrics, sample_text=text)
    for path in written.values():
        print(path)


def main(argv: list[str] | None = None) -> None:
    # OSError: e.g. an --out folder that cannot be created or a full disk
    with run_command((*command_errors(), OSError)):
        run(argv)


if __name__ == "__main__":
    main()
