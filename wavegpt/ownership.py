"""What wavegpt may delete or replace, and the lock that keeps two processes out of one run folder.

THE RULE (every writer follows it; read this before adding one):

    wavegpt only ever deletes or replaces a file or folder that it created itself, and it
    recognises what it created by its own mark. Into a folder that holds anything else it
    writes only beside those files, under names that are free or already its own; a name
    taken by something wavegpt did not make is a one-sentence refusal, never an overwrite.

The marks:
- A training run folder holds RUN_MARKER (`.wavegpt-run`), written when a run first writes
  into it; run folders from before the marker are recognised by their `run.json` (the
  training arguments). Inside a run, only the names in RUN_ENTRIES (and the temporary and
  backup names derived from them) belong to wavegpt: `--overwrite` deletes those and
  nothing else, so a file the user put in a run folder survives.
- A model folder's files are recognised by their content: `model.safetensors` whose header
  metadata says `"library": "wavegpt"`, and a `config.json` holding a wavegpt config. Such a
  folder is replaced atomically when it holds nothing but model files (and a model card,
  which is carried over); otherwise each file is written beside the others.
- A classifier folder (`wavegpt-classify --out`) holds CLASSIFY_MARKER; only its own outputs
  are written there.
- Temporary names (`.<name>.tmp-*`, and `write_file_atomic`'s `.<stem>.*.tmp`) and backups
  (`<name>.old`) are only ever created by wavegpt next to its own files and folders.

RunLock: an advisory `flock` on RUN_LOCK inside the run folder, held for the whole run by
the main process. A second process refuses in one sentence. The kernel drops the lock when
its holder dies (even by SIGKILL), so a stale lock file never blocks `--resume`.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

try:  # POSIX; on Windows the lock falls back to msvcrt
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

RUN_MARKER = ".wavegpt-run"
RUN_LOCK = ".wavegpt-run.lock"
CLASSIFY_MARKER = ".wavegpt-classify"  # a folder wavegpt-classify wrote (its --out): only such folders are replaced
RUN_ENTRIES = (
    # What a training run writes into its folder. Anything else in a run folder is the user's.
    "checkpoint", "best", "metrics.jsonl", "run.json", "tokenizer.json", "learning_curve.png",
    "wavegpt", "tensorboard",  # the Accelerate trackers' logs
    "bench_result.json",  # wavegpt-bench's record of a finished run
    "trackers.json",  # the trackers' run ids, so that --resume continues them
    RUN_MARKER, RUN_LOCK,
)
# Entries whose presence means a run has written here (the marker and lock alone do not).
RUN_CONTENT = ("checkpoint", "best", "metrics.jsonl", "run.json", "checkpoint.old", "best.old")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "generation_config.json", "model.onnx")
CARRIED_FILES = ("README.md",)  # a model card: kept when a model folder is replaced
# A model folder shared with the user's files keeps wavegpt's model under STORE/<version>/, with STORE/current
# a link to the version in use (switched by one atomic rename) and each model file at the top a link
# `name -> STORE/current/name`: every reader sees one whole model at every instant (checkpoint.py).
MODEL_STORE = ".wavegpt-model"
CURRENT = "current"


def is_store_link(path: Path) -> bool:
    """A model file's link into the folder's MODEL_STORE, as checkpoint.model_folder_writer makes them."""
    try:
        return Path(path).is_symlink() and os.readlink(path) == f"{MODEL_STORE}/{CURRENT}/{Path(path).name}"
    except OSError:
        return False


class OwnershipError(ValueError):
    """wavegpt was asked to replace or delete something it did not create; one sentence."""


# --- recognising what wavegpt made -----------------------------------------------------


def is_run_folder(folder: Path) -> bool:
    """A folder a wavegpt training run wrote: its marker, or (older runs) its run.json."""
    folder = Path(folder)
    if (folder / RUN_MARKER).is_file():
        return True
    try:
        data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"preset", "model", "max_steps", "out"} <= set(data)


def run_owned(name: str) -> bool:
    """Whether an entry of a run folder, by its name, is one wavegpt writes there."""
    if name in RUN_ENTRIES or name in RUN_CONTENT:
        return True
    for base in RUN_ENTRIES:  # backups, temporary folders and files of atomic writes
        if name == f"{base}.old" or name.startswith(f".{base}.tmp-") or name == f"{base}.tmp":
            return True
    return name.startswith(".tokenizer.") and name.endswith(".tmp") or name == "metrics.tmp"


def holds_run(folder: Path) -> bool:
    """True when a run has written its files here (not just taken the lock)."""
    return is_run_folder(folder) and any((Path(folder) / name).exists() for name in RUN_CONTENT)


def is_wavegpt_config(path: Path) -> bool:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"d_model", "n_layers", "num_waves", "block_size"} <= set(data)


def is_wavegpt_weights(path: Path) -> bool:
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("library") == "wavegpt"
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def is_model_folder(folder: Path) -> bool:
    """A folder holding a wavegpt model (by its files' content)."""
    folder = Path(folder)
    return is_wavegpt_config(folder / "config.json") or is_wavegpt_weights(folder / "model.safetensors")


def foreign_model_file(folder: Path) -> str | None:
    """The first of MODEL_FILES in `folder` that wavegpt did not write (so must not be replaced), or None."""
    folder = Path(folder)
    ours = is_model_folder(folder)
    for name in MODEL_FILES:
        path = folder / name
        if not os.path.lexists(path) or is_store_link(path):  # wavegpt's own link (it may dangle mid-switch)
            continue
        if path.is_symlink() or not path.is_file():
            return name
        if name == "config.json" and not is_wavegpt_config(path):
            return name
        if name == "model.safetensors" and not is_wavegpt_weights(path):
            return name
        if name not in ("config.json", "model.safetensors") and not ours:
            return name
    return None


def check_model_target(folder: Path) -> None:
    """Refuse, in one sentence, a model-folder target that writing would damage: a file, a training run
    folder or a folder inside one, or a folder whose config/weights/tokenizer another program made."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise OwnershipError(f"{folder} is a file, not a folder; give a folder to write the model into.")
    for candidate in (folder, *folder.resolve().parents):
        if is_run_folder(candidate):
            where = "is a training run folder" if candidate.resolve() == folder.resolve() else \
                f"is inside the training run folder {candidate}"
            raise OwnershipError(f"{folder} {where}; write the model to a folder outside the run "
                                 f"(the run keeps its own best/ and checkpoint/).")
    if folder.is_dir():
        name = foreign_model_file(folder)
        if name is not None:
            raise OwnershipError(f"{folder / name} was not written by wavegpt, so it will not be replaced; "
                                 f"choose another folder.")
        old = folder.with_name(folder.name + ".old")
        if os.path.lexists(old) and not (old.is_dir() and not old.is_symlink() and is_model_folder(old)):
            raise OwnershipError(f"{old} exists and was not written by wavegpt (wavegpt keeps the previous "
                                 f"model there while it swaps); move it away or choose another folder.")


def replaceable_model_folder(folder: Path) -> bool:
    """True when the whole folder may be swapped atomically: missing, empty, or nothing but wavegpt's
    model files and a model card (which is carried over)."""
    folder = Path(folder)
    if folder.is_symlink():  # the link stays; the files go into the folder it points to
        return False
    if not folder.exists():
        return True
    names = {p.name for p in folder.iterdir()}
    return names <= set(MODEL_FILES) | set(CARRIED_FILES) and foreign_model_file(folder) is None \
        and all((folder / n).is_file() and not (folder / n).is_symlink() for n in names)


# --- the run lock -----------------------------------------------------------------------


class RunLockedError(RuntimeError):
    """Another live process trains in this run folder; one sentence."""


class RunLock:
    """Hold `<folder>/.wavegpt-run.lock` (flock, non-blocking) until release(); see the module docstring."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / RUN_LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock_fd(fd)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunLockedError(f"{self.folder} is in use by another wavegpt process{holder}; wait for it "
                                     f"to finish or choose another --out.") from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have unlinked the file between our open and our lock: then we
            # hold a lock on a file nobody else can see. Retry on the file that is there now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked, so nobody else is holding this inode
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_fd(fd: int) -> None:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise
        except OSError as e:  # a file system without locks (some network mounts): train unlocked
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        return
    import msvcrt  # pragma: no cover

    try:  # pragma: no cover
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # pragma: no cover
        raise BlockingIOError from None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        return ""
    if len(text) >= 2 and text[0].isdigit():
        return f" (pid {text[0]} on {text[1]})"
    return ""


def is_wavegpt_png(path: Path) -> bool:
    """A PNG that wavegpt drew: its Software text chunk says wavegpt. Any other PNG, matplotlib's included
    (which is what a user's own figure says), is not wavegpt's and is never replaced."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"Software\x00wavegpt" in head


def check_names_free(folder: Path, names: list[str], ours=is_wavegpt_png) -> None:
    """Refuse (OwnershipError) when one of `names` in `folder` holds something wavegpt did not write."""
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise OwnershipError(f"{folder} is a file, not a folder.")
    for name in names:
        path = folder / name
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file() or not ours(path)):
            raise OwnershipError(f"{path} was not written by wavegpt, so it will not be replaced; choose another "
                                 f"folder.")


def is_bench_file(path: Path) -> bool:
    """wavegpt-bench's own results (results.json, results.md) or comparison plots."""
    path = Path(path)
    if path.suffix == ".png":
        return is_wavegpt_png(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            return False
        return isinstance(data, dict) and {"machine", "summary", "runs"} <= set(data)
    return text.startswith("Budget per run: ")


def write_file_atomic(path: Path, write: Callable[[str], object], suffix: str = ".tmp") -> None:
    """`write(tmp)` fills a temporary sibling (`.<stem>.*<suffix>`), renamed over `path` only once complete,
    so no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
