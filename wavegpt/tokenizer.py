"""Byte-level BPE: every string encodes (no unknown token) and decodes back to exactly itself.

Saved as a Hugging Face `tokenizer.json`, so any `tokenizers` user can open a wavegpt checkpoint's tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"
TOKENIZER_NAME = "tokenizer.json"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Tokenizer:
    """BPE over bytes: the 256-byte initial alphabet means text never seen in training still encodes."""
    tok = Tokenizer(models.BPE())
    # No prefix space: a leading space would be invented on encode and survive decode, breaking round trips.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


class WaveTokenizer:
    """The few verbs the model needs, with the settings that make encode/decode lossless."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        # A literal "<|endoftext|>" typed by a user stays text; only the data pipeline inserts the separator.
        self._tok.encode_special_tokens = True
        eot = tokenizer.token_to_id(EOT)
        if eot is None:
            raise ValueError(f"The tokenizer has no {EOT} token, so it was not made by wavegpt.")
        self.eot_id: int = eot

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024) -> WaveTokenizer:
        return cls(train_tokenizer(texts, vocab_size))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def sha256(self) -> str:
        """Content hash: token caches are keyed by it, so a different tokenizer never reuses stale tokens."""
        return hashlib.sha256(self._tok.to_str().encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Rust-side batch encoding, parallel across cores."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        # The separator shows as <|endoftext|> rather than vanishing, so document boundaries stay visible.
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def save(self, path: str | Path) -> Path:
        """Write `tokenizer.json` into a folder, or to a `.json` path; atomic, so none sees half a file."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / TOKENIZER_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokenizer.", suffix=".tmp")
        os.close(fd)
        try:
            self._tok.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> WaveTokenizer:
        """Accept a checkpoint folder or the file itself, and name the problem in one sentence."""
        path = Path(path)
        file = path / TOKENIZER_NAME if path.is_dir() else path
        if not file.is_file():
            raise ValueError(f"No tokenizer found at {file}.")
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # noqa: BLE001 -- tokenizers raises a bare Exception for malformed files
            reason = " ".join(str(e).split())[:200]
            raise ValueError(f"{file} is not a readable tokenizer file ({reason}).") from None
        return cls(tok)
