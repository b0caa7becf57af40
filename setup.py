"""Packaging that pyproject.toml cannot say: the shipped model in checkpoints/ travels inside the
package as `wavegpt/checkpoints/` (package data), so a wheel samples offline out of the box while
the repository keeps one copy of the weights, at the top level where users see it."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["wavegpt", "wavegpt.*"]), "wavegpt.checkpoints"],
    package_dir={"wavegpt.checkpoints": "checkpoints"},
    package_data={"wavegpt.checkpoints": ["*"], "wavegpt.hf": ["tasks/*.yaml", "tasks/*.py"]},
)
