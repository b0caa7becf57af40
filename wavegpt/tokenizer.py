"""Byte-level BPE: every string encodes (no unknown token) and decodes back to exactly itself.

Saved as a Hugging Face `tokenizer.json`, so any `tokenizers` user can open a wavegpt checkpoint's tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .ownership import write_file_atomic
from .sampling import DEFAULT_TEMPERATURE, DEFAULT_TOP_K

EOT = "<|endoftext|>"
TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
GENERATION_CONFIG_NAME = "generation_config.json"


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

    @property
    def vocab_sha256(self) -> str:
        """Hash of the token -> id table alone: recorded in a model's config (extra.tokenizer_vocab_sha256)
        so a tokenizer from another vocabulary is refused even when its size matches."""
        table = sorted(self._tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        return hashlib.sha256(json.dumps(table, ensure_ascii=False).encode("utf-8")).hexdigest()

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
        write_file_atomic(path, self._tok.save)
        return path

    def save_pretrained(self, folder: str | Path, model_max_length: int | None = None) -> None:
        """tokenizer.json plus the two files transformers reads beside it: tokenizer_config.json (so
        `AutoTokenizer.from_pretrained(folder)` knows the end-of-text token) and generation_config.json
        (end-of-text as eos/pad, and the commands' sampling defaults from sampling.py)."""
        folder = Path(folder)
        self.save(folder / TOKENIZER_NAME)
        for name, data in ((TOKENIZER_CONFIG_NAME, self.tokenizer_config(model_max_length)),
                           (GENERATION_CONFIG_NAME, self.generation_config())):
            write_file_atomic(folder / name, lambda tmp, data=data: Path(tmp).write_text(
                json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"))

    def tokenizer_config(self, model_max_length: int | None = None) -> dict[str, Any]:
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT, "pad_token": EOT,
            "unk_token": None, "add_prefix_space": False, "clean_up_tokenization_spaces": False,
            "split_special_tokens": True,  # typed "<|endoftext|>" stays text, as WaveTokenizer.encode does
            "added_tokens_decoder": {str(self.eot_id): {"content": EOT, "lstrip": False, "normalized": False,
                                                        "rstrip": False, "single_word": False, "special": True}},
        }
        if model_max_length is not None:
            config["model_max_length"] = model_max_length
        return config

    def generation_config(self) -> dict[str, Any]:
        return {"bos_token_id": self.eot_id, "eos_token_id": self.eot_id, "pad_token_id": self.eot_id,
                "do_sample": True, "temperature": DEFAULT_TEMPERATURE, "top_k": DEFAULT_TOP_K}

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
