"""The command-line entry points, one small module per command."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_checkpoint_argument(p: argparse.ArgumentParser) -> None:
    """--checkpoint as generate, animate and plots take it (default: the shipped model)."""
    p.add_argument("--checkpoint", metavar="FOLDER",
                   help="model folder written by wavegpt-train (a run folder or its best/ or checkpoint/); "
                        "default: the model shipped in checkpoints/ (or $WAVEGPT_CHECKPOINT)")


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
