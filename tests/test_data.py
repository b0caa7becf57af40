import hashlib
import itertools
import json
import os
import urllib.error
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import prose
from wavegpt import data
from wavegpt.data import (
    DataError,
    check_corpus_fits,
    default_cache_dir,
    ensure_shakespeare,
    get_batch,
    iter_eval_batches,
    nats_per_char,
    prepare_corpus,
    prepare_fineweb,
    read_text_source,
)
from wavegpt.tokenizer import EOT, WaveTokenizer

TRICKY = ["", " ", "  leading and trailing  ", "a\r\nb\r\n", "\ttab\t\tcol", "emoji 👩‍👩‍👧 🇯🇵 👍🏽",
          "漢字かなカナ 한국어", "e\u0301 n\u0303 \u0915\u094d\u0937", "\x00\x7f\u200b\ufeff", f"x{EOT}y",
          "\U0010ffff \u00a0\u3000", "ünïcödé " * 3]


@pytest.fixture(scope="module")
def tokenizer() -> WaveTokenizer:
    return WaveTokenizer.train([prose(15_000)], vocab_size=300)


def test_tokenizer_round_trips_any_unicode(tokenizer):
    for text in TRICKY:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode_batch(TRICKY) == [tokenizer.encode(t) for t in TRICKY]
    assert tokenizer.eot_id not in tokenizer.encode(f"x{EOT}y")  # typed text never becomes the separator
    assert max(max(ids, default=0) for ids in tokenizer.encode_batch(TRICKY)) < tokenizer.vocab_size
    assert tokenizer.decode(np.array(tokenizer.encode("the king"), dtype=np.uint16)) == "the king"


def test_tokenizer_saves_and_loads_from_folder_or_file(tokenizer, tmp_path):
    written = tokenizer.save(tmp_path / "ckpt")
    assert written == tmp_path / "ckpt" / "tokenizer.json"
    for where in (tmp_path / "ckpt", written):
        loaded = WaveTokenizer.load(where)
        assert loaded.sha256 == tokenizer.sha256
        assert [loaded.decode(loaded.encode(t)) for t in TRICKY] == TRICKY
    tokenizer.save(tmp_path / "other.json")
    assert WaveTokenizer.load(tmp_path / "other.json").encode("the king") == tokenizer.encode("the king")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["tokenizer.json"]  # no temp file left

    with pytest.raises(ValueError, match="No tokenizer"):
        WaveTokenizer.load(tmp_path / "missing")
    (tmp_path / "bad.json").write_text('{"model": ')
    with pytest.raises(ValueError, match="not a readable tokenizer"):
        WaveTokenizer.load(tmp_path / "bad.json")


def test_text_file_and_folder_sources(tmp_path):
    (tmp_path / "one.txt").write_text("hello\n")
    assert read_text_source(tmp_path / "one.txt") == "hello\n"
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second")
    (folder / "a.md").write_text("first")
    (folder / "sub" / "c.txt").write_text("third")
    (folder / "skip.py").write_text("not text")
    (folder / ".git").mkdir()
    (folder / ".git" / "x.txt").write_text("hidden")
    assert read_text_source(folder) == "first\n\nsecond\n\nthird"


def test_undecodable_bytes_are_replaced_with_a_warning(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ".encode("latin-1") + b"ok \xff\xfe end")
    with pytest.warns(UserWarning, match="3 undecodable byte"):
        text = read_text_source(path)
    assert text == "caf\ufffd ok \ufffd\ufffd end"


def test_bad_sources_and_arguments_are_one_sentence_data_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text(" \n\t\n")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.csv").write_text("a,b")
    cases = {tmp_path / "missing.txt": "does not exist", tmp_path / "empty.txt": "holds no text",
             tmp_path / "blank.txt": "holds no text", tmp_path / "nothing": "no .txt or .md files"}
    for path, message in cases.items():
        with pytest.raises(DataError, match=message):
            read_text_source(path)
        with pytest.raises(DataError, match=message):
            prepare_corpus(None, str(path), 300, tmp_path / "cache")
    with pytest.raises(DataError, match="exactly one"):
        prepare_corpus(None, None, 300, tmp_path)
    with pytest.raises(DataError, match="exactly one"):
        prepare_corpus("shakespeare", str(tmp_path / "empty.txt"), 300, tmp_path)
    with pytest.raises(DataError, match="choose one of shakespeare, fineweb_small, fineweb, fineweb_large"):
        prepare_corpus("wikipedia", None, 300, tmp_path)
    with pytest.raises(DataError, match="between 257 and 65536"):
        prepare_corpus(None, str(tmp_path / "blank.txt"), 70000, tmp_path)


def test_validation_is_the_last_tenth_and_never_seen_in_training(tmp_path):
    text = prose(11_000) + "жжжж ж жж\n" * 30  # the Cyrillic tail lies wholly in the validation split
    (tmp_path / "c.txt").write_text(text)
    corpus = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache")
    cut = int(len(text) * 0.9)
    tok = corpus.tokenizer
    assert tok.decode(corpus.train.tolist()) == text[:cut]
    assert tok.decode(corpus.val.tolist()) == text[cut:]
    assert (corpus.train_chars, corpus.val_chars) == (cut, len(text) - cut)
    assert "ж" not in tok.decode(corpus.train.tolist())
    # The tokenizer learned no merge from validation text: each Cyrillic letter stays two byte tokens.
    assert len(tok.encode("жжжж")) == 8
    assert isinstance(corpus.train, np.memmap) and not corpus.train.flags.writeable
    assert corpus.name == "c.txt"


def test_second_prepare_reuses_the_cache(tmp_path, monkeypatch):
    (tmp_path / "c.txt").write_text(prose(7_500))
    first = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache")
    [folder] = (tmp_path / "cache" / "tokens").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "tokenizer.json", "tokens.bin"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_tokens"] == len(first.train) + len(first.val)
    assert meta["tokenizer_sha256"] == first.tokenizer.sha256
    stamp = (folder / "tokens.bin").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been reused")

    monkeypatch.setattr(WaveTokenizer, "train", no_training)
    again = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache")
    resumed = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache",
                             tokenizer=first.tokenizer)
    for corpus in (again, resumed):
        assert corpus.tokenizer.sha256 == first.tokenizer.sha256
        np.testing.assert_array_equal(corpus.train, first.train)
        np.testing.assert_array_equal(corpus.val, first.val)
    assert (folder / "tokens.bin").stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 1

    (tmp_path / "c.txt").write_text(prose(7_500, seed=1))  # new content is a new cache entry
    with pytest.raises(AssertionError, match="reused"):
        prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache")


def test_damaged_cache_is_rebuilt(tmp_path):
    (tmp_path / "c.txt").write_text(prose(7_500))
    train = np.array(prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache").train)
    [folder] = (tmp_path / "cache" / "tokens").iterdir()
    with open(folder / "tokens.bin", "r+b") as f:  # a torn write, as if a process died mid-copy
        f.truncate(10)
    again = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache")
    np.testing.assert_array_equal(again.train, train)


def test_preparing_is_deterministic(tmp_path):
    (tmp_path / "c.txt").write_text(prose(7_500))
    a = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "a")
    b = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "b")
    assert a.tokenizer.sha256 == b.tokenizer.sha256
    np.testing.assert_array_equal(np.concatenate([a.train, a.val]), np.concatenate([b.train, b.val]))
    assert os.listdir(tmp_path / "a" / "tokens") == os.listdir(tmp_path / "b" / "tokens")  # same key


def test_corpus_shorter_than_a_block_is_a_data_error(tmp_path):
    (tmp_path / "c.txt").write_text(prose(1_900))
    corpus = prepare_corpus(None, str(tmp_path / "c.txt"), 300, tmp_path / "cache")
    check_corpus_fits(corpus, len(corpus.val) - 1)
    with pytest.raises(DataError, match=f"has {len(corpus.val)} validation tokens, fewer than one block of "
                                        f"{len(corpus.val)}\\+1; use a smaller --block-size"):
        check_corpus_fits(corpus, len(corpus.val))


FAKE_SHAKESPEARE = prose(3_800).encode()


@pytest.fixture
def fake_shakespeare(monkeypatch):
    """The download replaced by a local stand-in whose hash the module treats as the real one."""
    monkeypatch.setattr(data, "SHAKESPEARE_SHA256", hashlib.sha256(FAKE_SHAKESPEARE).hexdigest())
    calls = []

    def download(url, dest):
        calls.append(url)
        Path(dest).write_bytes(FAKE_SHAKESPEARE)

    monkeypatch.setattr(data, "_download", download)
    return calls


def test_shakespeare_is_downloaded_once_and_verified(tmp_path, fake_shakespeare):
    path = ensure_shakespeare(tmp_path)
    assert path == tmp_path / "tinyshakespeare.txt" and path.read_bytes() == FAKE_SHAKESPEARE
    assert ensure_shakespeare(tmp_path) == path
    corpus = prepare_corpus("shakespeare", None, 300, tmp_path)
    assert corpus.name == "shakespeare" and corpus.train_chars + corpus.val_chars == len(FAKE_SHAKESPEARE)
    assert fake_shakespeare == [data.SHAKESPEARE_URL]


def test_shakespeare_with_a_wrong_hash_is_rejected_and_never_left_behind(tmp_path, monkeypatch,
                                                                         fake_shakespeare):
    monkeypatch.setattr(data, "_download", lambda url, dest: Path(dest).write_bytes(b"truncated"))
    with pytest.raises(DataError, match="sha256"):
        ensure_shakespeare(tmp_path)
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "tinyshakespeare.txt").write_bytes(b"someone else's file")
    monkeypatch.setattr(data, "_download", lambda url, dest: Path(dest).write_bytes(FAKE_SHAKESPEARE))
    with pytest.warns(UserWarning, match="ignoring it"):
        path = ensure_shakespeare(tmp_path)
    assert path.read_bytes() == FAKE_SHAKESPEARE
    assert list(tmp_path.iterdir()) == [path]


def test_shakespeare_without_network_says_what_to_do(tmp_path, monkeypatch, fake_shakespeare):
    def offline(url, dest):
        Path(dest).write_bytes(FAKE_SHAKESPEARE[:10])
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataError, match="--data PATH.*" + str(tmp_path / "tinyshakespeare.txt")):
        prepare_corpus("shakespeare", None, 300, tmp_path)
    assert list(tmp_path.iterdir()) == []


def write_parquet(path: Path, n_docs: int) -> list[str]:
    docs = [prose(190, seed=i).strip() for i in range(n_docs)]
    pq.write_table(pa.table({"id": list(range(n_docs)), "text": docs}), path)
    return docs


def test_fineweb_pipeline_on_local_parquet_respects_the_budget(tmp_path, monkeypatch):
    write_parquet(tmp_path / "docs.parquet", 120)
    learned_from: list[str] = []
    real_train = WaveTokenizer.train

    def spy(texts, vocab_size):
        learned_from.extend(texts)
        return real_train(learned_from, vocab_size)

    monkeypatch.setattr(WaveTokenizer, "train", spy)
    corpus = prepare_fineweb("fineweb_small", 300, tmp_path / "cache", source=tmp_path / "docs.parquet",
                             max_tokens=2000)
    assert len(corpus.train) + len(corpus.val) == 2000 and len(corpus.train) == 1800
    assert isinstance(corpus.train, np.memmap) and isinstance(corpus.val, np.memmap)
    tok = corpus.tokenizer
    train_text = tok.decode(corpus.train.tolist())
    assert EOT in train_text
    assert learned_from and train_text.startswith(EOT.join(learned_from))  # tokenizer saw training text only
    # ASCII documents: the character counts are exact, and separators count no characters.
    assert corpus.train_chars == len(train_text.replace(EOT, ""))
    assert corpus.val_chars == len(tok.decode(corpus.val.tolist()).replace(EOT, ""))
    again = prepare_fineweb("fineweb_small", 300, tmp_path / "cache", source=tmp_path / "docs.parquet",
                            max_tokens=2000, tokenizer=tok)
    np.testing.assert_array_equal(again.val, corpus.val)


def test_fineweb_smaller_than_the_budget_keeps_every_document(tmp_path):
    docs = write_parquet(tmp_path / "docs.parquet", 30)
    corpus = prepare_fineweb("fineweb", 300, tmp_path / "cache", source=tmp_path / "docs.parquet",
                             max_tokens=10**6)
    tokens = np.concatenate([corpus.train, corpus.val])
    assert tokens[-1] == corpus.tokenizer.eot_id and (tokens == corpus.tokenizer.eot_id).sum() == len(docs)
    assert corpus.tokenizer.decode(tokens.tolist()) == "".join(d + EOT for d in docs)
    assert corpus.train_chars + corpus.val_chars == sum(map(len, docs))


def test_fineweb_without_network_is_a_data_error(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="Could not open HuggingFaceFW/fineweb-edu.*--data PATH"):
        prepare_corpus("fineweb_small", None, 300, tmp_path)
    assert list((tmp_path / "tokens").iterdir()) == []


def test_get_batch_is_deterministic_for_a_generator_state():
    tokens = np.arange(1000, dtype=np.uint16)
    gen = torch.Generator().manual_seed(3)
    x1, y1 = get_batch(tokens, 4, 16, gen)
    state = gen.get_state()
    x2, _ = get_batch(tokens, 4, 16, gen)
    gen.set_state(state)
    x3, _ = get_batch(tokens, 4, 16, gen)
    x4, _ = get_batch(tokens, 4, 16, torch.Generator().manual_seed(3))
    assert torch.equal(x2, x3) and torch.equal(x1, x4) and not torch.equal(x1, x2)
    assert x1.dtype == y1.dtype == torch.int64 and x1.shape == y1.shape == (4, 16) and y1.is_contiguous()
    assert torch.equal(y1, x1 + 1)  # targets are the next token
    assert int(y1.max()) < 1000


def test_eval_batches_are_fixed_spread_out_and_disjoint():
    tokens = np.arange(1001, dtype=np.uint16)
    batches = list(iter_eval_batches(tokens, 3, 10, max_batches=4))
    assert [x.shape[0] for x, _ in batches] == [3, 3, 3, 3]
    again = list(iter_eval_batches(tokens, 3, 10, max_batches=4))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    starts = torch.cat([x[:, 0] for x, _ in batches]).tolist()
    assert starts == sorted(set(starts)) and all(b - a >= 10 for a, b in itertools.pairwise(starts))
    assert starts[0] == 0 and starts[-1] > 800  # the windows reach across the whole split
    everything = list(iter_eval_batches(tokens[:95], 4, 10, max_batches=100))
    assert [x.shape[0] for x, _ in everything] == [4, 4, 1]  # every complete window, no more


def test_nats_per_char_and_cache_dir(monkeypatch, tmp_path):
    assert nats_per_char(2.0, 300, 1200) == pytest.approx(0.5)
    monkeypatch.setenv("WAVEGPT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("WAVEGPT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "wavegpt"
