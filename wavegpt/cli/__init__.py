"""The command-line entry points, one small module per command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .. import generation
from ..data import DataError, DataWarning
from ..sampling import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, SamplingSettings

ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]
INTERRUPTED = "\nerror: interrupted."


def command_errors() -> tuple[type[BaseException], ...]:
    """The errors every command reports as `error: <sentence>` with exit status 2: ValueError (ConfigError,
    CheckpointError, MissingExtraError, OwnershipError, ClassifyError... are ValueErrors) and DataError."""

    return (ValueError, DataError)


def add_checkpoint_argument(p: argparse.ArgumentParser) -> None:
    """--checkpoint as generate, animate and plots take it (default: the shipped model)."""
    p.add_argument("--checkpoint", metavar="FOLDER",
                   help="model folder written by wavegpt-train (a run folder or its best/ or checkpoint/); "
                        "default: the model shipped in checkpoints/ (or $WAVEGPT_CHECKPOINT)")


def prompt_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The parser generate and animate start from: --checkpoint and --prompt."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_argument(p)
    p.add_argument("--prompt", default="", help="text to continue (default: empty, starting from a newline)")
    return p


def add_sampling_arguments(p: argparse.ArgumentParser, seed_default: int | None = None) -> None:
    """The sampling flags every sampling command shares (generate, animate): --temperature, --top-k,
    --top-p, --repetition-penalty, --seed. `sampling_settings` turns them into SamplingSettings."""

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

    return SamplingSettings(max_new_tokens=max_new_tokens, temperature=args.temperature,
                            top_k=None if args.top_k == 0 else args.top_k, top_p=args.top_p,
                            repetition_penalty=args.repetition_penalty, seed=args.seed, **fields)


def checkpoint_or_shipped(given: str | None) -> str | Path:
    """The --checkpoint given, else the shipped model; ValueError with the reason when there is none."""

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


    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):  # noqa: ANN001 - warnings' own signature
        if issubclass(category, DataWarning):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = one_line


@contextmanager
def run_command(errors: ErrorTypes | None = None, *,
                also: Sequence[tuple[ErrorTypes, Callable[[BaseException], str], int]] = (),
                interrupted: str | None = INTERRUPTED, quiet_broken_pipe: bool = False) -> Iterator[None]:
    """The one error tail of the commands: run the body; an exception of `errors` (default command_errors())
    prints `error: <its message>` on stderr and exits 2; else the first of `also` whose types match prints
    `error: <message(e)>` and exits with its code; Ctrl-C prints `interrupted` (None: nothing) and exits 130;
    with `quiet_broken_pipe`, a closed stdout (`| head`) exits 1 quietly. Anything else is a bug and keeps its
    traceback; SystemExit (argparse's usage errors) passes through."""
    errors = command_errors() if errors is None else errors
    try:
        yield
    except KeyboardInterrupt:
        if interrupted is not None:
            print(interrupted, file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if quiet_broken_pipe and isinstance(e, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # keep Python from complaining at exit
            sys.exit(1)
        if isinstance(e, errors):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        for types, message, code in also:
            if isinstance(e, types):
                print(f"error: {message(e)}", file=sys.stderr)
                sys.exit(code)
        raise
