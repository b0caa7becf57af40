"""Corpora → tokenizer → shared token caches → batches.

Each prepared corpus is one folder in the cache: `tokenizer.json`, `tokens.bin` (flat uint16, the training
split then the validation split) and `meta.json`. The folder appears in one rename, so a reader sees all of it
or none, and every process memory-maps the same read-only file. The last 10% of a corpus is the validation
split: never trained on, and for text corpora never seen by the tokenizer either.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import re
import shutil
import tempfile
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from .extras import MissingExtraError, require
from .tokenizer import WaveTokenizer

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_FILE = "tinyshakespeare.txt"
FINEWEB_REPO = "HuggingFaceFW/fineweb-edu"
FINEWEB_CONFIG = "sample-10BT"
FINEWEB_TOKENS = {"fineweb_small": 1_000_000, "fineweb": 10_000_000, "fineweb_large": 100_000_000}
# A local parquet file with a `text` column that the FineWeb datasets read instead of the Hub (offline runs,
# tests, a mirror); the token budget and the rest of the pipeline stay the same.
FINEWEB_SOURCE_ENV = "WAVEGPT_FINEWEB_SOURCE"
VAL_FRACTION = 0.1
TOKENIZER_SAMPLE_BYTES = 2_000_000  # FineWeb's tokenizer learns from this much of the first documents
CACHE_FORMAT = 1  # part of every cache key: bump it when tokenization or the layout changes
TOKEN_DTYPE = np.uint16
MIN_VOCAB, MAX_VOCAB = 257, 65536  # 256 bytes + end-of-text; the most uint16 holds
_PIECE_CHARS = 1 << 20
_PIECES_PER_BATCH = 16
_DOCS_PER_BATCH = 1000


class DataError(Exception):
    """A problem with the user's data or cache, worded as one sentence they can act on."""


@dataclass
class Corpus:
    """Token splits as read-only memory maps, plus the character counts that nats/char needs."""

    tokenizer: WaveTokenizer
    train: np.ndarray
    val: np.ndarray
    train_chars: int
    val_chars: int
    name: str


def default_cache_dir() -> Path:
    return Path(os.environ.get("WAVEGPT_CACHE") or Path.home() / ".cache" / "wavegpt").expanduser()


def nats_per_char(nats_per_token: float, n_tokens: int, n_chars: int) -> float:
    """Loss per character compares models whose tokenizers cut the same text into different token counts."""
    return nats_per_token * n_tokens / n_chars


# --- sources ------------------------------------------------------------------------------------------------


def _download(url: str, dest: Path) -> None:
    """The only network call for TinyShakespeare; module-level so tests can stand in for it."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _scratch(folder: Path, prefix: str, directory: bool) -> Path:
    """A temporary file or folder beside its final place, so publishing it is one atomic rename."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if directory:
            return Path(tempfile.mkdtemp(dir=folder, prefix=prefix))
        fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".part")
        os.close(fd)
        return Path(name)
    except OSError as e:
        raise DataError(f"Cannot write to the data cache {folder} ({e.strerror}); "
                        "set --cache-dir or WAVEGPT_CACHE to a writable folder.") from None


def ensure_shakespeare(cache_dir: Path) -> Path:
    """A verified TinyShakespeare in the cache, downloaded once; a partial or wrong file is never used."""
    path = Path(cache_dir) / SHAKESPEARE_FILE
    if path.is_file():
        found = _sha256_file(path)
        if found == SHAKESPEARE_SHA256:
            return path
        warnings.warn(f"{path} has sha256 {found}, not TinyShakespeare's {SHAKESPEARE_SHA256}; "
                      "ignoring it and downloading a fresh copy.", stacklevel=2)
    tmp = _scratch(path.parent, f".{SHAKESPEARE_FILE}.", directory=False)
    try:
        try:
            _download(SHAKESPEARE_URL, tmp)
        except (OSError, http.client.HTTPException) as e:
            raise DataError(f"Could not download TinyShakespeare ({e}); pass --data PATH, "
                            f"or place a verified copy at {path}.") from None
        found = _sha256_file(tmp)
        if found != SHAKESPEARE_SHA256:
            raise DataError(f"The downloaded TinyShakespeare has sha256 {found}, not {SHAKESPEARE_SHA256}; "
                            f"pass --data PATH, or place a verified copy at {path}.")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class DataWarning(UserWarning):
    """Data that was read, but not as it stands (shown by the commands as one `warning:` line)."""


def _read_files(path: Path) -> list[tuple[Path, bytes]]:
    """A file, or every .txt/.md file under a folder in sorted order (hidden files and folders skipped)."""
    if path.is_file():
        return [(path, path.read_bytes())]
    if path.exists() and not path.is_dir():  # a device, a pipe, a socket: never read as a corpus
        raise DataError(f"{path} is not a regular file or folder; give a text file or a folder of .txt/.md files.")
    if not path.is_dir():
        raise DataError(f"{path} does not exist; give a text file or a folder of .txt/.md files.")
    files = sorted(p for p in path.rglob("*")
                   if p.suffix.lower() in (".txt", ".md") and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"{path} holds no .txt or .md files.")
    return [(f, f.read_bytes()) for f in files]


def _utf16(data: bytes) -> str | None:
    """The UTF-16 encoding of text saved by Windows tools: a byte-order mark, or (without one) a NUL in
    every other byte of mostly-ASCII text; None when it is not that."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    sample = data[:4096]
    if len(sample) >= 64 and len(sample) % 2 == 0:
        if sample[1::2].count(0) > 0.9 * len(sample) / 2:
            return "utf-16-le"
        if sample[0::2].count(0) > 0.9 * len(sample) / 2:
            return "utf-16-be"
    return None


def _decode(data: bytes, source: Path) -> str:
    encoding = _utf16(data)
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            pass
        else:
            warnings.warn(f"{source} is UTF-16 text; it was read as UTF-16 (save it as UTF-8 to silence this).",
                          DataWarning, stacklevel=3)
            return text
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is not text
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # surrogateescape maps each bad byte to its own code point, so the count is in bytes.
        bad = len(re.findall("[\udc80-\udcff]", data.decode("utf-8", "surrogateescape")))
        warnings.warn(f"{source} is not valid UTF-8: {bad} undecodable byte(s) were replaced with U+FFFD.",
                      DataWarning, stacklevel=3)
        return data.decode("utf-8", "replace")


def _join_text(path: Path, files: list[tuple[Path, bytes]]) -> str:
    text = "\n\n".join(_decode(data, f) for f, data in files)
    if not text.strip():
        raise DataError(f"{path} holds no text.")
    return text


def read_text_source(path: str | Path) -> str:
    """The text of a file or of a folder's .txt/.md files, joined by blank lines."""
    path = Path(path).expanduser()
    return _join_text(path, _read_files(path))


def _documents(source: str | Path | None) -> Iterator[str]:
    """FineWeb-Edu's `text` column streamed from the Hub, or from a local parquet file with that column."""

    try:
        require("fineweb", "FineWeb-Edu data")
    except MissingExtraError as e:
        raise DataError(str(e)) from None
    import datasets  # slow to import, and only FineWeb needs it

    where = f"{FINEWEB_REPO} ({FINEWEB_CONFIG})" if source is None else str(source)
    hint = "check the network, or train on a local corpus with --data PATH"
    try:
        if source is None:
            stream = datasets.load_dataset(FINEWEB_REPO, name=FINEWEB_CONFIG, split="train", streaming=True)
        else:
            stream = datasets.load_dataset("parquet", data_files=str(source), split="train", streaming=True)
        rows = iter(stream)
    except Exception as e:  # noqa: BLE001 -- Hub clients raise many unrelated types; the user needs one sentence
        raise DataError(f"Could not open {where} ({type(e).__name__}: {e}); {hint}.") from None
    try:
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 -- as above, mid-stream
                raise DataError(f"Could not stream {where} ({type(e).__name__}: {e}); {hint}.") from None
            text = row.get("text")
            if not isinstance(text, str):
                raise DataError(f"{where} has no string 'text' column.")
            yield text
    finally:
        rows.close()


# --- token caches -------------------------------------------------------------------------------------------


def _batches(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def _pieces(text: str) -> Iterator[str]:
    """Bounded pieces cut after a newline: a large corpus encodes in parallel, never as one giant string."""
    start = 0
    while start < len(text):
        end = start + _PIECE_CHARS
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline >= start else end
        yield text[start:end]
        start = end


def _write_text_tokens(f: BinaryIO, tokenizer: WaveTokenizer, text: str) -> int:
    n = 0
    for batch in _batches(_pieces(text), _PIECES_PER_BATCH):
        for ids in tokenizer.encode_batch(batch):
            np.asarray(ids, dtype=TOKEN_DTYPE).tofile(f)
            n += len(ids)
    return n


def _write_meta(folder: Path, tokenizer: WaveTokenizer, **fields: int | str) -> None:
    meta = {**fields, "vocab_size": tokenizer.vocab_size, "tokenizer_sha256": tokenizer.sha256,
            "dtype": np.dtype(TOKEN_DTYPE).name, "format": CACHE_FORMAT}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _build_text(folder: Path, name: str, text: str, vocab_size: int, tokenizer: WaveTokenizer | None) -> None:
    """Split the text itself, so the validation split's character count (for nats/char) is exact."""
    cut = int(len(text) * (1 - VAL_FRACTION))
    train_text, val_text = text[:cut], text[cut:]
    tokenizer = tokenizer or WaveTokenizer.train(_pieces(train_text), vocab_size)
    tokenizer.save(folder)
    with open(folder / "tokens.bin", "wb") as f:
        n_train = _write_text_tokens(f, tokenizer, train_text)
        n_val = _write_text_tokens(f, tokenizer, val_text)
    _write_meta(folder, tokenizer, dataset=name, n_tokens=n_train + n_val, n_train=n_train, n_chars=len(text),
                train_chars=len(train_text), val_chars=len(val_text))


def _tokenizer_sample(docs: Iterator[str], limit: int) -> tuple[list[str], list[str]]:
    """The documents read, and their first `limit` UTF-8 bytes (separators counted) to train on.

    Byte-level BPE makes at most one token per byte, so when the stream fills its budget the sample lies in
    the training split; only a source shorter than the budget can leave part of it in the validation split."""
    seen: list[str] = []
    sample: list[str] = []
    room = limit
    for doc in docs:
        seen.append(doc)
        head = doc.encode()[: room - 1]  # one byte of room stands for the end-of-text token
        sample.append(head.decode(errors="ignore"))
        room -= len(head) + 1
        if room <= 1:
            break
    return seen, sample


def _build_stream(folder: Path, name: str, docs: Iterator[str], budget: int, vocab_size: int,
                  tokenizer: WaveTokenizer | None) -> None:
    """Documents joined by end-of-text up to the token budget; the split is at 90% of the tokens."""
    if tokenizer is None:
        seen, sample = _tokenizer_sample(docs, min(TOKENIZER_SAMPLE_BYTES, int(budget * (1 - VAL_FRACTION))))
        tokenizer = WaveTokenizer.train(sample, vocab_size)
        docs = itertools.chain(seen, docs)
    tokenizer.save(folder)
    doc_tokens: list[int] = []  # per document kept, so the characters on each side of the split are counted
    doc_chars: list[int] = []
    n = 0
    with open(folder / "tokens.bin", "wb") as f:
        encoded = (pair for batch in _batches(docs, _DOCS_PER_BATCH)
                   for pair in zip(batch, tokenizer.encode_batch(batch)))
        for text, ids in encoded:
            kept = (ids + [tokenizer.eot_id])[: budget - n]
            np.asarray(kept, dtype=TOKEN_DTYPE).tofile(f)
            doc_tokens.append(len(kept))
            doc_chars.append(len(text) if len(kept) > len(ids) else len(tokenizer.decode(kept)))
            n += len(kept)
            if n == budget:
                break
    if n == 0:
        raise DataError(f"{name} yielded no text.")
    n_train = int(n * (1 - VAL_FRACTION))
    # The document straddling the split contributes the characters its training tokens decode to
    # (exact up to one character when the cut falls inside a multi-byte character).
    ends = np.cumsum(doc_tokens)
    k = int(np.searchsorted(ends, n_train, side="right"))
    start = int(ends[k - 1]) if k else 0
    tokens = np.fromfile(folder / "tokens.bin", dtype=TOKEN_DTYPE, count=n_train - start,
                         offset=start * np.dtype(TOKEN_DTYPE).itemsize)
    train_chars = sum(doc_chars[:k]) + len(tokenizer.decode(tokens.tolist()))
    n_chars = sum(doc_chars)
    _write_meta(folder, tokenizer, dataset=name, n_tokens=n, n_train=n_train, n_chars=n_chars,
                train_chars=train_chars, val_chars=n_chars - train_chars)


def _load_cache(folder: Path, name: str) -> Corpus | None:
    """The corpus in a finished cache folder, or None if it is missing or damaged (it is then rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        tokenizer = WaveTokenizer.load(folder)
        tokens = np.memmap(folder / "tokens.bin", dtype=TOKEN_DTYPE, mode="r")
        if len(tokens) != meta["n_tokens"] or tokenizer.sha256 != meta["tokenizer_sha256"]:
            return None
        n = meta["n_train"]
        return Corpus(tokenizer, tokens[:n], tokens[n:], meta["train_chars"], meta["val_chars"], name)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cached_corpus(cache_dir: Path, name: str, source_digest: str, vocab_size: int,
                   tokenizer: WaveTokenizer | None, build: Callable[[Path], None]) -> Corpus:
    """Reuse a finished cache or build one; a given tokenizer also reuses the cache it was trained in."""
    root = cache_dir / "tokens"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "data"

    def folder(recipe: str, vocab: int) -> Path:
        key = hashlib.sha256(f"{CACHE_FORMAT}|{source_digest}|{recipe}".encode()).hexdigest()[:16]
        return root / f"{slug}-v{vocab}-{key}"

    folders = [folder(f"trained-{vocab_size}", vocab_size)]
    if tokenizer is not None:
        folders.append(folder(tokenizer.sha256, tokenizer.vocab_size))
    for candidate in folders:
        corpus = _load_cache(candidate, name)
        if corpus and (tokenizer is None or corpus.tokenizer.sha256 == tokenizer.sha256):
            return corpus
    final = folders[-1]
    tmp = _scratch(root, f".{final.name}.", directory=True)
    try:
        build(tmp)
        if final.exists() and _load_cache(final, name) is None:  # a damaged leftover, not a concurrent publish
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:  # another process published the same deterministic cache first
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    corpus = _load_cache(final, name)
    if corpus is None:
        raise DataError(f"The token cache {final} could not be written; delete it and try again.")
    return corpus


def prepare_fineweb(dataset: str, vocab_size: int, cache_dir: Path, tokenizer: WaveTokenizer | None = None,
                    source: str | Path | None = None, max_tokens: int | None = None) -> Corpus:
    """FineWeb-Edu up to the dataset's token budget; `source` (a local parquet with a `text` column) and
    `max_tokens` run the same pipeline offline."""
    budget = max_tokens or FINEWEB_TOKENS[dataset]
    origin = f"{FINEWEB_REPO}/{FINEWEB_CONFIG}" if source is None else _sha256_file(Path(source))
    return _cached_corpus(Path(cache_dir), dataset, f"{origin}|{budget}", vocab_size, tokenizer,
                          lambda folder: _build_stream(folder, dataset, _documents(source), budget,
                                                       vocab_size, tokenizer))


def prepare_corpus(dataset: str | None, data_path: str | None, vocab_size: int, cache_dir: Path,
                   tokenizer: WaveTokenizer | None = None) -> Corpus:
    """The trainer's one call. Deterministic and cached, so processes that follow the main one under
    `main_process_first()` only memory-map what it wrote. Pass `tokenizer` to resume or fine-tune with it."""
    if (dataset is None) == (data_path is None):
        raise DataError("Give exactly one of --dataset NAME or --data PATH.")
    vocab = tokenizer.vocab_size if tokenizer else vocab_size
    if not MIN_VOCAB <= vocab <= MAX_VOCAB:
        raise DataError(f"The vocabulary size must be between {MIN_VOCAB} and {MAX_VOCAB}, not {vocab}.")
    cache_dir = Path(cache_dir).expanduser()
    if data_path is not None:
        path = Path(data_path).expanduser()
        files = _read_files(path)
        digest = hashlib.sha256()
        for _, data in files:
            digest.update(len(data).to_bytes(8, "little") + data)
        return _cached_corpus(cache_dir, path.resolve().name, digest.hexdigest(), vocab_size, tokenizer,
                              lambda folder: _build_text(folder, path.resolve().name, _join_text(path, files),
                                                         vocab_size, tokenizer))
    if dataset not in SOURCES:
        raise DataError(f"Unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}.")
    return SOURCES[dataset](dataset, vocab_size, cache_dir, tokenizer)


# --- the named datasets: one source each (adding a dataset: a function and a line in SOURCES) --------------


def _shakespeare(name: str, vocab_size: int, cache_dir: Path, tokenizer: WaveTokenizer | None) -> Corpus:
    """TinyShakespeare, downloaded once and checked against its sha256."""
    text_file = ensure_shakespeare(cache_dir)
    return _cached_corpus(cache_dir, name, SHAKESPEARE_SHA256, vocab_size, tokenizer,
                          lambda folder: _build_text(folder, name, read_text_source(text_file), vocab_size, tokenizer))


def _fineweb(name: str, vocab_size: int, cache_dir: Path, tokenizer: WaveTokenizer | None) -> Corpus:
    """FineWeb-Edu up to the dataset's token budget, streamed from the Hub or from $WAVEGPT_FINEWEB_SOURCE."""
    source = os.environ.get(FINEWEB_SOURCE_ENV) or None
    if source is not None and not Path(source).expanduser().is_file():
        raise DataError(f"{FINEWEB_SOURCE_ENV}={source} is not a file; name a parquet file with a 'text' "
                        "column, or unset it to stream FineWeb-Edu from the Hub.")
    return prepare_fineweb(name, vocab_size, cache_dir, tokenizer,
                           source=None if source is None else Path(source).expanduser())


SOURCES: dict[str, Callable[[str, int, Path, WaveTokenizer | None], Corpus]] = {
    "shakespeare": _shakespeare,
    **{name: _fineweb for name in FINEWEB_TOKENS},
}
DATASETS = tuple(SOURCES)


def check_corpus_fits(corpus: Corpus, block_size: int,
                      advice: str = "use a smaller --block-size or a larger corpus") -> None:
    """Both splits must hold at least one window of block_size inputs plus the target after it; `advice` is
    what the command lets the user change (wavegpt-eval has no --block-size: the checkpoint fixes it)."""
    for split, tokens in (("training", corpus.train), ("validation", corpus.val)):
        if len(tokens) < block_size + 1:
            raise DataError(f"{corpus.name} has {len(tokens)} {split} tokens, fewer than one block of "
                            f"{block_size}+1; {advice}.")


# --- batches ------------------------------------------------------------------------------------------------


def _windows(tokens: np.ndarray, starts: Iterable[int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.from_numpy(np.stack([tokens[s : s + block_size + 1] for s in starts]).astype(np.int64))
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows drawn only from `generator`, so restoring its state replays the same data order."""
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator).tolist()
    return _windows(tokens, starts, block_size)


def iter_eval_batches(tokens: np.ndarray, batch_size: int, block_size: int,
                      max_batches: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed windows with disjoint targets spread evenly over the split: the same figure every evaluation."""
    available = (len(tokens) - 1) // block_size
    n = min(available, batch_size * max_batches)
    starts = (np.arange(n) * available // max(n, 1)) * block_size
    for i in range(0, n, batch_size):
        yield _windows(tokens, starts[i : i + batch_size].tolist(), block_size)
