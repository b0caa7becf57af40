"""The house runs one way and stays readable: the layers contract in pyproject.toml holds (import-linter,
imports inside functions and under TYPE_CHECKING included), no import cycle anywhere in wavegpt/, and no
module, class or function past the sizes a reader can hold."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "wavegpt"
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 600, 200, 80
# Internal imports that stay inside a function, each for a stated reason (they obey the layers all the same).
LAZY_IMPORTS = {
    ("wavegpt/cli/app.py", "..app"): "wavegpt.app imports gradio: only after the [app] extra is checked",
    ("wavegpt/cli/plots.py", "..viz.wave_plots"): "matplotlib: only after the [viz] extra is checked",
    ("wavegpt/bench.py", ".viz.wave_plots"): "matplotlib: the wave plots are skipped without it",
}


def test_imports_follow_the_layers_contract():
    command = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([command, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_no_import_cycle_counting_imports_inside_functions():
    sys.path.insert(0, str(REPO))
    try:
        graph = grimp.build_graph("wavegpt", cache_dir=None)
    finally:
        sys.path.remove(str(REPO))
    assert len(graph.modules) > 40, "the graph was built from another copy of wavegpt"
    cycles = [m for m in graph.modules if any(graph.chain_exists(importer=d, imported=m)
                                              for d in graph.find_modules_directly_imported_by(m))]
    assert not cycles, f"modules in an import cycle: {sorted(cycles)}"


def _units():
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        yield path.relative_to(REPO).as_posix(), source, ast.parse(source)


def test_modules_classes_and_functions_stay_small():
    too_big = []
    for name, source, tree in _units():
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{name}: {len(source.splitlines())} lines (module)")
        for node in ast.walk(tree):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    too_big.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert not too_big, "\n".join(too_big)


def test_internal_imports_sit_at_the_top_unless_a_reason_is_given():
    inside = []
    for name, _, tree in _units():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("wavegpt")):
                    key = (name, "." * node.level + (node.module or ""))
                    if key not in LAZY_IMPORTS:
                        inside.append(f"{name}:{node.lineno} {fn.name}: from {key[1]} import ...")
    assert not inside, "\n".join(inside)


def test_the_readme_layout_names_every_module():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("Layout. Imports run one way")
    block = readme[start:readme.index("## Installs and extras")]
    missing = [p.relative_to(REPO).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
               if p.name != "__init__.py" and p.name not in block]
    assert not missing, f"modules the README's layout does not name: {missing}"


def test_one_checkpoint_load_resolves_its_folder_once(monkeypatch):
    import wavegpt.checkpoint as checkpoint
    from wavegpt import WaveGPT
    from wavegpt.generation import load_for_generation

    calls = []
    real = checkpoint.restore_backup  # resolve_checkpoint's first step, once per resolution
    monkeypatch.setattr(checkpoint, "restore_backup", lambda *a: calls.append(a[0]) or real(*a))
    load_for_generation(REPO / "checkpoints")
    assert len(calls) == 1, calls
    calls.clear()
    WaveGPT.from_pretrained(REPO / "checkpoints")
    assert len(calls) == 1, calls
