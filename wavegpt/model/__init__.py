"""The Wave-Native GPT's parts, each in the file named after it, lowest first: cache.py (what decoding keeps,
MixerWeights), embedding.py, mixers/ (one file per mixer and their registry), mlp.py, gpt.py (WaveGPT).

Import from the file (`from wavegpt.model.gpt import WaveGPT`, or `from wavegpt import WaveGPT`): this
package file imports nothing, so that the sampler can use cache.py below the model that uses the sampler.
"""
