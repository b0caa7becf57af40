"""The Wave-Native GPT's parts, each in the file named after it."""

from .attention import CausalSelfAttention, InterferenceAttention, LayerCache, PureWaveAttention
from .embedding import ClassicEmbedding, WavePacketEmbedding
from .gpt import Block, CollapseHead, DecodeCache, WaveGPT, is_wave_parameter
from .mlp import ResonanceMLP

__all__ = [
    "WaveGPT", "Block", "CollapseHead", "DecodeCache", "LayerCache", "is_wave_parameter",
    "WavePacketEmbedding", "ClassicEmbedding",
    "InterferenceAttention", "PureWaveAttention", "CausalSelfAttention", "ResonanceMLP",
]
