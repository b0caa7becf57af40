"""The command-line entry points, one small module per command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .. import generation, hub
from ..data import DataError, DataWarning
from ..sampling import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, SamplingSettings
from ..validation import describe_os_error

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


def sampling_settings(args: argparse.Namespace, max_new_tokens: int, flags: dict[str, str] | None = None,
                      **fields):
    """SamplingSettings from the flags add_sampling_arguments added (top-k 0 means off), plus command-specific
    fields; a ValueError names the wrong value in one sentence."""

    try:
        return SamplingSettings(max_new_tokens=max_new_tokens, temperature=args.temperature,
                                top_k=None if args.top_k == 0 else args.top_k, top_p=args.top_p,
                                repetition_penalty=args.repetition_penalty, seed=args.seed, **fields)
    except ValueError as e:  # "top_p must be ..." as the flag the user typed: "--top-p must be ..."
        raise ValueError(as_flag(str(e), flags)) from None


def as_flag(message: str, flags: dict[str, str] | None = None) -> str:
    """A message that starts with a field name (`top_p must be ...`), starting with its flag instead."""
    field, _, rest = message.partition(" ")
    if not rest or not field.replace("_", "").isalpha() or not field.islower():
        return message
    return f"{(flags or {}).get(field, '--' + field.replace('_', '-'))} {rest}"


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


class Stopped(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` (temporary files, partial videos) runs."""


DEBUG_ENV = "WAVEGPT_DEBUG"  # set to 1: an unexpected error prints its traceback too
BUG_HINT = f"this is a bug in wavegpt: please report it (run again with {DEBUG_ENV}=1 to see the traceback)"


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:300] if text else type(e).__name__).rstrip(".")


def describe_failure(e: BaseException) -> tuple[str, int]:
    """An exception no command expected, as (one sentence, exit status): out of memory and a full disk are
    named as such; a write torch could not finish, too; anything else is a bug to report."""
    import errno

    try:
        import torch

        oom: tuple[type[BaseException], ...] = (MemoryError, torch.OutOfMemoryError)
    except ImportError:  # pragma: no cover - torch is a core dependency
        oom = (MemoryError,)
    if isinstance(e, oom):
        return (f"out of memory ({_first_line(e) if str(e) else type(e).__name__}); use a smaller model, batch or "
                f"context, or free memory (files saved before are intact).", 2)
    if isinstance(e, OSError):
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        return (f"{'the disk is full' if full else 'reading or writing failed'} ({describe_os_error(e)}); files "
                f"saved before are intact.", 2)
    if isinstance(e, RuntimeError) and ("failed writing" in str(e) or "file write failed" in str(e)):
        return (f"writing a file failed ({_first_line(e)}); check the free disk space (files saved before are "
                f"intact).", 2)
    return f"unexpected {type(e).__name__}: {_first_line(e)}; {BUG_HINT}.", 1


def _stop_on_sigterm():
    """Turn SIGTERM into `Stopped` in the main thread (returns the handler to put back, or None)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):  # noqa: ANN001 - signal's own signature
        raise Stopped()

    try:
        return signal.signal(signal.SIGTERM, stop)
    except (ValueError, OSError):  # pragma: no cover - an embedding that owns the signals
        return None


@contextmanager
def run_command(errors: ErrorTypes | None = None, *,
                also: Sequence[tuple[ErrorTypes, Callable[[BaseException], str], int]] = (),
                interrupted: str | None = INTERRUPTED, quiet_broken_pipe: bool = False) -> Iterator[None]:
    """The one error tail of every command: run the body (and flush stdout); an exception of `errors` (default
    command_errors()) prints `error: <its message>` on stderr and exits 2; else the first of `also` whose types
    match prints `error: <message(e)>` and exits with its code; any other exception is one sentence from
    `describe_failure` (out of memory, a full disk, or a bug to report, exit 1), with its traceback only under
    WAVEGPT_DEBUG=1. Ctrl-C prints `interrupted` (None: nothing) and exits 130; SIGTERM runs every cleanup and
    exits 143; with `quiet_broken_pipe`, a closed stdout (`| head`) exits 1 quietly. SystemExit (argparse's
    usage errors) passes through."""
    import signal

    errors = command_errors() if errors is None else errors
    previous = _stop_on_sigterm()
    try:
        yield
        sys.stdout.flush()  # a full disk under stdout fails here, inside the tail, not at interpreter exit
    except KeyboardInterrupt:
        if interrupted is not None:
            print(interrupted, file=sys.stderr)
        sys.exit(130)
    except Stopped:
        print("error: stopped (SIGTERM); files saved before are intact.", file=sys.stderr)
        sys.exit(143)
    except Exception as e:
        if quiet_broken_pipe and isinstance(e, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # keep Python from complaining at exit
            sys.exit(1)
        if isinstance(e, OSError) and e.filename is None:  # stdout's own write failed
            _quiet_stdout_at_exit(e)
        if isinstance(e, errors) and not isinstance(e, OSError):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        for types, message, code in also:
            if isinstance(e, types):
                print(f"error: {message(e)}", file=sys.stderr)
                sys.exit(code)
        message, code = describe_failure(e)
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            import traceback

            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _leave_abandoned_network_calls()


def _leave_abandoned_network_calls() -> None:
    """A Hub call given up at its deadline may still hold threads that wait on the silent endpoint (and that
    the interpreter would join at exit): a command then ends at once, its message already printed."""
    if hub.ABANDONED and __name__ != "__main__":
        exc = sys.exc_info()[1]
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 2
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _quiet_stdout_at_exit(e: OSError) -> None:
    """After stdout itself failed (a full disk, a closed pipe), keep Python from failing again when it flushes
    stdout at exit."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EPIPE, errno.EIO):
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
