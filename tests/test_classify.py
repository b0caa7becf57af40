"""wavegpt-classify: the Wave Network classifier (both variants) and its transformer control, on
texts the tests write (CSV, JSONL, parquet, a Hugging Face dataset saved to disk and a dataset
folder read through datasets.load_dataset, offline); outputs, eval = train's figures, padding
masked out of G, matched sizes, and bad input as one sentence with exit 2."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from wavegpt.classify import (
    ClassifierConfig,
    build_classifier,
    count_classifier_parameters,
    load_classifier,
    load_local,
)
from wavegpt.cli import classify as cli
from wavegpt.ops.wave_network import global_wave_network, naive_global_wave_network

TOPICS = {
    "sea": "wave tide ship salt shore sail storm deep",
    "war": "sword battle army blood siege horse shield fight",
    "love": "heart kiss sweet dear rose gentle sigh fair",
}
COMMON = "the a of and my thou art is to in with".split()
FAST = ["--vocab-size", "300", "--d-model", "32", "--ffn-hidden", "64", "--max-len", "32", "--max-steps", "80",
        "--batch-size", "16", "--lr", "3e-3", "--threads", "1"]


def texts(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(TOPICS)[i % 3]
        words = [rng.choice(TOPICS[label].split()) if rng.random() < 0.4 else rng.choice(COMMON)
                 for _ in range(rng.randint(4, 14))]
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("classify_data")
    rows = texts(180, 0)
    with (root / "topics.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    with (root / "topics.jsonl").open("w", encoding="utf-8") as f:
        for t, lab in rows:
            f.write(json.dumps({"sentence": t, "topic": lab}) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [lab for _, lab in rows]}), root / "topics.parquet")
    return root


def final_line(out: str) -> tuple[float, float]:
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "accuracy" and last[2] == "macro_f1", out
    return float(last[1]), float(last[3])


@pytest.mark.parametrize("op", ["interference", "modulation"])
def test_global_form_equals_the_complex_reference_and_ignores_padding(op):
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(3, 9, 6, generator=g, dtype=torch.float64), torch.randn(3, 9, 6, generator=g,
                                                                                 dtype=torch.float64)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[0, 6:] = False
    mask[2, :3] = False
    fast = global_wave_network(w1, w2, op, mask) * mask[..., None]
    assert torch.allclose(fast, naive_global_wave_network(w1, w2, op, mask), atol=1e-10)
    alone = global_wave_network(w1[:1, :6], w2[:1, :6], op)  # the same text with no padding at all
    assert torch.allclose(fast[0, :6], alone[0], atol=1e-12)


@pytest.mark.parametrize("variant", ["interference", "modulation", "transformer"])
def test_a_text_gets_the_same_logits_whatever_it_is_padded_with(variant):
    torch.manual_seed(0)
    config = ClassifierConfig(variant=variant, vocab_size=50, d_model=16, ffn_hidden=32, max_len=20, num_classes=3,
                              dropout=0.0)
    model = build_classifier(config).eval()
    short = torch.randint(1, 50, (1, 5))
    padded = torch.cat([short, torch.randint(1, 50, (1, 7))], 1)
    mask = torch.tensor([[True] * 5 + [False] * 7])
    with torch.no_grad():
        a = model(short, torch.ones(1, 5, dtype=torch.bool))
        b = model(padded, mask)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("d, hidden, max_len", [(32, 64, 32), (256, 1024, 256), (768, 3072, 128)])
def test_the_control_has_the_wave_networks_size(d, hidden, max_len):
    counts = {}
    for variant in ("interference", "modulation", "transformer"):
        config = ClassifierConfig(variant=variant, vocab_size=1000, d_model=d, ffn_hidden=hidden, max_len=max_len,
                                  num_classes=4, n_heads=4)
        counts[variant] = count_classifier_parameters(config)
        if d <= 256:
            assert sum(p.numel() for p in build_classifier(config).parameters()) == counts[variant]
    assert counts["interference"] == counts["modulation"]
    assert abs(counts["transformer"] - counts["modulation"]) / counts["modulation"] < 0.01, counts


def test_train_writes_every_output_and_eval_gives_the_same_figures(capsys, data_dir, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, cli.main, "train", "--data", str(data_dir / "topics.csv"), "--variant",
                                "modulation", "--out", str(out), *FAST)
    assert code == 0, err
    acc, f1 = final_line(stdout)
    assert acc > 0.6  # 3 balanced topics: chance is 1/3
    for name in ("metrics.json", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0
    assert {p.name for p in (out / "checkpoint").iterdir()} >= {"model.safetensors", "config.json", "tokenizer.json"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 18 and "last 18 of 180 rows" in m["held_out"]  # the last 10%, by position
    assert sum(map(sum, m["confusion_matrix"])) == 18 and sorted(m["labels"]) == ["love", "sea", "war"]
    model, config, _ = load_classifier(out)
    assert config.variant == "modulation" and isinstance(model, torch.nn.Module)

    code, stdout, err = run_cli(capsys, cli.main, "eval", "--checkpoint", str(out), "--data",
                                str(data_dir / "topics.csv"))
    assert code == 0, err
    assert final_line(stdout) == (round(acc, 4), round(f1, 4))
    assert json.loads((out / "eval" / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    assert (out / "eval" / "confusion_matrix.png").is_file()
    # a second train into the same folder needs --overwrite, and then replaces only its own outputs
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, cli.main, "train", "--data", str(data_dir / "topics.csv"), "--out", str(out), *FAST)
    assert code == 2 and "--overwrite" in err
    code, _, err = run_cli(capsys, cli.main, "train", "--data", str(data_dir / "topics.csv"), "--out", str(out),
                           "--overwrite", "--variant", "interference", *FAST)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and load_classifier(out)[1].variant == "interference"


def test_csv_jsonl_and_parquet_give_the_same_rows(data_dir):
    a = load_local(data_dir / "topics.csv")
    b = load_local(data_dir / "topics.jsonl", text_column="sentence", label_column="topic")
    c = load_local(data_dir / "topics.parquet")
    assert a.texts == b.texts == c.texts and a.test_labels == b.test_labels == c.test_labels
    assert len(a.test_texts) == 18 and a.test_texts == [t for t, _ in texts(180, 0)][-18:]


def test_a_split_column_names_the_test_rows(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = [{"text": t, "label": lab, "split": "test" if i % 5 == 0 else "train"}
            for i, (t, lab) in enumerate(texts(40, 1))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_local(path)
    assert len(data.test_texts) == 8 and data.split_rule.startswith("the rows whose split")


def test_transformer_control_and_hf_datasets_offline(capsys, data_dir, tmp_path, monkeypatch):
    """save_to_disk folders (ClassLabel names kept) and a data folder read by datasets.load_dataset."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rows = texts(150, 2)
    names = list(TOPICS)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    split = {"train": rows[:120], "test": rows[120:]}
    dd = datasets.DatasetDict({k: datasets.Dataset.from_dict(
        {"text": [t for t, _ in v], "label": [names.index(lab) for _, lab in v]}, features=features)
        for k, v in split.items()})
    dd.save_to_disk(str(tmp_path / "saved"))
    code, stdout, err = run_cli(capsys, cli.main, "train", "--hf-dataset", str(tmp_path / "saved"), "--variant",
                                "transformer", "--out", str(tmp_path / "ctl"), *FAST)
    assert code == 0, err
    m = json.loads((tmp_path / "ctl" / "metrics.json").read_text())
    assert m["n"] == 30 and m["labels"] == names and "test split" in m["held_out"]
    assert final_line(stdout)[0] == round(m["accuracy"], 4)

    folder = tmp_path / "hub_like"  # a dataset repository's layout: data files that load_dataset reads
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows[:100]))
    code, stdout, err = run_cli(capsys, cli.main, "train", "--hf-dataset", str(folder), "--out", str(tmp_path / "wn"),
                                *FAST)
    assert code == 0, err
    assert json.loads((tmp_path / "wn" / "metrics.json").read_text())["n"] == 10  # no test split: last 10%


def test_the_console_script_is_installed_and_documents_the_interface():
    proc = subprocess.run([sys.executable, "-m", "wavegpt.cli.classify", "train", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0
    for flag in ("--data", "--hf-dataset", "--text-column", "--label-column", "--variant", "--max-steps", "--seed",
                 "--out"):
        assert flag in proc.stdout


BAD_DATA = {  # case: the --data file's name and text (None: it does not exist)
    "missing": ("nope.csv", None),
    "empty": ("e.csv", ""),
    "no_column": ("c.csv", "sentence,label\na,b\nc,d\n"),
    "one_label": ("o.csv", "text,label\n" + "".join(f"t{i},x\n" for i in range(20))),
    "extension": ("d.txt", "hello"),
    "bad_json": ("b.jsonl", '{"text": "a", "label": 1}\n{oops\n'),
    "not_parquet": ("n.parquet", "not parquet"),
}


@pytest.mark.parametrize("case, words", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("no_column", "has no column 'text'"),
    ("one_label", "only one label"),
    ("extension", "must be a .csv"),
    ("bad_json", "line 2 is not valid JSON"),
    ("not_parquet", "not a readable parquet"),
    ("both", "not allowed with argument"),
    ("foreign_out", "did not write"),
    ("bad_checkpoint", "not a wavegpt-classify checkpoint"),
    ("unseen_label", "not one this classifier knows"),
])
def test_bad_input_is_one_sentence_and_exit_2(capsys, data_dir, tmp_path, case, words):
    good = str(data_dir / "topics.csv")
    out = str(tmp_path / "out")
    argv = ["train", "--data", good, "--out", out, *FAST]
    if case in BAD_DATA:
        name, text = BAD_DATA[case]
        if text is not None:
            (tmp_path / name).write_text(text)
        argv[2] = str(tmp_path / name)
    elif case == "both":
        argv += ["--hf-dataset", "ag_news"]
    elif case == "foreign_out":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "thesis.tex").write_text("keep me")
    elif case == "bad_checkpoint":
        (tmp_path / "ck").mkdir()
        argv = ["eval", "--checkpoint", str(tmp_path / "ck"), "--data", good]
    elif case == "unseen_label":
        run_cli(capsys, cli.main, *argv)
        (tmp_path / "u.csv").write_text("text,label\nthe sea,whale\nthe war,sea\n")
        argv = ["eval", "--checkpoint", out, "--data", str(tmp_path / "u.csv"), "--split", "all"]
    code, _, err = run_cli(capsys, cli.main, *argv)
    assert code == 2, err
    assert words in err
    if case != "both":  # argparse's own usage line precedes its message
        assert err.startswith("error: ") and err.count("\n") == 1, err
    if case == "foreign_out":
        assert (tmp_path / "out" / "thesis.tex").read_text() == "keep me"
