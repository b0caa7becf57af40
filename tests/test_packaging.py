"""Installs that fit the use: a wheel built from the repository carries the shipped model and samples it
from outside the repository, offline; the core requires no app, plotting or FineWeb packages; a command
whose extra is missing names it; the app listens where GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from wavegpt.cli import animate as animate_cli
from wavegpt.cli import app as app_cli
from wavegpt.cli import export as export_cli
from wavegpt.cli import plots as plots_cli
from wavegpt.data import DataError, _documents

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("wavegpt-*.whl")
    return built


def test_wheel_carries_the_shipped_model_and_a_small_core(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = Parser().parsestr(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        scripts = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    shipped = {f"wavegpt/checkpoints/{p.name}" for p in (REPO / "checkpoints").iterdir() if p.is_file()}
    assert "wavegpt/checkpoints/model.safetensors" in shipped and shipped <= names
    assert "wavegpt/cli/eval.py" in names and "wavegpt-eval = wavegpt.cli.eval:main" in scripts
    requires = meta.get_all("Requires-Dist")
    core = {r.split(">")[0].split("=")[0].split(";")[0].strip().lower() for r in requires if "extra ==" not in r}
    assert {"torch", "tokenizers", "safetensors", "huggingface_hub", "accelerate"} <= core
    assert not core & {"gradio", "matplotlib", "datasets", "pyarrow", "imageio-ffmpeg", "onnx", "onnxruntime"}
    assert {"app", "viz", "fineweb", "onnx", "hf", "test"} <= set(meta.get_all("Provides-Extra"))
    assert not core & {"transformers", "lm-eval"}
    assert {"wavegpt/hf/tasks/wavegpt_shakespeare.yaml", "wavegpt/hf/tasks/shakespeare.py"} <= names


def test_unpacked_wheel_samples_the_shipped_model_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {k: v for k, v in os.environ.items() if k not in ("WAVEGPT_CHECKPOINT", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-c", "import sys, wavegpt.cli.generate as g; print(g.__file__, file=sys.stderr); g.main()",
           "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", "1"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(site) in done.stderr  # the wheel's copy ran, not the checkout
    assert done.stdout.startswith("ROMEO:") and len(done.stdout) > 20
    in_repo = subprocess.run([sys.executable, "generate.py", "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed",
                              "1"], cwd=REPO, env={**env, "PYTHONPATH": ""}, capture_output=True, text=True,
                             timeout=120)
    assert in_repo.stdout == done.stdout  # the same model: the repository's one copy of the weights


@pytest.mark.parametrize("module,command,argv,extra", [
    ("gradio", app_cli, ["--port", "0"], "app"),
    ("imageio_ffmpeg", animate_cli, ["--output", "x.mp4"], "viz"),
    ("matplotlib", plots_cli, ["--out", "plots"], "viz"),
    ("onnxruntime", export_cli, ["--checkpoint", "checkpoints", "--format", "onnx", "--out", "o"], "onnx"),
])
def test_a_command_whose_extra_is_missing_names_it(module, command, argv, extra, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # what an environment without the package looks like to import
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        command.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"needs the [{extra}] extra" in err and f"pip install 'wavegpt[{extra}]'" in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_fineweb_without_its_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"\[fineweb\] extra"):
        next(_documents(tmp_path / "x.parquet"))


def test_app_address_comes_from_flags_then_gradio_variables(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert app_cli.server_address(None, None) == ("127.0.0.1", 7860)  # loopback unless told otherwise
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    assert app_cli.server_address(None, None) == ("0.0.0.0", 8123)
    assert app_cli.server_address("127.0.0.2", 9000) == ("127.0.0.2", 9000)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT"):
        app_cli.server_address(None, None)


def test_app_listens_on_the_gradio_port_variable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "OMP_NUM_THREADS": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    status = r.status
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stderr.read() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
