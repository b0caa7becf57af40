"""The token mixers, one file each, and the registry that names what each one is.

A registry entry says how to build the mixer, which kind of `MixerWeights` it returns
(so plots and the animation know what the numbers mean) and how it is labelled in the
animation's caption and the plots' titles. Its parameter count lives in config.py's MIXERS
table (config sits below the model and sizes every preset). The classic model's mixer is
`CLASSIC`; a wave model's is `MIXERS[config.attention]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...config import ConfigError, WaveGPTConfig
from .base import Mixer
from .classic import CausalSelfAttention
from .interference import InterferenceAttention
from .pure_wave import PureWaveAttention
from .wave_network import WaveNetworkMixer

Label = Callable[[WaveGPTConfig], str]


@dataclass(frozen=True)
class MixerEntry:
    build: Callable[[WaveGPTConfig], Mixer]
    weight_kind: Label  # the `MixerWeights.kind` its forward returns
    label: Label  # the animation's caption ("interference attention")
    short: Label  # the plots' title ("interference")
    meaning: Label | None = None  # what its weights are, where that says more than the kind's own meaning


def _rotated(c: WaveGPTConfig) -> str:
    return ", rotated by position" if c.position == "rotary" else ""


def _op(c: WaveGPTConfig) -> str:
    return "modulation" if c.attention.endswith("modulation") else "interference"


CLASSIC = MixerEntry(CausalSelfAttention, lambda c: "softmax", lambda c: "softmax attention (classic)",
                     lambda c: "classic")
_WAVE_NETWORK = MixerEntry(WaveNetworkMixer, lambda c: "phase", lambda c: f"Wave Network mixer ({_op(c)})",
                           lambda c: f"Wave Network, {_op(c)}")
MIXERS: dict[str, MixerEntry] = {
    "interference": MixerEntry(InterferenceAttention, lambda c: "softmax", lambda c: "interference attention",
                               lambda c: "interference",
                               lambda c: f"softmax weight (interference of phase-shifted q, k waves{_rotated(c)})"),
    "pure_wave": MixerEntry(PureWaveAttention, lambda c: "linear" if c.mode == "linear" else "kernel",
                            lambda c: f"pure wave attention ({c.kernel}, {c.mode})", lambda c: f"pure wave, {c.mode}"),
    "wave_network": _WAVE_NETWORK,
    "wave_network_modulation": _WAVE_NETWORK,
}


def mixer_entry(config: WaveGPTConfig) -> MixerEntry:
    """The registry entry of the mixer a config describes."""
    if config.model_type == "classic":
        return CLASSIC
    if config.attention not in MIXERS:
        raise ConfigError(f"attention {config.attention!r} has no mixer; choose one of {', '.join(MIXERS)}.")
    return MIXERS[config.attention]


def build_mixer(config: WaveGPTConfig) -> Mixer:
    return mixer_entry(config).build(config)


__all__ = ["MIXERS", "CLASSIC", "MixerEntry", "Mixer", "mixer_entry", "build_mixer", "CausalSelfAttention",
           "InterferenceAttention", "PureWaveAttention", "WaveNetworkMixer"]
