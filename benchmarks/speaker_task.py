"""The TinyShakespeare speaker task: which of the most frequent speakers says a passage?

    python benchmarks/speaker_task.py build --text tinyshakespeare.txt --out speakers.csv
    python benchmarks/speaker_task.py table --data speakers.csv --seeds 0 1 2 --out runs/speakers

`build` turns the play text into a CSV (text, label, split): every speech of the `--speakers`
most frequent speakers is one passage (the lines under "NAME:" up to the next blank line); for
each speaker the last 10% of their passages, in the order of the text, are the held-out rows
(split = test), so the test passages come after every training passage of the same speaker.
Nothing is downloaded and the CSV is written where you say (never into the repository).

`table` trains `wavegpt-classify` on that CSV for each variant (Wave Network interference,
modulation, the same-size transformer control) and seed (`--jobs` at a time), and prints a
Markdown table of parameters, CPU time per run (user + system, from the OS, so it does not
depend on what else the machine runs) and held-out accuracy / macro-F1 (mean ± std).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

SPEAKER = re.compile(r"[A-Z][A-Za-z' ]*:")


def speeches(text: str) -> list[tuple[str, str]]:
    """(speaker, passage) for every block "NAME:\\nlines" of the text, in order."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip("\n").split("\n")
        if len(lines) >= 2 and SPEAKER.fullmatch(lines[0].strip()):
            passage = "\n".join(lines[1:]).strip()
            if passage:
                out.append((lines[0].strip()[:-1], passage))
    return out


def build(text_path: Path, out: Path, n_speakers: int, min_chars: int) -> dict:
    text = text_path.read_text(encoding="utf-8")
    all_speeches = [(s, p) for s, p in speeches(text) if len(p) >= min_chars]
    top = [s for s, _ in collections.Counter(s for s, _ in all_speeches).most_common(n_speakers)]
    rows = [(s, p) for s, p in all_speeches if s in top]
    per = collections.Counter(s for s, _ in rows)
    held = {s: max(1, round(0.1 * n)) for s, n in per.items()}
    seen = collections.Counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    test = 0
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "split"])
        for s, p in rows:
            seen[s] += 1
            split = "test" if seen[s] > per[s] - held[s] else "train"
            test += split == "test"
            w.writerow([p, s, split])
    tmp.replace(out)
    return {"rows": len(rows), "test": test, "speakers": top}


def table(args: argparse.Namespace) -> None:
    """Every (variant, seed) run, --jobs at a time; CPU seconds per run from the OS (os.wait4)."""
    results: dict[str, list[dict]] = collections.defaultdict(list)
    todo = [(v, s) for v in args.variants for s in args.seeds]
    running: dict[int, tuple] = {}
    done: dict[tuple, dict] = {}
    while todo or running:
        while todo and len(running) < args.jobs:
            variant, seed = todo.pop(0)
            out = Path(args.out) / f"{variant}-seed{seed}"
            cmd = [sys.executable, "-m", "wavegpt.cli.classify", "train", "--data", str(args.data),
                   "--variant", variant, "--seed", str(seed), "--out", str(out), "--overwrite",
                   "--threads", str(args.threads), *args.extra]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            running[proc.pid] = (variant, seed, out, proc, time.perf_counter())
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        variant, seed, out, proc, t0 = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            sys.exit(f"{variant} seed {seed} failed: {proc.stderr.read().strip().splitlines()[-1]}")
        m = json.loads((out / "metrics.json").read_text())
        m["wall"], m["cpu"] = time.perf_counter() - t0, usage.ru_utime + usage.ru_stime
        done[(variant, seed)] = m
        print(f"{variant} seed {seed}: accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}, "
              f"{m['parameters']:,} parameters, {m['cpu']:.1f} CPU s, {m['wall']:.0f} s wall", flush=True)
    for variant in args.variants:
        results[variant] = [done[(variant, s)] for s in args.seeds]

    def ms(values: list[float], fmt: str) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{format(statistics.fmean(values), fmt)} ± {format(sd, fmt)}"

    print()
    print("| model | parameters | CPU time per run (s) | accuracy | macro-F1 |")
    print("|---|---|---|---|---|")
    names = {"interference": "Wave Network, interference", "modulation": "Wave Network, modulation",
             "transformer": "transformer control (1 layer)"}
    for variant, ms_ in results.items():
        print(f"| {names[variant]} | {ms_[0]['parameters'] / 1e6:.2f}M | "
              f"{ms([m['cpu'] for m in ms_], '.1f')} | "
              f"{ms([m['accuracy'] for m in ms_], '.3f')} | {ms([m['macro_f1'] for m in ms_], '.3f')} |")
    m0 = next(iter(results.values()))[0]
    print(f"\n{m0['n']} held-out passages ({m0['held_out']}), {m0['train_rows']} training passages, "
          f"{len(m0['labels'])} speakers; seeds {', '.join(map(str, args.seeds))}.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the speaker CSV")
    b.add_argument("--text", type=Path, required=True, help="TinyShakespeare's input.txt")
    b.add_argument("--out", type=Path, required=True, help="the CSV to write")
    b.add_argument("--speakers", type=int, default=10, help="the most frequent speakers kept (default 10)")
    b.add_argument("--min-chars", type=int, default=20, help="shorter passages are dropped (default 20)")
    t = sub.add_parser("table", help="train every variant and seed, print the table")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--variants", nargs="+", default=["interference", "modulation", "transformer"])
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    t.add_argument("extra", nargs=argparse.REMAINDER, help="more wavegpt-classify train flags after --")
    args = p.parse_args()
    if args.command == "build":
        info = build(args.text, args.out, args.speakers, args.min_chars)
        print(f"{args.out}: {info['rows']} passages, {info['test']} held out; speakers: {', '.join(info['speakers'])}")
    else:
        args.extra = [a for a in args.extra if a != "--"]
        table(args)


if __name__ == "__main__":
    main()
