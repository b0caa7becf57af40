"""Text classification with the Wave Network (Zhang & Sheng, arXiv 2411.02674) and a same-size
one-layer transformer control (wavegpt-classify): data.py (files, datasets, the held-out rule),
models.py (the two models and their checkpoint folders), metrics.py, train.py (training,
evaluation, the output folder); built on wavegpt's atomic folders, ownership marks, extras
checks, and training/optim.py's schedule and parameter groups.

The paper's single-layer Wave Network: token embeddings w -> two linear views w1, w2 ->
per text and dimension the global semantics G = sqrt(sum over the text's tokens of w^2)
(padding masked out of it) and each token's phase against it -> complex tokens Z1, Z2 ->
interference |Z1 + Z2| or modulation |Z1 * Z2| -> LayerNorm -> feed-forward (residual,
LayerNorm) -> mean over the real tokens -> linear classifier. No extra energy rescaling: |Z| is
G, as the paper states (`wavegpt.ops.wave_network`).

The control (`transformer`): token + learned position embeddings -> one post-norm encoder
layer (4-head self-attention with padding masked, feed-forward) -> the same pooling and
classifier, its feed-forward width chosen so it has the Wave Network's parameter count.
"""

from .common import VARIANTS, ClassifyError, batch, encode
from .data import TextData, load_data, load_hf, load_local
from .metrics import metrics, predict
from .models import (
    ClassifierConfig,
    TransformerClassifier,
    WaveNetworkClassifier,
    build_classifier,
    count_classifier_parameters,
    load_classifier,
    save_classifier,
)
from .train import TrainSettings, evaluate_checkpoint, evaluate_texts, prepare_out, train_classifier

__all__ = ["VARIANTS", "ClassifyError", "TextData", "ClassifierConfig", "TrainSettings", "WaveNetworkClassifier",
           "TransformerClassifier", "batch", "build_classifier", "count_classifier_parameters", "encode",
           "evaluate_checkpoint", "evaluate_texts", "load_classifier", "load_data", "load_hf", "load_local",
           "metrics", "predict", "prepare_out", "save_classifier", "train_classifier"]
