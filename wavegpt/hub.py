"""The Hugging Face Hub, transport only: download a model folder by repo id, push one (its model card is
card.py's business).

`from_pretrained("org/name")` goes through `huggingface_hub.snapshot_download`, so the Hub's
cache, `HF_HUB_OFFLINE=1`, `HF_HUB_CACHE` and `HF_TOKEN` behave as in every other Hugging Face
library. A local folder always wins over a repo id of the same spelling.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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


def download(repo_id: str, revision: str | None = None) -> Path:
    """The snapshot folder of a model repo (from the cache when offline or already there)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES,
                                      library_name="wavegpt"))
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
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=MODEL_FILES,
                                 commit_message=commit_message or f"Upload {folder.name} with wavegpt")
    except Exception as e:  # noqa: BLE001 -- HTTP clients raise many unrelated types; the user needs one sentence
        raise HubError(f"Could not push {folder} to {repo_id} on the Hugging Face Hub ({_one_line(e)}).") from None
    return str(getattr(info, "commit_url", info))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__
