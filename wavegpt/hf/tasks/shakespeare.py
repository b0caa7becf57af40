"""The wavegpt_shakespeare task's documents, read from local files only; importing this module also registers
lm_eval's `wavegpt` model, so `lm_eval --model wavegpt --tasks .../wavegpt_shakespeare.yaml` works as it is."""

from __future__ import annotations

import hashlib
from pathlib import Path

import wavegpt.hf.lm_eval  # noqa: F401  (registers --model wavegpt)
from wavegpt.data import (
    SHAKESPEARE_FILE,
    SHAKESPEARE_SHA256,
    VAL_FRACTION,
    DataError,
    default_cache_dir,
    read_text_source,
)


def held_out_text(data: str | None = None, split: str = "val") -> str:
    """The text wavegpt-eval scores: the last 10% of the characters (split "val") or all of them ("all"), of
    `data` (a text file or folder) or of the cached TinyShakespeare."""
    if data is None:
        path = default_cache_dir() / SHAKESPEARE_FILE
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != SHAKESPEARE_SHA256:
            raise DataError(f"No verified TinyShakespeare at {path} (this task never downloads); run "
                            f"`wavegpt-eval --dataset shakespeare` once online, place a verified copy there, or pass "
                            f"--metadata '{{\"data\": \"FILE\"}}'.")
    else:
        path = Path(data).expanduser()
    text = read_text_source(path)
    if split == "all":
        return text
    if split != "val":
        raise DataError(f"split must be val or all, not {split!r}.")
    return text[int(len(text) * (1 - VAL_FRACTION)):]


def load(data: str | None = None, split: str = "val", **metadata):
    import datasets

    return {"test": datasets.Dataset.from_list([{"text": held_out_text(data, split)}])}
