"""A wavegpt model as a transformers model: a `PreTrainedConfig`, a `WaveGPTCache` (transformers' `Cache` API)
and a `PreTrainedModel` + `GenerationMixin` that wraps the one `WaveGPT` (no second implementation).

Loading and saving go through wavegpt's own reader and writer (`WaveGPT.from_pretrained`, `save_pretrained`),
so every wavegpt folder (the shipped `checkpoints/`, an exported folder, a run folder or its `best/`) loads with
the logits WaveGPT gives, and a saved folder is one wavegpt reads.

Positions and the context window follow wavegpt's sampler: each row's first real token is position 0 (left
padding is taken off, row by row), and when a sequence outgrows block_size the window restarts from its newest
block_size // 2 tokens (`wavegpt.sampling`). A forward without a cache gives every position the logits of the
window that rule puts before it, so cached and uncached decoding read the same windows; the one difference from
wavegpt-generate is a prompt longer than block_size, which wavegpt-generate cuts to its last block_size tokens
and this model reads by the rule (the same window wavegpt would be reading had it generated that text itself).

Left padding is exact for every mixer (interference, classic, pure wave in both modes, the Wave Network): rows
with the same amount of padding are decoded together, each group on its own wavegpt `DecodeCache`, so a padded
batch costs one forward per distinct prompt length.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import GenerationConfig, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..checkpoint import resolve_checkpoint
from ..config import LEGACY_DEFAULTS, MODEL_TYPE_PREFIX, WaveGPTConfig
from ..model.cache import DecodeCache
from ..model.gpt import WaveGPT
from ..ownership import is_model_folder
from ..tokenizer import WaveTokenizer

FIELDS = tuple(f.name for f in dataclasses.fields(WaveGPTConfig))
_DEFAULTS = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
             for f in dataclasses.fields(WaveGPTConfig)}


class WaveGPTHFConfig(PreTrainedConfig):
    """wavegpt's config.json as a transformers config: every `WaveGPTConfig` field is an attribute (checked by
    WaveGPTConfig itself), with transformers' names for the common ones (hidden_size = d_model, ...)."""

    model_type = MODEL_TYPE_PREFIX + "wave"
    wavegpt_type = "wave"  # WaveGPTConfig.model_type
    # No max_position_embeddings: the window slides, so generate() need not stop at block_size.
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads"}

    def __init__(self, **kwargs: Any):
        kwargs.pop("model_type", None)
        for hf_name, ours in self.attribute_map.items():
            if hf_name in kwargs:
                kwargs.setdefault(ours, kwargs.pop(hf_name))
        fields = {k: kwargs.pop(k) for k in FIELDS if k in kwargs}
        fields["model_type"] = self.wavegpt_type
        config = WaveGPTConfig(**{**_DEFAULTS, **fields})  # one-sentence ConfigError on a bad field
        kwargs.setdefault("tie_word_embeddings", False)  # WaveGPT ties its own weights
        super().__init__(**kwargs)
        for name, value in config.to_dict().items():
            if name != "model_type":
                object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        # A config.json written before a field existed meant LEGACY_DEFAULTS by it (as WaveGPTConfig.from_dict).
        config_dict = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in config_dict}, **config_dict}
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_wavegpt(cls, config: WaveGPTConfig) -> WaveGPTHFConfig:
        """The transformers config of a WaveGPTConfig (of the class its model_type names)."""
        data = config.to_dict()
        return CONFIG_CLASSES[MODEL_TYPE_PREFIX + data.pop("model_type")](**data)

    def to_wavegpt(self) -> WaveGPTConfig:
        data = {k: getattr(self, k) for k in FIELDS if k != "model_type"}
        return WaveGPTConfig(**data, model_type=self.wavegpt_type)


class WaveGPTClassicHFConfig(WaveGPTHFConfig):
    model_type = MODEL_TYPE_PREFIX + "classic"
    wavegpt_type = "classic"


class LegacyWaveHFConfig(WaveGPTHFConfig):
    """Folders written before config.json's model_type was namespaced say plain "wave"."""

    model_type = "wave"


class LegacyClassicHFConfig(WaveGPTClassicHFConfig):
    model_type = "classic"


CONFIG_CLASSES: dict[str, type[WaveGPTHFConfig]] = {
    c.model_type: c for c in (WaveGPTHFConfig, WaveGPTClassicHFConfig, LegacyWaveHFConfig, LegacyClassicHFConfig)}


# --- the context window -----------------------------------------------------------------------------------


def segments(seen: int, new: int, block: int) -> list[tuple[int, int, int]]:
    """(window start, first, end) runs of the positions seen .. seen + new - 1 of a window that starts at 0 and
    holds `seen` tokens: positions first .. end - 1 read the tokens start .. end - 1. The window restarts from
    its newest block // 2 tokens when a token would make it longer than block (wavegpt.sampling's rule)."""
    out, start, first = [], 0, seen
    for n in range(seen, seen + new):
        if n + 1 - start > block:
            if n > first:
                out.append((start, first, n))
            start, first = n + 1 - block // 2, n
    out.append((start, first, seen + new))
    return out


@dataclasses.dataclass
class _Group:
    """Rows decoded together (the same left padding): their window's token ids and wavegpt's cache for it."""

    rows: torch.Tensor  # (n,) batch indices
    pad: int  # leading padding columns of these rows
    window: torch.Tensor | None = None  # (n, w) the tokens the cache holds
    cache: DecodeCache | None = None

    def select(self, local: torch.Tensor, rows: torch.Tensor) -> _Group:
        """These rows' state, rows `local` of the group, renamed to batch rows `rows`."""
        cache = None
        if self.cache is not None:
            cache = DecodeCache(len(self.cache.layers))
            cache.pos = self.cache.pos
            for old, layer in zip(self.cache.layers, cache.layers):
                if old.k is not None and old.v is not None:
                    layer.append(old.k.index_select(0, local.to(old.k.device)),
                                 old.v.index_select(0, local.to(old.v.device)))
                if old.state is not None:
                    layer.state = tuple(t.index_select(0, local.to(t.device)) for t in old.state)
        window = None if self.window is None else self.window.index_select(0, local.to(self.window.device))
        return _Group(rows, self.pad, window, cache)


class WaveGPTCache(Cache):
    """transformers' Cache for a wavegpt model: per group of rows with the same left padding, wavegpt's own
    `DecodeCache` (keys and values for the softmax and quadratic mixers, the constant-size recurrent state of
    linear mode and the Wave Network) and the token ids of the window it holds (for the window to slide)."""

    def __init__(self) -> None:
        super().__init__(layers=[])
        self.groups: list[_Group] = []
        self.columns = 0  # input columns seen (padding included)
        self.rows = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.columns

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1  # the window slides: no maximum

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_initialized(self) -> bool:
        return bool(self.groups)

    @property
    def batch_size(self) -> int:
        return self.rows if self.groups else -1

    def reset(self) -> None:
        self.groups, self.columns, self.rows = [], 0, 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep batch rows `indices` (new row i is old row indices[i]): beam search's reorder."""
        indices = torch.as_tensor(indices).flatten().cpu()
        groups = []
        for g in self.groups:
            old = g.rows.tolist()
            where = {r: i for i, r in enumerate(old)}
            picked = [(i, where[int(j)]) for i, j in enumerate(indices.tolist()) if int(j) in where]
            if picked:
                rows, local = (torch.tensor(t, dtype=torch.long) for t in zip(*picked))
                groups.append(g.select(local, rows))
        self.groups, self.rows = groups, len(indices)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.batch_select_indices(torch.arange(self.rows).repeat_interleave(repeats))

    def crop(self, tokens_to_remove: int) -> None:
        raise ValueError("A wavegpt cache cannot be cropped (linear mode and the Wave Network keep only a running "
                         "state), so assisted and speculative decoding are not supported.")


# --- the model --------------------------------------------------------------------------------------------


def _left_padding(attention_mask: torch.Tensor | None, rows: int, columns: int, cached: bool) -> list[int]:
    """Leading padding columns of each row of a 2-D attention mask of zeros then ones (without a cache, zeros may
    also end a row: a causal model's earlier positions never see them); else a one-sentence ValueError."""
    if attention_mask is None:
        return [0] * rows
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (rows, columns):
        raise ValueError(f"attention_mask must be 2-D, (batch, sequence) = {(rows, columns)}, not "
                         f"{tuple(attention_mask.shape)}.")
    zero = ~attention_mask.bool()
    leading = zero.long().cumprod(dim=1).sum(dim=1)
    trailing = zero.flip(1).long().cumprod(dim=1).sum(dim=1)
    ones = (~zero).long().sum(dim=1)
    if bool((ones == 0).any()):
        raise ValueError("A row of the attention mask is all zeros: every row needs at least one real token.")
    if bool((ones != columns - leading - trailing).any()):
        raise ValueError("The attention mask has zeros between ones; wavegpt models take padding only at the start "
                         "of a row.")
    if cached and bool((trailing > 0).any()):
        raise ValueError("wavegpt models decode with left padding only (zeros, then ones, in each row of the "
                         "attention mask); pad on the left.")
    return leading.tolist()


class WaveGPTForCausalLM(PreTrainedModel, GenerationMixin):
    """transformers' causal LM around one `WaveGPT` (`self.wavegpt`). Loads and saves wavegpt folders."""

    config_class = WaveGPTHFConfig
    base_model_prefix = "wavegpt"
    main_input_name = "input_ids"
    _no_split_modules = ["Block"]
    _tied_weights_keys = None  # WaveGPT ties its own head

    def __init__(self, config: WaveGPTHFConfig, wavegpt: WaveGPT | None = None):
        super().__init__(config)
        self.wavegpt = wavegpt if wavegpt is not None else WaveGPT(config.to_wavegpt())
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        pass  # WaveGPT initialises its own weights (wave packets, scaled projections)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the model makes its own WaveGPTCache (generate passes it back each step)

    # --- loading and saving -------------------------------------------------------------------------------

    _IGNORED = {"revision", "trust_remote_code", "cache_dir", "force_download", "proxies", "token",
                "local_files_only", "subfolder", "low_cpu_mem_usage", "use_safetensors", "attn_implementation",
                "resume_download", "output_loading_info", "key_mapping"}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args: Any,
                        config: WaveGPTHFConfig | None = None, dtype: Any = None, torch_dtype: Any = None,
                        device_map: Any = None, **kwargs: Any) -> WaveGPTForCausalLM:
        """A wavegpt model folder (or run folder, or Hub repo id), read by wavegpt's loader: float32 unless
        `dtype` says otherwise ("auto" is float32, the dtype wavegpt computes in), on `device_map`'s device."""
        if model_args:
            raise ValueError("wavegpt models take no positional arguments after the folder.")
        unknown = sorted(k for k, v in kwargs.items()
                         if not k.startswith("_") and k not in cls._IGNORED and v not in (None, False, "", {}))
        if unknown:
            raise ValueError(f"wavegpt models do not take the from_pretrained option(s) {', '.join(unknown)}.")
        folder = resolve_checkpoint(pretrained_model_name_or_path)
        core = WaveGPT.from_resolved(folder)
        hf_config = WaveGPTHFConfig.from_wavegpt(core.config)
        model = MODEL_CLASSES[hf_config.model_type](hf_config, wavegpt=core)
        model.config._name_or_path = str(pretrained_model_name_or_path)
        if (folder / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(str(folder))
        chosen = dtype if dtype is not None else torch_dtype
        if chosen is not None and chosen != "auto":
            model = model.to(getattr(torch, chosen) if isinstance(chosen, str) else chosen)
        device = _device_of(device_map)
        if device is not None:
            model = model.to(device)
        return model.eval()

    def save_pretrained(self, save_directory: str | Path, is_main_process: bool = True, *, dtype=None,
                        tokenizer=None, push_to_hub: bool | str = False, safe_serialization: bool = True,
                        **kwargs: Any) -> str | None:
        """wavegpt's save_pretrained: config.json (namespaced model_type) and model.safetensors, which both
        wavegpt and transformers read; a tokenizer (a path, a WaveTokenizer or a transformers fast tokenizer)
        adds its files, and a wavegpt folder's own tokenizer files are kept when it is saved over."""
        unknown = sorted(k for k, v in kwargs.items() if v not in (None, False) and k not in ("max_shard_size",))
        if unknown or not safe_serialization:
            raise ValueError(f"wavegpt's save_pretrained writes safetensors and takes no option(s) "
                             f"{', '.join(unknown or ['safe_serialization=False'])}.")
        if not is_main_process:
            return None
        folder = Path(save_directory)
        if tokenizer is None and (folder / "tokenizer.json").is_file() and (folder / "config.json").is_file():
            if is_model_folder(folder):
                tokenizer = folder / "tokenizer.json"
        if tokenizer is not None and hasattr(tokenizer, "backend_tokenizer"):
            tokenizer = WaveTokenizer(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()))
        return self.wavegpt.save_pretrained(folder, dtype=dtype, tokenizer=tokenizer, push_to_hub=push_to_hub)

    # --- forward ------------------------------------------------------------------------------------------

    def get_input_embeddings(self) -> torch.nn.Module:
        embedding = self.wavegpt.embedding
        return getattr(embedding, "token", None) or getattr(embedding, "bootstrap", None) or embedding

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: Cache | None = None, labels: torch.LongTensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int = 0, inputs_embeds: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool | None = None,
                past_key_values: Cache | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, **kwargs: Any) -> CausalLMOutputWithPast:
        """Logits (batch, sequence, vocab) of input_ids; with use_cache, a WaveGPTCache to continue from. Padded
        positions get zero logits."""
        if inputs_embeds is not None or input_ids is None:
            raise ValueError("wavegpt models read token ids (input_ids), not inputs_embeds.")
        if output_attentions or output_hidden_states:
            raise ValueError("wavegpt models return logits only (for the mixer weights use WaveGPT's weights_of).")
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise ValueError("wavegpt models have no token types; token_type_ids must be zeros.")
        extra = sorted(k for k, v in kwargs.items() if v is not None)
        if extra:
            raise ValueError(f"wavegpt models take no argument(s) {', '.join(extra)}.")
        cache = cache if cache is not None else past_key_values
        if cache is not None and not isinstance(cache, WaveGPTCache):
            if cache.get_seq_length() > 0:
                raise ValueError(f"A wavegpt model continues only from its own WaveGPTCache, not a "
                                 f"{type(cache).__name__}.")
            cache = None
        use_cache = bool(use_cache) or cache is not None
        if use_cache and cache is None:
            cache = WaveGPTCache()
        B, T = input_ids.shape
        if T == 0:
            raise ValueError("input_ids must hold at least one token per row.")
        last_only = logits_to_keep == 1
        logits = None
        if cache is not None and cache.groups:
            if attention_mask is not None and not bool(attention_mask[:, -T:].bool().all()):
                raise ValueError("New tokens after a cache must all be real (ones in the attention mask).")
            groups = cache.groups
        else:
            pads = _left_padding(attention_mask, B, T, cached=cache is not None)
            groups = [_Group(torch.tensor([r for r in range(B) if pads[r] == p], dtype=torch.long), p)
                      for p in sorted(set(pads))]
            if cache is not None:
                cache.groups, cache.rows = groups, B
        for g in groups:
            rows = g.rows.to(input_ids.device)
            start = 0 if g.window is not None else g.pad
            part = self._run(input_ids.index_select(0, rows)[:, start:], g if cache is not None else None, last_only)
            if logits is None:
                logits = part.new_zeros(B, 1 if last_only else T, part.shape[-1])
            logits[rows, logits.shape[1] - part.shape[1]:] = part
        if cache is not None:
            cache.columns += T
        if logits_to_keep and not last_only:
            logits = logits[:, -logits_to_keep:]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten().to(logits.device),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None)

    def _run(self, new: torch.Tensor, group: _Group | None, last_only: bool) -> torch.Tensor:
        """Logits of the tokens `new` (n, t) of one group of rows, by the window rule; the group's cache and
        window move on (without a group: a fresh window, nothing kept)."""
        block = self.wavegpt.config.block_size
        window = group.window if group is not None and group.window is not None else new[:, :0]
        seen = window.shape[1]
        tokens = torch.cat([window, new], dim=1)
        runs = segments(seen, new.shape[1], block)
        if last_only:
            runs = runs[-1:]
        out = []
        cache = group.cache if group is not None else None
        for start, first, end in runs:
            if group is None:  # no cache: each run is one forward over its window
                logits = self.wavegpt(tokens[:, start:end], last_only=last_only)[0]
            else:
                if start > 0 or cache is None:  # a new window: prefill it
                    cache = DecodeCache(self.wavegpt.config.n_layers)
                    logits = self.wavegpt(tokens[:, start:end], cache=cache, last_only=last_only)[0]
                else:
                    logits = self.wavegpt(tokens[:, first:end], cache=cache, last_only=last_only)[0]
                window = tokens[:, start:end]
            out.append(logits if last_only else logits[:, logits.shape[1] - (end - first):])
        if group is not None:
            group.window, group.cache = window, cache
        return torch.cat(out, dim=1)


def _device_of(device_map: Any) -> torch.device | None:
    """The one device a device_map names ("auto": a CUDA GPU when there is one), or None."""
    if device_map is None:
        return None
    if isinstance(device_map, dict):
        devices = set(device_map.values())
        if len(devices) != 1:
            raise ValueError("wavegpt models are small enough for one device; give device_map one device.")
        device_map = devices.pop()
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device_map, int):
        return torch.device("cuda", device_map)
    return torch.device(device_map)


class WaveGPTClassicForCausalLM(WaveGPTForCausalLM):
    config_class = WaveGPTClassicHFConfig


class LegacyWaveForCausalLM(WaveGPTForCausalLM):
    config_class = LegacyWaveHFConfig


class LegacyClassicForCausalLM(WaveGPTForCausalLM):
    config_class = LegacyClassicHFConfig


MODEL_CLASSES: dict[str, type[WaveGPTForCausalLM]] = {
    c.config_class.model_type: c
    for c in (WaveGPTForCausalLM, WaveGPTClassicForCausalLM, LegacyWaveForCausalLM, LegacyClassicForCausalLM)}


def register() -> None:
    """Register the configs and models with AutoConfig, AutoModel and AutoModelForCausalLM (idempotent); the plain
    legacy names "wave" and "classic" only while no other library has claimed them."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    for model_type, config_class in CONFIG_CLASSES.items():
        if model_type in CONFIG_MAPPING:
            if CONFIG_MAPPING[model_type] is not config_class:
                continue  # a legacy name another library took: that folder form stays wavegpt-only
        else:
            AutoConfig.register(model_type, config_class)
        for auto in (AutoModel, AutoModelForCausalLM):
            auto.register(config_class, MODEL_CLASSES[model_type], exist_ok=True)
