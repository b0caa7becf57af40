"""Optional dependencies, grouped as pyproject's extras: a command whose extra is missing says which
one to install instead of failing on an ImportError deep inside."""

from __future__ import annotations

import importlib.util

# extra -> the modules it brings (import names); kept in step with [project.optional-dependencies].
EXTRAS: dict[str, tuple[str, ...]] = {
    "app": ("gradio", "matplotlib", "imageio_ffmpeg"),
    "viz": ("matplotlib", "imageio_ffmpeg"),
    "fineweb": ("datasets", "pyarrow"),
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "classify": ("datasets", "pyarrow", "matplotlib"),
    "hf": ("transformers", "lm_eval"),
}


class MissingExtraError(ValueError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def missing_modules(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    return [m for m in (modules or EXTRAS[extra]) if importlib.util.find_spec(m) is None]


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise MissingExtraError unless the extra's modules (or the given subset) import."""
    missing = missing_modules(extra, modules)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtraError(f"{what} needs the [{extra}] extra ({', '.join(missing)} {verb} not installed): "
                                f"pip install 'wavegpt[{extra}]'")
