"""The Hugging Face Hub, transport only: download a model folder by repo id, push one (its model card is
card.py's business).

`from_pretrained("org/name")` goes through `huggingface_hub.snapshot_download`, so the Hub's
cache, `HF_HUB_OFFLINE=1`, `HF_HUB_CACHE` and `HF_TOKEN` behave as in every other Hugging Face
library. A local folder always wins over a repo id of the same spelling.

Every call to the Hub is bounded (`bounded`): each HTTP request times out after HUB_REQUEST_TIMEOUT seconds
(huggingface_hub's client and its etag/download timeouts), and the whole call, retries included, after
HUB_DEADLINE seconds; an endpoint that accepts the connection and never answers ends in one sentence that
says so and what to do (retry, or HF_HUB_OFFLINE=1 for the cache).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
HUB_REQUEST_TIMEOUT = 8.0  # seconds one HTTP request may wait for the Hub
HUB_DEADLINE = 15.0  # seconds one call (a download, a push, a dataset), retries included, may take
ABANDONED: list[threading.Thread] = []  # calls given up at their deadline (the commands then exit at once)

# What a model folder holds; nothing else is downloaded (no stray files from a repo).
MODEL_FILES = ["config.json", "model.safetensors", "model.onnx", "tokenizer.json", "tokenizer_config.json",
               "generation_config.json", "README.md"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class HubError(ValueError):
    """The Hub could not give or take a model; the message is one sentence."""


def is_repo_id(name: str | Path) -> bool:
    """`org/name` as the Hub spells repository ids (a path that exists locally is never one)."""
    text = str(name)
    return bool(_REPO_ID.match(text)) and ".." not in text and "--" not in text and not Path(text).exists()


_bounded_once = threading.Lock()
_bounded_done: list[bool] = []


def bound_requests() -> None:
    """Give huggingface_hub's HTTP client (shared by datasets and transformers) a timeout on every request;
    its own default waits forever on an endpoint that accepts and never answers. Idempotent."""
    with _bounded_once:
        if _bounded_done:
            return
        import huggingface_hub
        from huggingface_hub import constants

        for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
            if not os.environ.get(name):  # a user's own setting wins
                setattr(constants, name, int(HUB_REQUEST_TIMEOUT))
        try:
            import httpx
            from huggingface_hub.utils._http import default_client_factory
        except ImportError:  # another huggingface_hub: its own timeouts, still under HUB_DEADLINE
            _bounded_done.append(True)
            return

        def client():
            c = default_client_factory()
            c.timeout = httpx.Timeout(HUB_REQUEST_TIMEOUT)
            return c

        huggingface_hub.set_client_factory(client)
        _bounded_done.append(True)


def no_answer(what: str, seconds: float) -> HubError:
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return HubError(f"The Hugging Face Hub ({endpoint}) did not answer within {seconds:.0f} s while {what}; check "
                    f"the connection and retry, or set HF_HUB_OFFLINE=1 to use only the local cache.")


def is_timeout(e: BaseException) -> bool:
    """A network timeout, whichever HTTP library raised it (httpx, requests, urllib3, the socket)."""
    names = {type(x).__name__ for x in (e, e.__cause__, e.__context__) if x is not None}
    return bool(names & {"TimeoutError", "ReadTimeout", "ConnectTimeout", "TimeoutException", "PoolTimeout",
                         "WriteTimeout", "Timeout", "ReadTimeoutError", "ConnectTimeoutError"}) \
        or "timed out" in str(e).lower()


def bounded(call: Callable[[], T], what: str, deadline: float | None = None) -> T:
    """call() with every request bounded and the whole call ended after `deadline` seconds (HUB_DEADLINE): a
    HubError that says the Hub did not answer. The call runs in a daemon thread so a hung socket cannot keep
    the command waiting; its result or exception is handed back as is."""
    bound_requests()
    deadline = HUB_DEADLINE if deadline is None else deadline
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=run, name="wavegpt-hub", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        ABANDONED.append(thread)
        _stop_talking_to_the_hub()
        raise no_answer(what, deadline)
    if "error" in box:
        if is_timeout(box["error"]):
            raise no_answer(what, HUB_REQUEST_TIMEOUT) from None
        raise box["error"]
    return box["value"]


def _stop_talking_to_the_hub() -> None:
    """After a call was given up: huggingface_hub's offline mode for the rest of the process, so that the
    abandoned call's retries fail at once instead of waiting on the silent endpoint again."""
    try:
        import huggingface_hub
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
        huggingface_hub.close_session()
    except Exception:  # noqa: BLE001 - best effort: the deadline already holds
        pass


def download(repo_id: str, revision: str | None = None) -> Path:
    """The snapshot folder of a model repo (from the cache when offline or already there)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(bounded(lambda: snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES,
                                                      library_name="wavegpt"), f"downloading {repo_id}"))
    except HubError:
        raise
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id} is neither a local folder nor a model repository on the Hugging Face Hub "
                       "(or it is private: log in with `hf auth login` or set HF_TOKEN).") from None
    except LocalEntryNotFoundError:
        raise HubError(f"{repo_id} is not a local folder, and the Hugging Face Hub cache has no copy of it "
                       "(offline, or the Hub cannot be reached).") from None
    except Exception as e:  # noqa: BLE001 -- HTTP clients raise many unrelated types; the user needs one sentence
        raise HubError(f"Could not download {repo_id} from the Hugging Face Hub ({_one_line(e)}).") from None


def push(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None,
         commit_message: str | None = None, api: Any = None) -> str:
    """Create the repo if needed and upload the model folder in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.onnx")):
        raise HubError(f"{folder} holds no model (model.safetensors or model.onnx) to push.")
    api = api if api is not None else HfApi(token=token)
    def upload():
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=MODEL_FILES,
                                 commit_message=commit_message or f"Upload {folder.name} with wavegpt")

    try:  # an upload of a large folder may take long: the deadline grows with its size (1 MB/s at least)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        info = bounded(upload, f"pushing {folder} to {repo_id}", HUB_DEADLINE + size / 1e6)
    except HubError:
        raise
    except Exception as e:  # noqa: BLE001 -- HTTP clients raise many unrelated types; the user needs one sentence
        raise HubError(f"Could not push {folder} to {repo_id} on the Hugging Face Hub ({_one_line(e)}).") from None
    return str(getattr(info, "commit_url", info))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__
