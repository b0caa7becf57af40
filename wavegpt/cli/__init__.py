"""The command-line entry points, one small module per command."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_checkpoint_argument(p: argparse.ArgumentParser) -> None:
    """--checkpoint as generate, animate and plots take it (default: the shipped model)."""
    p.add_argument("--checkpoint", metavar="FOLDER",
                   help="model folder written by wavegpt-train (a run folder or its best/ or checkpoint/); "
                        "default: the model shipped in checkpoints/ (or $WAVEGPT_CHECKPOINT)")


def add_sampling_arguments(p: argparse.ArgumentParser, seed_default: int | None = None) -> None:
    """The sampling flags every sampling command shares (generate, animate): --temperature, --top-k,
    --top-p, --repetition-penalty, --seed. `sampling_settings` turns them into SamplingSettings."""
    from ..tokenizer import DEFAULT_TEMPERATURE, DEFAULT_TOP_K

    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                   help=f"softmax temperature; 0 is greedy, higher is more random (default {DEFAULT_TEMPERATURE})")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                   help=f"sample only among the k likeliest tokens; 0 turns it off (default {DEFAULT_TOP_K})")
    p.add_argument("--top-p", type=float, default=None,
                   help="nucleus sampling: only the likeliest tokens holding this much probability, in (0, 1] "
                        "(default: off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="above 1 makes tokens already in the text less likely (CTRL's penalty; 1.2 is a common "
                        "choice); 1 is off (default)")
    if seed_default is None:
        p.add_argument("--seed", type=int, default=None, help="random seed; the same seed gives the same text "
                                                              "(default: a fresh one, printed on stderr)")
    else:
        p.add_argument("--seed", type=int, default=seed_default,
                       help=f"random seed; the same seed gives the same tokens (default {seed_default})")


def sampling_settings(args: argparse.Namespace, max_new_tokens: int, **fields):
    """SamplingSettings from the flags add_sampling_arguments added (top-k 0 means off), plus command-specific
    fields; a ValueError names the wrong value in one sentence."""
    from ..sampling import SamplingSettings

    return SamplingSettings(max_new_tokens=max_new_tokens, temperature=args.temperature,
                            top_k=None if args.top_k == 0 else args.top_k, top_p=args.top_p,
                            repetition_penalty=args.repetition_penalty, seed=args.seed, **fields)


def checkpoint_or_shipped(given: str | None) -> str | Path:
    """The --checkpoint given, else the shipped model; ValueError with the reason when there is none."""
    from .. import generation  # looked up at call time, so tests can swap default_checkpoint

    if given is not None:
        return given
    shipped = generation.default_checkpoint()
    if shipped is None:
        raise ValueError(generation.NO_SHIPPED_CHECKPOINT)
    return shipped


def plain_warnings() -> None:
    """Show wavegpt's data warnings as one `warning: ...` line, without the source line Python prints
    under a warning (which reads like a traceback)."""
    import warnings

    from ..data import DataWarning

    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):  # noqa: ANN001 - warnings' own signature
        if issubclass(category, DataWarning):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
