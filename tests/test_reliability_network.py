"""Issue 24, class 5: network calls waited forever.

Against a Hub endpoint that accepts connections and never answers (a real TCP server on 127.0.0.1 that
reads and says nothing), `--checkpoint org/name`, `from_pretrained("org/name")`, `--push-to-hub` and
`--hf-dataset org/name` each end within 30 s with one sentence that says the Hub did not answer and what to
do (HF_HUB_OFFLINE=1, or retry).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO, command, make_checkpoint, one_sentence

LIMIT = 30  # seconds: the target for a silent endpoint


@pytest.fixture
def silent_hub(tmp_path):
    """A TCP server that accepts every connection and never sends a byte; the environment that points the
    Hugging Face libraries at it, with an empty cache and no offline switch."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # keep it open, answer nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_CACHE": str(tmp_path / "hf-home" / "hub"), "HF_DATASETS_CACHE": str(tmp_path / "hf-home" / "ds"),
           "HF_HUB_OFFLINE": None, "HF_DATASETS_OFFLINE": None, "TRANSFORMERS_OFFLINE": None,
           "HF_TOKEN": "hf_test_token_not_real", "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1", "HTTP_PROXY": None, "HTTPS_PROXY": None, "http_proxy": None, "https_proxy": None}
    yield env
    stop.set()
    server.close()
    for conn in held:
        conn.close()
    thread.join(timeout=2)


@pytest.fixture(scope="module")
def startup():
    """Seconds a command needs to start here (imports; on a busy machine torch alone can take 10 s): the time
    spent waiting on the network is what the limit is about."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import wavegpt.cli.generate, wavegpt.cli.export, wavegpt.cli.classify, "
                    "wavegpt.classify, datasets"], cwd=REPO, check=True, timeout=120,
                   env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def timed(startup, *args, **kwargs):
    start = time.perf_counter()
    result = command(*args, timeout=LIMIT + 60 + startup, **kwargs)
    return result, time.perf_counter() - start - startup


def says_the_hub_did_not_answer(result, seconds):
    assert seconds < LIMIT, f"waited {seconds:.0f} s beyond the start-up"
    one_sentence(result.returncode, result.stderr, "Hub")
    assert "HF_HUB_OFFLINE" in result.stderr or "retry" in result.stderr.lower() or "again" in result.stderr.lower()


def test_checkpoint_repo_id_against_a_silent_hub(silent_hub, startup):
    result, seconds = timed(startup, "generate", "--checkpoint", "some-org/some-model", "--max-new-tokens", 2,
                            env=silent_hub)
    says_the_hub_did_not_answer(result, seconds)


def test_from_pretrained_repo_id_against_a_silent_hub(silent_hub, startup):
    probe = ("import sys\nfrom wavegpt import WaveGPT\ntry:\n    WaveGPT.from_pretrained('some-org/some-model')\n"
             "except ValueError as e:\n    print(e)\n")
    env = {k: v for k, v in {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **silent_hub}.items() if v}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=LIMIT + 60 + startup)
    seconds = time.perf_counter() - start - startup
    assert seconds < LIMIT, f"waited {seconds:.0f} s beyond the start-up"
    assert "Hub" in result.stdout and "Traceback" not in result.stderr, result.stdout + result.stderr


def test_push_to_hub_against_a_silent_hub(silent_hub, tmp_path, startup):
    folder = make_checkpoint(tmp_path / "ckpt")
    result, seconds = timed(startup, "export", "--checkpoint", folder, "--out", tmp_path / "ship", "--dtype",
                            "float32",
                            "--push-to-hub", "some-org/some-model", env=silent_hub)
    says_the_hub_did_not_answer(result, seconds)
    from wavegpt import WaveGPT

    WaveGPT.from_pretrained(tmp_path / "ship")  # what was exported before the push stays


def test_hf_dataset_against_a_silent_hub(silent_hub, tmp_path, startup):
    pytest.importorskip("datasets")
    result, seconds = timed(startup, "classify", "train", "--hf-dataset", "some-org/some-dataset", "--out",
                            tmp_path / "clf", env=silent_hub)
    says_the_hub_did_not_answer(result, seconds)
