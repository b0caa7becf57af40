"""lm-evaluation-harness model `wavegpt`: lm_eval's HFLM on a wavegpt folder (needs the [hf] extra).

    python -m wavegpt.hf.lm_eval --model wavegpt --model_args pretrained=checkpoints --tasks wikitext
    lm_eval --model wavegpt --model_args pretrained=checkpoints --tasks wavegpt/hf/tasks/wavegpt_shakespeare.yaml

lm_eval looks models up by name before it loads any task, and finds no plugins, so `wavegpt` exists once this
module is imported: `python -m wavegpt.hf.lm_eval` (lm_eval's own command line, every flag as lm_eval takes it)
imports it first; plain `lm_eval` works when the task is named by its yaml file (or folder), because
wavegpt's task file imports it (`--tasks NAME --include_path FOLDER` alone does not: the name is looked up first).

What differs from HFLM: context longer than the model's window. loglikelihood_rolling cuts a document into
windows of block_size tokens `stride` apart (model arg, default block_size // 2), each scoring only the targets
the earlier windows did not: wavegpt-eval --stride's windows, plus the document's first token scored after the
end-of-text prefix. generate_until keeps a prompt's last block_size tokens and generates any number after it
(the window slides as in wavegpt-generate). dtype defaults to float32.
"""

from __future__ import annotations

import math

from ..extras import require

require("hf", "wavegpt's lm-eval model")

from lm_eval.api.registry import register_model  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from .. import hf as _registered  # noqa: E402,F401  (the Auto classes know wavegpt folders)
from ..evaluation import windows  # noqa: E402

MAX_GENERATION = 100_000  # room lm_eval may ask for: the window slides, so generation has no limit of its own


def rolling_requests(tokens: list[int], prefix: int, block: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) token lists that score every token of a document exactly once: the first after
    `prefix`, the rest in wavegpt-eval's sliding windows (inputs block tokens, windows stride apart)."""
    out = [([prefix], tokens[:1])]
    if len(tokens) < 2:
        return out
    spans = windows(len(tokens), block, stride) if len(tokens) > block else [(0, 0)]
    for start, first in spans:
        end = min(start + block + 1, len(tokens))
        out.append((tokens[start : start + first + 1], tokens[start + first + 1 : end]))
    return out


class WaveGPTLM(HFLM):
    def __init__(self, pretrained: str = "checkpoints", stride: int | None = None, **kwargs):
        import torch

        kwargs.setdefault("backend", "causal")
        kwargs.setdefault("dtype", "float32")
        if kwargs.get("device") in (None, "cuda") and not torch.cuda.is_available():
            kwargs["device"] = "cpu"
        super().__init__(pretrained=pretrained, **kwargs)
        self.block = self.model.config.block_size
        if stride is None:
            stride = max(1, self.block // 2)
        if not isinstance(stride, int) or not 1 <= stride <= self.block:
            raise ValueError(f"stride must be a whole number from 1 to the context length {self.block}, not "
                             f"{stride!r}.")
        self.stride = stride
        self._generating = False

    @property
    def max_length(self) -> int:
        return self.block + MAX_GENERATION if getattr(self, "_generating", False) else self.block

    def tok_batch_encode(self, strings, padding_side="left", left_truncate_len=None, truncation=False):
        if self._generating:  # a prompt keeps its last block_size tokens, as in wavegpt-generate
            left_truncate_len = min(left_truncate_len or self.block, self.block)
        return super().tok_batch_encode(strings, padding_side, left_truncate_len, truncation)

    def generate_until(self, requests, disable_tqdm: bool = False):
        self._generating = True
        try:
            return super().generate_until(requests, disable_tqdm)
        finally:
            self._generating = False

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        spans, counts = [], []
        for (text,) in (r.args for r in requests):
            pairs = rolling_requests(self.tok_encode(text), self.prefix_token_id, self.block, self.stride)
            spans.extend((None, context, continuation) for context, continuation in pairs)
            counts.append(len(pairs))
        results = self._loglikelihood_tokens(spans, disable_tqdm=disable_tqdm)
        out, i = [], 0
        for request, n in zip(requests, counts):
            total = math.fsum(ll for ll, _ in results[i : i + n])
            i += n
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return out


if __name__ != "__main__":  # `python -m wavegpt.hf.lm_eval` registers the importable module's class (main)
    register_model("wavegpt")(WaveGPTLM)


def main() -> None:
    """lm_eval's command line with the `wavegpt` model registered."""
    import importlib

    from lm_eval.__main__ import cli_evaluate

    importlib.import_module("wavegpt.hf.lm_eval")  # once, under its own name (the task file imports it too)
    cli_evaluate()


if __name__ == "__main__":
    main()
