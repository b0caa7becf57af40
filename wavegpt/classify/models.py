"""The classifier models (the paper's single-layer Wave Network, interference or modulation, and the
same-size one-layer transformer control) and their checkpoint folders (config.json, model.safetensors,
tokenizer.json), written atomically as every wavegpt model folder is (checkpoint.atomic_folder)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..checkpoint import atomic_folder, restore_backup
from ..config import MAX_BLOCK_SIZE, POSITIVE, ConfigError, Range, check_field_types, check_ranges
from ..ops.wave_network import global_wave_network
from ..tokenizer import WaveTokenizer
from .common import CONFIG_NAME, MODEL_NAME, TOKENIZER_NAME, VARIANTS, ClassifyError, _first_line

MODEL_TYPE = "wave_network_classifier"
MAX_CLASSIFIER_PARAMETERS = 1_000_000_000  # past this a size is a typo (--d-model 65536), refused before allocating
CLASSIFIER_RANGES = {"vocab_size": POSITIVE, "d_model": POSITIVE, "ffn_hidden": POSITIVE, "n_heads": POSITIVE,
                     "max_len": Range(1, MAX_BLOCK_SIZE), "num_classes": Range(2),
                     "dropout": Range(0.0, 1.0, high_open=True)}


@dataclass
class ClassifierConfig:
    variant: str = "modulation"
    vocab_size: int = 8192
    d_model: int = 256
    ffn_hidden: int = 1024  # the Wave Network's feed-forward width; the control's is matched to its size
    n_heads: int = 4  # the control's attention heads
    max_len: int = 256
    num_classes: int = 2
    dropout: float = 0.1
    labels: list[Any] = field(default_factory=list)  # class index -> label as it appears in the data
    label_names: list[str] = field(default_factory=list)  # display names (ClassLabel names, else str(label))
    text_column: str = "text"
    label_column: str = "label"
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Types (from the annotations) and ranges from the one table beside the language model's
        (config.check_ranges), then how the fields fit together; one sentence naming the field."""
        try:
            check_field_types(self)
            check_ranges(self, CLASSIFIER_RANGES, ClassifyError)
        except ConfigError as e:
            raise ClassifyError(str(e)) from None
        if self.variant not in VARIANTS:
            raise ClassifyError(f"variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}.")
        if self.d_model % self.n_heads:
            raise ClassifyError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}).")
        if (self.labels or self.label_names) and (len(self.labels) != self.num_classes
                                                  or len(self.label_names) != self.num_classes):
            raise ClassifyError(f"labels and label_names must name the num_classes ({self.num_classes}) classes, "
                                f"not {len(self.labels)} and {len(self.label_names)}.")
        if self.variant == "transformer" and self._control_gap() >= self.ffn_hidden:
            raise ClassifyError(f"The transformer control cannot be made as small as the Wave Network with "
                                f"--ffn-hidden {self.ffn_hidden}; use at least {self._control_gap() + 64}.")
        n = count_classifier_parameters(self)
        if n > MAX_CLASSIFIER_PARAMETERS:
            raise ClassifyError(f"This classifier would have {n / 1e9:,.1f} billion parameters, more than the "
                                f"{MAX_CLASSIFIER_PARAMETERS / 1e9:g} billion wavegpt-classify builds; lower d_model, "
                                f"ffn_hidden or vocab_size.")

    def _control_gap(self) -> int:
        d = self.d_model
        return round((self.max_len * d + 2 * (d * d + d)) / (2 * d + 1))

    @property
    def control_hidden(self) -> int:
        """The transformer control's feed-forward width that matches the Wave Network's parameter count."""
        # positions + attention's q, k (its v and out projections weigh what the two views weigh)
        return max(1, self.ffn_hidden - self._control_gap())


class _Head(nn.Module):
    """Mean over the real tokens, then a linear classifier."""

    def __init__(self, d: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(d, num_classes)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(h.dtype)[..., None]
        return self.classifier((h * m).sum(1) / m.sum(1).clamp_min(1.0))


class _FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class _Classifier(nn.Module):
    """What both classifiers share: the token table (built first) and, after the mixing layer, the
    feed-forward block with its two LayerNorms, dropout and the pooled head (built last, in this order)."""

    def _embedding(self, config: ClassifierConfig) -> None:
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def _feed_forward_and_head(self, config: ClassifierConfig, hidden: int) -> None:
        d = config.d_model
        self.norm1 = nn.LayerNorm(d)
        self.ffn = _FeedForward(d, hidden, config.dropout)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        self.head = _Head(d, config.num_classes)

    def _finish(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm2(h + self.ffn(h))
        return self.head(h, mask)


class WaveNetworkClassifier(_Classifier):
    """The paper's single-layer Wave Network (interference or modulation)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        d = config.d_model
        self.op = config.variant
        self._embedding(config)
        self.proj1, self.proj2 = nn.Linear(d, d), nn.Linear(d, d)
        self._feed_forward_and_head(config, config.ffn_hidden)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = self.drop(self.embedding(ids))
        z = global_wave_network(self.proj1(w), self.proj2(w), self.op, mask)
        return self._finish(self.norm1(z), mask)


class TransformerClassifier(_Classifier):
    """The control: one post-norm encoder layer with learned positions, the same pooling and head."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        d = config.d_model
        self._embedding(config)
        self.position = nn.Embedding(config.max_len, d)
        nn.init.normal_(self.position.weight, std=0.02)
        self.attn = nn.MultiheadAttention(d, config.n_heads, dropout=config.dropout, batch_first=True)
        self._feed_forward_and_head(config, config.control_hidden)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.embedding(ids) + self.position(pos))
        a, _ = self.attn(x, x, x, key_padding_mask=~mask.bool(), need_weights=False)
        return self._finish(self.norm1(x + self.drop(a)), mask)


def build_classifier(config: ClassifierConfig) -> nn.Module:
    config.validate()
    if config.variant == "transformer":
        return TransformerClassifier(config)
    return WaveNetworkClassifier(config)


def count_classifier_parameters(config: ClassifierConfig) -> int:
    """Parameter count without building the model."""
    d, V, C = config.d_model, config.vocab_size, config.num_classes
    ln, head = 2 * d, d * C + C
    if config.variant == "transformer":
        h = config.control_hidden
        return V * d + config.max_len * d + 4 * (d * d + d) + 2 * ln + (2 * d * h + h + d) + head
    h = config.ffn_hidden
    return V * d + 2 * (d * d + d) + 2 * ln + (2 * d * h + h + d) + head


def save_classifier(model: nn.Module, config: ClassifierConfig, tokenizer: WaveTokenizer, folder: Path) -> None:
    """config.json, model.safetensors, tokenizer.json, written into a temporary folder renamed into place."""
    with atomic_folder(folder) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / MODEL_NAME), metadata={"format": "pt", "wavegpt": "classifier"})
        (tmp / CONFIG_NAME).write_text(json.dumps({"model_type": MODEL_TYPE, **asdict(config)}, indent=2) + "\n",
                                       encoding="utf-8")
        tokenizer.save(tmp / TOKENIZER_NAME)


def is_classifier_folder(folder: Path) -> bool:
    """A folder save_classifier wrote (its config.json names the classifier)."""
    try:
        return json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def load_classifier(folder: str | os.PathLike[str]) -> tuple[nn.Module, ClassifierConfig, WaveTokenizer]:
    """A checkpoint folder, or a `wavegpt-classify train --out` folder holding one."""
    folder = Path(folder)
    restore_backup(folder / "checkpoint", is_classifier_folder)  # a save killed between its two renames
    restore_backup(folder, is_classifier_folder)
    if not folder.exists():
        raise ClassifyError(f"{folder} does not exist.")
    if (folder / "checkpoint" / CONFIG_NAME).is_file():
        folder = folder / "checkpoint"
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file() or not (folder / MODEL_NAME).is_file() or not (folder / TOKENIZER_NAME).is_file():
        raise ClassifyError(f"{folder} is not a wavegpt-classify checkpoint (it needs {CONFIG_NAME}, {MODEL_NAME} "
                            f"and {TOKENIZER_NAME}).")
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ClassifyError(f"{cfg_path} is not valid JSON.") from None
    if not isinstance(data, dict) or data.pop("model_type", None) != MODEL_TYPE:
        raise ClassifyError(f"{cfg_path} does not describe a wavegpt-classify classifier.")
    try:
        config = ClassifierConfig(**data)
        config.validate()
    except TypeError:
        raise ClassifyError(f"{cfg_path} does not describe a wavegpt-classify classifier.") from None
    except ClassifyError as e:
        raise ClassifyError(f"{cfg_path} is unusable: {e}") from None
    model = build_classifier(config)
    try:
        state = load_file(str(folder / MODEL_NAME))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise ClassifyError(f"{folder / MODEL_NAME} does not match its config or is damaged "
                            f"({_first_line(e)}).") from None
    try:
        tokenizer = WaveTokenizer.load(folder / TOKENIZER_NAME)
    except Exception as e:
        raise ClassifyError(f"{folder / TOKENIZER_NAME} cannot be read ({_first_line(e)}).") from None
    model.eval()
    return model, config, tokenizer


