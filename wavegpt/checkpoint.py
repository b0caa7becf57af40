"""Model folders in Hugging Face's layout: config.json + model.safetensors (+ tokenizer.json).

Every write goes to a temporary sibling folder that is renamed into place only when it is
complete, so a crash mid-save never leaves a half-written checkpoint; loading reads plain
tensors with safetensors, so a checkpoint cannot run code. This module knows the folder
format, not the model class: `WaveGPT.from_pretrained` / `save_pretrained` (model/gpt.py) are
built on it, and a model here is anything with `config`, `state_dict()` and `tied_weight_names`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, WaveGPTConfig, count_parameters
from .hub import HubError, download, is_repo_id
from .ownership import (
    CARRIED_FILES,
    CURRENT,
    MODEL_FILES,
    MODEL_STORE,
    check_model_target,
    is_model_folder,
    is_store_link,
    replaceable_model_folder,
)
from .tokenizer import WaveTokenizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"


class CheckpointError(ValueError):
    """A folder that is not a usable wavegpt checkpoint; the message is one sentence."""


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it takes the place of `folder` in one step.

    THE folder write of wavegpt (run checkpoints, best/, exports, save_pretrained, the classifier): where the
    OS can exchange two folders atomically (Linux renameat2 RENAME_EXCHANGE), the new folder and the old one
    swap places in one rename, so every reader sees the old or the new folder whole at every instant, and the
    old one, now under the temporary name, is deleted after. Elsewhere it falls back to two renames; a kill
    between them leaves the previous version as `<folder>.old`, which `restore_backup` puts back.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it owner-only; a model folder is as readable as any other
    try:
        yield tmp
        publish_folder(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish_folder(tmp: Path, folder: Path) -> None:
    """Put the finished folder `tmp` in the place of `folder` (see atomic_folder); `tmp` is gone after."""
    if folder.is_dir() and not folder.is_symlink() and exchange(tmp, folder):
        shutil.rmtree(tmp, ignore_errors=True)  # the previous version, now under the temporary name
        return
    old = folder.with_name(folder.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic rename (Linux 3.15+ renameat2); False where the OS or file system cannot."""
    if sys.platform != "linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def model_folder_writer(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder to fill with model files, which then land in `folder` by the rule in
    wavegpt/ownership.py, atomically as a whole in every case: a missing folder, or one holding only wavegpt's
    model files (and a model card, carried over), is replaced by atomic_folder; a folder that also holds the
    user's files gets the model under MODEL_STORE/<version>/, switched by one rename of MODEL_STORE/current,
    with each model file at the top a link into it (nothing else there is touched). A file or a training run
    folder (or a folder inside one) as the target, or a model file there that wavegpt did not write, is an
    OwnershipError."""
    folder = Path(folder)
    check_model_target(folder)
    if replaceable_model_folder(folder):
        with atomic_folder(folder) as tmp:
            yield tmp
            for name in CARRIED_FILES:
                if (folder / name).is_file() and not (tmp / name).exists():
                    shutil.copy2(folder / name, tmp / name)
        return
    store = folder / MODEL_STORE
    store.mkdir(exist_ok=True)
    version = Path(tempfile.mkdtemp(prefix="v-", dir=store))
    os.chmod(version, 0o777 & ~_UMASK)
    try:
        yield version
        check_model_target(folder)  # nothing changed under us while the files were written
        for p in version.iterdir():
            os.chmod(p, 0o666 & ~_UMASK)
        switch_version(folder, version)
    finally:
        if version.exists() and not _is_current(store, version):
            shutil.rmtree(version, ignore_errors=True)


def _is_current(store: Path, version: Path) -> bool:
    try:
        return os.readlink(store / CURRENT) == version.name
    except OSError:
        return False


def _link(path: Path, target: str) -> None:
    """Make `path` a symlink to `target`, atomically (a temporary link renamed over it)."""
    tmp = path.with_name(f".{path.name}.link-{os.getpid()}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def switch_version(folder: Path, version: Path) -> None:
    """Make `version` (a finished folder inside MODEL_STORE) the folder's model in one rename. Model files an
    older wavegpt wrote at the top as plain files move into a version of their own first, file by file, each
    keeping its content, so the old model stays whole until the switch."""
    store = folder / MODEL_STORE
    plain = [n for n in MODEL_FILES if (folder / n).is_file() and not (folder / n).is_symlink()]
    if plain:  # written before the store existed: keep them whole, as a version, behind links
        old = Path(tempfile.mkdtemp(prefix="v-", dir=store))
        os.chmod(old, 0o777 & ~_UMASK)
        for name in plain:
            try:
                os.link(folder / name, old / name)
            except OSError:
                shutil.copy2(folder / name, old / name)
        _link(store / CURRENT, old.name)
        for name in plain:
            _link(folder / name, f"{MODEL_STORE}/{CURRENT}/{name}")
    for name in CARRIED_FILES:  # the model card this folder's model had: carried into the new version
        if is_store_link(folder / name) and (folder / name).is_file() and not (version / name).exists():
            shutil.copy2(folder / name, version / name)
    names = [p.name for p in version.iterdir()]
    for name in names:  # the links the new version needs (they may dangle for an instant: no half model)
        path = folder / name
        if name in CARRIED_FILES and os.path.lexists(path) and not is_store_link(path):
            continue  # the user's own README.md: never replaced
        if not is_store_link(path):
            _link(path, f"{MODEL_STORE}/{CURRENT}/{name}")
    _link(store / CURRENT, version.name)  # THE switch
    for name in MODEL_FILES + CARRIED_FILES:  # links to files the new version does not have
        if name not in names and is_store_link(folder / name):
            os.unlink(folder / name)
    for other in store.iterdir():  # earlier versions, and versions of writes killed before their switch
        if other.name not in (CURRENT, version.name) and other.is_dir() and not other.is_symlink():
            shutil.rmtree(other, ignore_errors=True)


def restore_backup(folder: Path, is_ours: Callable[[Path], bool]) -> None:
    """Undo a save killed between atomic_folder's two renames: `<folder>.old` with no `<folder>` is put back,
    when `is_ours` recognises it as wavegpt's own backup (a model folder, a classifier checkpoint)."""
    old = folder.with_name(folder.name + ".old")
    if not os.path.lexists(folder) and old.is_dir() and not old.is_symlink() and is_ours(old):
        os.replace(old, folder)


def resolve_checkpoint(folder: str | Path) -> Path:
    """The folder that holds model.safetensors: the folder itself, or inside a training run
    folder its `best/` then `checkpoint/` model; restores an interrupted swap. A Hub repo id
    (`org/name`) that is not a local path is downloaded (or found in the Hub cache)."""
    folder = Path(folder)
    restore_backup(folder, is_model_folder)
    if not folder.exists() and is_repo_id(folder):  # "org/name": a model on the Hugging Face Hub
        try:
            folder = download(str(folder))
        except HubError as e:
            raise CheckpointError(str(e)) from None
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"Checkpoint folder {folder} is a file, not a folder; give the folder that holds "
                              f"config.json and model.safetensors.")
    if not folder.is_dir():
        raise CheckpointError(f"Checkpoint folder {folder} does not exist.")
    for candidate in (folder, folder / "best", folder / "checkpoint"):
        if (candidate / WEIGHTS_NAME).is_file() or (candidate / CONFIG_NAME).is_file():
            return candidate
    raise CheckpointError(f"{folder} is not a wavegpt checkpoint (no {CONFIG_NAME} or {WEIGHTS_NAME} in it).")


def write_model_files(model: torch.nn.Module, folder: Path, dtype: torch.dtype | None = None,
                      state: dict[str, torch.Tensor] | None = None) -> None:
    """Write config.json and model.safetensors into an existing folder (tied weights once). `state`: the
    weights to write instead of model.state_dict() (the trainer's full state dict of a sharded model)."""
    state = dict(model.state_dict() if state is None else state)
    for name in model.tied_weight_names:  # tied to the token (or bootstrap) table
        state.pop(name, None)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
               for k, v in state.items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "library": "wavegpt"})
    os.chmod(folder / WEIGHTS_NAME, 0o666 & ~_UMASK)  # safetensors writes it owner-only
    (folder / CONFIG_NAME).write_text(model.config.to_json() + "\n", encoding="utf-8")


def save_model(model: torch.nn.Module, folder: str | Path, dtype: torch.dtype | None = None,
               tokenizer: WaveTokenizer | str | Path | None = None) -> None:
    """save_pretrained: write the whole model folder atomically; with a tokenizer (or the path of
    its tokenizer.json) also tokenizer.json, tokenizer_config.json and generation_config.json."""
    if tokenizer is not None and not isinstance(tokenizer, WaveTokenizer):
        tokenizer = WaveTokenizer.load(tokenizer)
    with model_folder_writer(folder) as tmp:
        write_model_files(model, tmp, dtype)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp, model_max_length=model.config.block_size)


def load_config(folder: str | Path) -> WaveGPTConfig:
    return read_config(resolve_checkpoint(folder))


def read_config(folder: Path) -> WaveGPTConfig:
    """The config of a resolved model folder (see resolve_checkpoint)."""
    try:
        return WaveGPTConfig.from_json(folder / CONFIG_NAME)
    except ConfigError as e:
        raise CheckpointError(f"The config in {folder} is unusable: {e}") from None


def _upgrade_legacy_tensors(tensors: dict[str, torch.Tensor],
                            expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints from before FSDP support hold `embedding.wave_ratio` as a 0-d tensor; it is now shape (1,)."""
    return {k: (v.reshape(1) if v.dim() == 0 and k in expected and expected[k].shape == (1,) else v)
            for k, v in tensors.items()}


def check_weights_header(folder: Path, config: WaveGPTConfig) -> None:
    """model.safetensors' header (names and shapes; nothing is read or allocated) against the model config.json
    describes, before that model is built: a vocab_size of 4 million beside weights for 1,024 tokens is one
    sentence, not an 8 GB allocation. The exact shapes are compared again when the weights are read."""
    from safetensors import safe_open

    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}.")
    try:
        with safe_open(str(path), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}).") from None
    stored = sum(math.prod(s) for s in shapes.values())
    described = count_parameters(config)
    if stored != described:
        table = next((s for k, s in shapes.items() if k.endswith("amplitudes") or k.endswith("token.weight")), None)
        vocab = f" (vocab_size {config.vocab_size:,}; the weights' table has {table[0]:,} rows)" if table else ""
        raise CheckpointError(f"{path} holds {stored:,} weights but config.json describes a model of "
                              f"{described:,}{vocab}; config.json and the weights do not belong together.")


def read_weights(folder: Path, expected: dict[str, torch.Tensor],
                 map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The float32 tensors of a resolved model folder, checked against the state dict a model built from its
    config expects (tied names left out): every tensor present, none extra, every shape equal."""
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}.")
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}).") from None
    tensors = _upgrade_legacy_tensors(tensors, expected)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"{path} is missing tensor(s) {', '.join(missing[:3])} that config.json needs.")
    if unexpected:
        raise CheckpointError(f"{path} has tensor(s) {', '.join(unexpected[:3])} that config.json does not use.")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"Tensor {name} in {path} has shape {tuple(tensor.shape)} but config.json needs "
                f"{tuple(expected[name].shape)}."
            )
    return {k: v.float() for k, v in tensors.items()}
