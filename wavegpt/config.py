"""One config dataclass for every model wavegpt builds, plus the named sizes and presets.

A config is plain data: it round-trips through `config.json` and fully determines the
architecture. The training choices that a preset fixes (optimizer and loss) live here
too, so a checkpoint says how it was trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODEL_TYPES = ("wave", "classic")
MODEL_TYPE_PREFIX = "wavegpt."  # config.json says "wavegpt.wave": a type no other library claims
FOREIGN_KEYS = "foreign_keys"  # extra[...]: config.json keys other tools added, written back as they were
KERNELS = ("elu_plus_one", "sigmoid", "exp")
MODES = ("quadratic", "linear")
ACTIVATIONS = ("sin", "gelu_sin", "gelu", "relu2")
OPTIMIZERS = ("adamw", "rgd", "muon")
LOSSES = ("ce", "qfe")
# Where position enters: "embedding" = a table (classic) or a phase rotated into every token's
# wave packet (the seed-faithful wave model); "rotary" = a relative phase rotation of the query
# and key waves inside the mixer (RoPE spacing); "none" = nothing beyond the causal mask (and
# pure-wave attention's own sin(omega t + phi)).
POSITIONS = ("embedding", "rotary", "none")
TEMPERATURE_INITS = ("sqrt_waves", "inv_sqrt_waves")
AMPLITUDE_INITS = ("unit", "small")
SCORINGS = ("default", "cosine", "dot")  # default: cosine (interference attention), dot products (classic)
EMBEDDINGS = ("packet", "table")  # the wave model's token embedding: wave packets, or a plain lookup table
# What a config.json written before a field existed meant by it: loading an old checkpoint
# fills missing fields from here, so it builds the same model and gives the same logits.
LEGACY_DEFAULTS: dict[str, Any] = dict(position="embedding", temperature_init="sqrt_waves", amplitude_init="unit",
                                       tie_head=False, wave_param_decay=True, wave_lr_scale=1.0,
                                       qk_waves=0, wave_floor_start=0.5, wave_floor_end=0.9, scalar_decay=True,
                                       scoring="default", phase_offsets=True, head_norm=True, embedding="packet",
                                       rgd_warmup_fraction=0.0)

SIZES: dict[str, dict[str, int]] = {
    # tiny: the CPU size (a little larger than nanoGPT's CPU recipe of 4 x 128). Its wave count is its head size
    # (192 / 4 = 48, as at small and medium), so interference attention compares q/k as wide as the transformer's;
    # wavegpt 0.2's tiny had 24 (`--set num_waves=24` reproduces it; docs/tuning.md has the measurement).
    "tiny": dict(d_model=192, n_layers=4, n_heads=4, num_waves=48, num_harmonics=3, block_size=128),
    "small": dict(d_model=384, n_layers=8, n_heads=8, num_waves=48, num_harmonics=4, block_size=256),
    "medium": dict(d_model=512, n_layers=10, n_heads=8, num_waves=64, num_harmonics=4, block_size=256),
    "large": dict(d_model=768, n_layers=12, n_heads=12, num_waves=96, num_harmonics=4, block_size=512),
}

# The parameter budget of a size: every preset of the size is matched (through its MLP width) to the default
# wave model built with these part widths. tiny keeps 0.2's budget (2.18M, 24 waves), so its 48-wave default
# narrows its MLP to fit and every tiny figure published stays comparable.
BUDGET_WIDTHS: dict[str, dict[str, int]] = {"tiny": dict(num_waves=24)}

_WAVE = dict(model_type="wave", activation="sin", position="rotary", amplitude_init="small")
_PURE = dict(_WAVE, attention="pure_wave", position="none", bootstrap_embedding=False, optimizer="rgd", loss="qfe")
PRESETS: dict[str, dict[str, Any]] = {
    "full_physics": dict(_WAVE, attention="interference", optimizer="rgd", loss="qfe"),
    "pure_wave": dict(_PURE, kernel="elu_plus_one", mode="quadratic"),
    "pure_wave_linear": dict(_PURE, kernel="elu_plus_one", mode="linear"),
    "pure_wave_sigmoid": dict(_PURE, kernel="sigmoid", mode="quadratic"),
    "pure_wave_exp": dict(_PURE, kernel="exp", mode="quadratic"),
    "rgd_only": dict(_WAVE, attention="interference", optimizer="rgd", loss="ce"),
    "qfe_only": dict(_WAVE, attention="interference", optimizer="adamw", loss="qfe"),
    "baseline": dict(_WAVE, attention="interference", optimizer="adamw", loss="ce"),
    "classic": dict(model_type="classic", activation="gelu", position="embedding", optimizer="adamw", loss="ce"),
    "classic_rope": dict(model_type="classic", activation="gelu", position="rotary", optimizer="adamw", loss="ce"),
    # The Wave Network mixer (arXiv 2411.02674, made causal): no position beyond causality.
    "wave_network": dict(_WAVE, attention="wave_network", position="none", optimizer="adamw", loss="ce"),
    "wave_network_modulation": dict(_WAVE, attention="wave_network_modulation", position="none",
                                    optimizer="adamw", loss="ce"),
}

# Each preset's tuned training recipe: what wavegpt-train and wavegpt-bench use unless a flag says otherwise,
# recorded in run.json and config.json. Tuned by a learning-rate sweep at 2M tokens on tiny (docs/tuning.md);
# a preset without an entry trains at DEFAULT_LR, the shared rate every preset used before the sweep.
DEFAULT_LR = 2e-3
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": dict(lr=4e-3),
    "classic_rope": dict(lr=4e-3),
}
# The other interference presets differ from baseline only in optimizer and loss: they take its rate.
for _name in ("full_physics", "rgd_only", "qfe_only"):
    RECIPES[_name] = dict(RECIPES["baseline"])


def recipe_of(preset: str) -> dict[str, Any]:
    """The preset's tuned recipe (at least its peak learning rate `lr`)."""
    return {"lr": DEFAULT_LR, **RECIPES.get(preset, {})}


class ConfigError(ValueError):
    """A config, size or preset a user named does not exist or does not fit together."""


@dataclass
class WaveGPTConfig:
    vocab_size: int = 1024
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 4
    num_waves: int = 24
    num_harmonics: int = 3
    block_size: int = 128
    dropout: float = 0.0
    model_type: str = "wave"
    attention: str = "interference"
    kernel: str = "elu_plus_one"
    mode: str = "quadratic"
    activation: str = "sin"
    bootstrap_embedding: bool = True
    position: str = "rotary"
    rope_base: float = 10000.0
    temperature_init: str = "inv_sqrt_waves"  # interference attention's initial temperature
    amplitude_init: str = "unit"
    tie_head: bool = False  # wave model: collapse head shares the bootstrap table's weights
    wave_param_decay: bool = True  # weight decay on wave parameters (frequencies, phases, ...)
    wave_lr_scale: float = 1.0  # learning rate of wave parameters relative to the rest
    mlp_hidden: int = 0  # 0 means 4 * d_model
    qk_waves: int = 0  # interference attention's query/key waves per head; 0 means num_waves
    # The bootstrap schedule: the wave share may not fall below a floor that moves linearly from
    # wave_floor_start to wave_floor_end over the run (0 and 0: no floor; 0.5 and 0.5: held at 0.5).
    wave_floor_start: float = 0.5
    wave_floor_end: float = 0.9
    scalar_decay: bool = True  # weight decay on interference attention's per-head temperature and phase offsets
    scoring: str = "default"  # query-key scores: cosine over a learned temperature, or scaled dot products
    phase_offsets: bool = True  # interference attention's learned per-wave phase offsets
    head_norm: bool = True  # the collapse head's LayerNorm
    embedding: str = "packet"  # the wave model's token embedding ("table": a plain lookup of width d_model)
    chunk_size: int = 64  # chunk length of linear attention's parallel (training) form
    # Training choices fixed by the preset (recorded so a checkpoint says how it was made).
    preset: str = "full_physics"
    optimizer: str = "rgd"
    loss: str = "qfe"
    resonance_strength: float = 0.3
    rgd_warmup_steps: int = 500
    rgd_warmup_fraction: float = 0.0  # > 0: RGD's warmup is this fraction of the run's steps instead
    lambda_coherence: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: data, steps, val figures

    def __post_init__(self) -> None:
        self.validate()

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or 4 * self.d_model

    @property
    def qk_width(self) -> int:
        """Query/key waves per head of interference attention."""
        return self.qk_waves or self.num_waves

    def validate(self) -> None:
        check_field_types(self)
        choices = dict(model_type=MODEL_TYPES, attention=ATTENTIONS, kernel=KERNELS, mode=MODES,
                       activation=ACTIVATIONS, optimizer=OPTIMIZERS, loss=LOSSES, position=POSITIONS,
                       temperature_init=TEMPERATURE_INITS, amplitude_init=AMPLITUDE_INITS, scoring=SCORINGS,
                       embedding=EMBEDDINGS)
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}.")
        check_ranges(self, CONFIG_RANGES)
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}).")
        if self.embedding == "table" and (self.model_type != "wave" or self.position == "embedding"):
            raise ConfigError("embedding 'table' replaces the wave model's packets; it needs model_type 'wave' "
                              "and position 'rotary' or 'none'.")
        if self.position == "rotary" and self.model_type == "wave" and MIXERS[self.attention].no_rotary:
            raise ConfigError(MIXERS[self.attention].no_rotary)
        if self.tie_head and not (self.model_type == "wave" and self.bootstrap_embedding):
            raise ConfigError("tie_head needs the wave model's bootstrap embedding table to tie to.")
        check_size(self)

    # --- presets -----------------------------------------------------------------------
    @classmethod
    def from_preset(cls, size: str = "tiny", preset: str = "full_physics", **overrides: Any) -> WaveGPTConfig:
        """Build a config from a size (`tiny`...`large`) and a training preset (`full_physics`...).

        Every preset is sized to the parameter count of the default wave model of the same
        size (by adjusting its MLP width), so comparisons between presets are like for like.
        """
        if size not in SIZES:
            raise ConfigError(f"Unknown model size {size!r}; choose one of {', '.join(SIZES)}.")
        if preset not in PRESETS:
            raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"Unknown config field(s): {', '.join(sorted(unknown))}.")
        fields = dict(SIZES[size], **PRESETS[preset], preset=preset)
        fields.update(overrides)
        config = cls(**fields)
        if "mlp_hidden" not in overrides:
            parts = {k: SIZES[size][k] for k in PART_WIDTHS if k in SIZES[size]}
            config.mlp_hidden = matched_hidden(config, reference=dict(parts, qk_waves=0, **BUDGET_WIDTHS.get(size, {})))
        return config

    # --- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WaveGPTConfig:
        if not isinstance(data, dict):
            raise ConfigError("config.json must hold a JSON object.")
        known = {f.name for f in dataclasses.fields(cls)}
        data = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in data}, **data}
        data = _from_file_form(data, known)
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(f"config.json does not describe a wavegpt model ({e}).") from None

    def to_json(self) -> str:
        """config.json: a namespaced model_type, and the keys other tools added kept beside ours."""
        data = self.to_dict()
        foreign = data["extra"].pop(FOREIGN_KEYS, None) if isinstance(data["extra"], dict) else None
        data["model_type"] = MODEL_TYPE_PREFIX + self.model_type
        return json.dumps({**(foreign if isinstance(foreign, dict) else {}), **data}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, path: str | Path) -> WaveGPTConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid JSON ({e}).") from None
        return cls.from_dict(data)


def _from_file_form(data: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Undo to_json: strip the model_type namespace (old files say plain "wave"), and move keys other
    tools add (`architectures`, `transformers_version`, ...) into extra[FOREIGN_KEYS] so they round-trip."""
    data = dict(data)
    if isinstance(data.get("model_type"), str) and data["model_type"].startswith(MODEL_TYPE_PREFIX):
        data["model_type"] = data["model_type"][len(MODEL_TYPE_PREFIX):]
    foreign = {k: data.pop(k) for k in sorted(set(data) - known)}
    if foreign and isinstance(data.get("extra", {}), dict):
        data["extra"] = {**data.get("extra", {}), FOREIGN_KEYS: foreign}
    return data


MAX_PARAMETERS = 10_000_000_000  # 40 GB of float32 weights: past this a config is a typo, refused before allocating
MAX_BLOCK_SIZE = 1 << 20  # context length


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value has the annotated type (JSON's view: ints are floats too; a bool is no number)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, list | tuple)
    if origin is not None and isinstance(origin, type):
        return isinstance(value, origin)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not know: left to the field's own checks


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    names = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text",
             type(None): "null"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint) or hint
    return {dict: "an object", list: "a list", tuple: "a list"}.get(origin, getattr(origin, "__name__", str(hint)))


def check_field_types(config: Any) -> None:
    """Every field of a config dataclass against its annotated type, in one sentence (config.json may
    hold anything: "128" for an int, 1.5 for a count, true for a number)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in hints and not _fits(value, hints[f.name]):
            raise ConfigError(f"{f.name} must be {_describe(hints[f.name])}, not {value!r}.")


@dataclass(frozen=True)
class Range:
    """Where a numeric config field may lie: [low, high], either end open or absent; `note` says why."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"{'below' if self.high_open else 'at most'} {self.high:g}"


POSITIVE = Range(1)
# THE table of every numeric field's range (types are checked first, from the annotations); the field
# consistency rules (heads dividing the width, mixers and positions, tied heads) are in WaveGPTConfig.validate.
CONFIG_RANGES: dict[str, Range] = {
    "vocab_size": POSITIVE, "d_model": POSITIVE, "n_layers": POSITIVE, "n_heads": POSITIVE, "num_waves": POSITIVE,
    "num_harmonics": POSITIVE, "chunk_size": POSITIVE,
    "block_size": Range(2, note="a model must see at least one token and predict the next"),
    "dropout": Range(0.0, 1.0, high_open=True),
    "rope_base": Range(0.0, low_open=True),
    "wave_lr_scale": Range(0.0, low_open=True),
    "mlp_hidden": Range(0, note="0 means 4 x d_model"),
    "qk_waves": Range(0, note="0 means num_waves"),
    "wave_floor_start": Range(0.0, 1.0, high_open=True),
    "wave_floor_end": Range(0.0, 1.0, high_open=True),
    "rgd_warmup_fraction": Range(0.0, 1.0),
    "resonance_strength": Range(0.0, 1.0),
    "rgd_warmup_steps": Range(0),
    "lambda_coherence": Range(0.0),
}


def check_ranges(config: Any, ranges: dict[str, Range], error: type[ValueError] = ConfigError) -> None:
    """Every field named in `ranges` against its range, in one sentence naming the field."""
    for name, allowed in ranges.items():
        value = getattr(config, name)
        if not allowed.holds(value):
            why = f" ({allowed.note})" if allowed.note else ""
            raise error(f"{name} must be {allowed.describe()}{why}, not {value!r}.")


def check_size(config: WaveGPTConfig) -> None:
    """Refuse, before anything is allocated, a model too large to be meant (a typo in config.json)."""
    if config.block_size > MAX_BLOCK_SIZE:
        raise ConfigError(f"block_size {config.block_size:,} is beyond the largest context wavegpt builds "
                          f"({MAX_BLOCK_SIZE:,} tokens).")
    n = count_parameters(config)
    if n > MAX_PARAMETERS:
        raise ConfigError(f"This config describes a model of {n / 1e9:,.0f} billion parameters (about "
                          f"{4 * n / 1e9:,.0f} GB of float32 weights), more than the {MAX_PARAMETERS / 1e9:.0f} "
                          f"billion wavegpt builds; check d_model, n_layers, vocab_size and block_size.")


def parse_field_values(items: list[str], what: str = "--set") -> dict[str, Any]:
    """FIELD=VALUE strings as config overrides; VALUE is read as JSON when it parses, else as a string
    (the config itself then checks names and values)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{what} takes FIELD=VALUE, not {item!r}.")
        try:
            out[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[name.strip()] = raw
    return out


def _interference_parameters(c: WaveGPTConfig) -> int:
    d, nh, Q = c.d_model, c.n_heads, c.qk_width
    offsets = 2 * nh * Q if c.phase_offsets else 0
    temperature = 0 if c.scoring == "dot" else nh
    return 2 * (d * nh * Q + nh * Q) + offsets + temperature + 2 * (d * d + d)


def _pure_wave_parameters(c: WaveGPTConfig) -> int:
    d, nh, W = c.d_model, c.n_heads, c.num_waves
    return 4 * (d * nh * W + nh * W) + 2 * (d * d + d)


def _wave_network_parameters(c: WaveGPTConfig) -> int:
    d = c.d_model
    return 3 * (d * d + d) + 2 * d  # two views, LayerNorm, output projection


@dataclass(frozen=True)
class MixerShape:
    """What the config needs to know of a wave model's mixer: its parameters per layer, and why it cannot
    take rotary position (None: it can). The mixer itself, its weight kind and label: model/mixers/."""

    parameters: Callable[[WaveGPTConfig], int]
    no_rotary: str | None = None


_NO_QK = "The Wave Network mixer has no queries and keys to rotate; use position 'none' or 'embedding'."
MIXERS: dict[str, MixerShape] = {
    "interference": MixerShape(_interference_parameters),
    "pure_wave": MixerShape(_pure_wave_parameters, "Pure-wave attention has its own position handling "
                                                   "(sin(omega t + phi)); use position 'none' or 'embedding'."),
    "wave_network": MixerShape(_wave_network_parameters, _NO_QK),
    "wave_network_modulation": MixerShape(_wave_network_parameters, _NO_QK),
}
ATTENTIONS = tuple(MIXERS)


def count_parameters(config: WaveGPTConfig) -> int:
    """Parameter count of the model a config describes, without building it."""
    d, v, L = config.d_model, config.vocab_size, config.n_layers
    ln = 2 * d
    mlp = d * config.hidden + config.hidden + config.hidden * d + d
    head_norm = ln if config.head_norm else 0
    if config.model_type == "classic":
        attn = d * 3 * d + 3 * d + d * d + d + (config.n_heads if config.scoring == "cosine" else 0)
        table = config.block_size * d if config.position == "embedding" else 0
        return v * d + table + L * (attn + mlp + 2 * ln) + head_norm
    if config.attention not in MIXERS:
        raise ConfigError(f"attention must be one of {', '.join(MIXERS)}, not {config.attention!r}.")
    W, H = config.num_waves, config.num_harmonics
    if config.embedding == "table":
        emb = v * d + ln
    else:
        emb = v * (2 * W + W * H) + 2 * W * H * d + d + ln
        if config.position == "embedding":
            emb += W * H  # the learned positional phase rates
        if config.bootstrap_embedding:
            emb += v * d + 1
    attn = MIXERS[config.attention].parameters(config)
    head = head_norm + (0 if config.tie_head else d * v)
    return emb + L * (attn + mlp + 2 * ln) + head


# Fields that widen or narrow one part of the model without changing its shape (width, depth, heads,
# vocabulary, context): a variant that changes one is re-matched to the size's own widths.
PART_WIDTHS = ("num_waves", "num_harmonics", "qk_waves")


def matched_hidden(config: WaveGPTConfig, reference: dict[str, Any] | None = None) -> int:
    """MLP width (0 = the default 4 x d_model) that gives any variant the parameter count of the
    default wave model of the same shape (with `reference`'s part widths, e.g. the size's num_waves,
    where the variant changed them)."""
    wave = dataclasses.replace(config, **PRESETS["baseline"], preset="baseline", bootstrap_embedding=True,
                               tie_head=False, mlp_hidden=0, scoring="default", phase_offsets=True, head_norm=True,
                               embedding="packet", **(reference or {}))
    target = count_parameters(wave)
    if count_parameters(dataclasses.replace(config, mlp_hidden=0)) == target:
        return 0
    base = count_parameters(dataclasses.replace(config, mlp_hidden=1))
    per_unit = config.n_layers * (2 * config.d_model + 1)
    return max(1, 1 + math.floor((target - base) / per_unit + 0.5))
