"""The classifier's data: a local CSV / JSONL / parquet file or a Hugging Face dataset with a text and a
label column, and the held-out rule (the dataset's test split, the rows whose `split` says test, or else
the last 10% of the rows, so the split never depends on a seed)."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hub import HubError, bounded
from .common import HELD_OUT_FRACTION, ClassifyError, _first_line, require_extra

LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class TextData:
    texts: list[str]
    labels: list[Any]
    test_texts: list[str]
    test_labels: list[Any]
    label_names: list[str] | None  # from a ClassLabel column
    source: str
    split_rule: str


def _read_local(path: Path) -> list[dict[str, Any]]:
    fmt = LOCAL_FORMATS.get(path.suffix.lower())
    if fmt is None:
        kind = path.suffix or "a file without an extension"
        raise ClassifyError(f"{path} must be a .csv, .tsv, .jsonl or .parquet file, not {kind}.")
    if not path.exists():
        raise ClassifyError(f"{path} does not exist.")
    if not path.is_file():
        raise ClassifyError(f"{path} is not a file.")
    try:
        if fmt == "csv":
            with path.open(newline="", encoding="utf-8-sig") as f:
                sample = f.read(8192)
                f.seek(0)
                delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
                if not sample.strip():
                    raise ClassifyError(f"{path} is empty.")
                return list(csv.DictReader(f, delimiter=delimiter))
        if fmt == "jsonl":
            rows = []
            with path.open(encoding="utf-8-sig") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError:
                            raise ClassifyError(f"{path} line {n} is not valid JSON.") from None
                        if not isinstance(row, dict):
                            raise ClassifyError(f"{path} line {n} is not a JSON object.")
                        rows.append(row)
            return rows
        require_extra("pyarrow")
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a file that is not parquet
            raise ClassifyError(f"{path} is not a readable parquet file ({type(e).__name__}).") from None
    except UnicodeDecodeError:
        raise ClassifyError(f"{path} is not UTF-8 text.") from None
    except csv.Error as e:
        raise ClassifyError(f"{path} is not a readable CSV file ({e}).") from None


def _columns(rows: list[dict[str, Any]], source: str, text_column: str, label_column: str) -> None:
    if not rows:
        raise ClassifyError(f"{source} holds no rows.")
    names = list(rows[0].keys())
    for col, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if col not in names:
            raise ClassifyError(f"{source} has no column {col!r} (columns: {', '.join(map(str, names))}); "
                                f"name it with {flag}.")


def _held_out(n: int) -> int:
    """Rows held out from n when there is no test split: the last 10%, at least one."""
    return max(1, int(round(n * HELD_OUT_FRACTION)))


def _split_rows(rows: list[dict[str, Any]], source: str) -> tuple[list, list, str]:
    if rows and "split" in rows[0]:
        test = [r for r in rows if str(r.get("split", "")).strip().lower() == "test"]
        train = [r for r in rows if str(r.get("split", "")).strip().lower() != "test"]
        if test and train:
            return train, test, "the rows whose split column is 'test'"
    if len(rows) < 2:
        raise ClassifyError(f"{source} needs at least two rows (training and held-out).")
    k = _held_out(len(rows))
    return rows[:-k], rows[-k:], f"the last {k} of {len(rows)} rows (10%)"


def _clean(rows: list[dict[str, Any]], text_column: str, label_column: str, source: str) -> tuple[list[str], list]:
    texts, labels = [], []
    for n, row in enumerate(rows, 1):
        text, label = row.get(text_column), row.get(label_column)
        if label is None or (isinstance(label, str) and not label.strip()):
            raise ClassifyError(f"{source} row {n} has no label in column {label_column!r}.")
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise ClassifyError(f"{source} row {n}: labels must be strings or integers, not {type(label).__name__}.")
        texts.append("" if text is None else str(text))
        labels.append(label.strip() if isinstance(label, str) else label)
    if not any(t.strip() for t in texts):
        raise ClassifyError(f"{source} has no text in column {text_column!r}.")
    return texts, labels


def load_local(path: str | os.PathLike[str], text_column: str = "text", label_column: str = "label") -> TextData:
    path = Path(path)
    rows = _read_local(path)
    _columns(rows, str(path), text_column, label_column)
    train, test, rule = _split_rows(rows, str(path))
    tr_texts, tr_labels = _clean(train, text_column, label_column, str(path))
    te_texts, te_labels = _clean(test, text_column, label_column, str(path))
    return TextData(tr_texts, tr_labels, te_texts, te_labels, None, str(path), rule)


def load_hf(name: str, text_column: str = "text", label_column: str = "label") -> TextData:
    """A Hugging Face dataset by name (or local folder), through `datasets` (the `classify` extra)."""
    require_extra("datasets")
    import datasets

    datasets.utils.logging.disable_progress_bar()
    try:
        saved = Path(name) / "dataset_dict.json", Path(name) / "state.json"  # what save_to_disk writes
        if Path(name).is_dir() and any(p.is_file() for p in saved):
            ds = datasets.load_from_disk(name)
        else:
            ds = bounded(lambda: datasets.load_dataset(name), f"loading the dataset {name}")
    except HubError:
        raise
    except FileNotFoundError as e:
        raise ClassifyError(f"The dataset {name!r} was not found ({_first_line(e)}).") from None
    except Exception as e:  # network, hub and format errors come as many types
        raise ClassifyError(f"The dataset {name!r} could not be loaded ({type(e).__name__}: "
                            f"{_first_line(e)}).") from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    if "train" not in ds:
        raise ClassifyError(f"The dataset {name!r} has no train split (splits: {', '.join(ds)}).")
    train = ds["train"]
    missing = [c for c in (text_column, label_column) if c not in train.column_names]
    if missing:
        raise ClassifyError(f"The dataset {name!r} has no column {missing[0]!r} (columns: "
                            f"{', '.join(train.column_names)}); name it with "
                            f"{'--text-column' if missing[0] == text_column else '--label-column'}.")
    feature = train.features[label_column]
    label_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    test_name = next((s for s in ("test", "validation") if s in ds), None)
    if test_name is not None:
        test, rule = ds[test_name], f"the dataset's {test_name} split"
    else:
        if len(train) < 2:
            raise ClassifyError(f"The dataset {name!r} needs at least two rows (training and held-out).")
        k = _held_out(len(train))
        test = train.select(range(len(train) - k, len(train)))
        train = train.select(range(len(train) - k))
        rule = f"the last {k} of {len(train) + k} rows (10%)"
    tr = _clean(train.select_columns([text_column, label_column]).to_list(), text_column, label_column, name)
    te = _clean(test.select_columns([text_column, label_column]).to_list(), text_column, label_column, name)
    return TextData(tr[0], tr[1], te[0], te[1], label_names, name, rule)


def load_data(data: str | None, hf_dataset: str | None, text_column: str, label_column: str) -> TextData:
    if (data is None) == (hf_dataset is None):
        raise ClassifyError("Give the data with exactly one of --data FILE and --hf-dataset NAME.")
    if data is not None:
        return load_local(data, text_column, label_column)
    return load_hf(hf_dataset, text_column, label_column)


