"""The honest benchmark: every model on the same data, tokenizer, context, batch, schedule
and token budget (or wall-clock budget), several seeds, judged on held-out data.

Each run is a real `wavegpt-train` in its own process (so its peak memory is its own);
results go to `results.json`, `results.md` and comparison plots in the output folder.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PRESETS, SIZES, ConfigError, WaveGPTConfig, parse_field_values, recipe_of
from .ownership import check_names_free, is_bench_file
from .provenance import machine_description
from .validation import MAX_SEED, real, whole
from .viz.curves import read_metrics

# Named rows that are a preset plus config fields (a row may also be written out in full as
# "preset+field=value+field=value").
ALIASES: dict[str, str] = {
    # the wave model as it was before position moved into the interference (0.1's full_physics)
    "seed_faithful": "full_physics+position=embedding+temperature_init=sqrt_waves+amplitude_init=unit",
}


# Row parts that set the training recipe rather than a config field: "classic_rope+lr=0.004".
RECIPE_KEYS = ("lr",)


def split_spec(spec: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """"baseline+amplitude_init=small+lr=0.003" -> ("baseline", {"amplitude_init": "small"}, {"lr": 0.003}),
    checked against the config (a size field changed is re-matched in parameters by from_preset)."""
    preset, *pairs = ALIASES.get(spec, spec).split("+")
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r} in {spec!r}; choose from {', '.join(PRESETS)} "
                          f"(or {', '.join(ALIASES)}).")
    fields = parse_field_values(pairs, what=f"Each part of {spec!r} after the preset")
    recipe = {k: fields.pop(k) for k in RECIPE_KEYS if k in fields}
    lr = recipe.get("lr", 1.0)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < float("inf"):
        raise ConfigError(f"The learning rate in {spec!r} must be a positive number, not {lr!r}.")
    WaveGPTConfig.from_preset("tiny", preset, **fields)  # names and values must make a model
    return preset, fields, recipe


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """The preset and config fields of a row (its recipe parts left out)."""
    preset, fields, _ = split_spec(spec)
    return preset, fields


def row_lr(args: BenchArgs, spec: str) -> float:
    """A row's peak learning rate: its own `+lr=`, else --lr, else its preset's tuned rate."""
    preset, _, recipe = split_spec(spec)
    return float(recipe.get("lr") or args.lr or recipe_of(preset)["lr"])


def run_slug(spec: str) -> str:
    return spec.replace("+", "__").replace("=", "-").replace("/", "_")


@dataclass
class BenchArgs:
    presets: list[str] = field(default_factory=lambda: list(PRESETS))
    model: str = "tiny"
    max_tokens: int = 1_000_000
    max_time: float | None = None  # equal wall-clock budget per run instead of equal tokens
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out: str = "bench-results"
    dataset: str | None = "shakespeare"
    data: str | None = None
    batch_size: int = 32
    block_size: int | None = None
    lr: float | None = None  # None: each row's preset's tuned rate (config.RECIPES)
    dropout: float = 0.1
    eval_batches: int = 40
    evals: int = 8  # validation points per run, for the curves
    threads: int | None = None
    jobs: int = 1  # runs trained at the same time (each with `threads` threads)
    controls: bool = True  # always include classic and classic_rope
    reference: str | None = None  # the row every other is paired against, seed by seed (default classic_rope)
    cache_dir: str | None = None

    def validate(self) -> None:
        for spec in self.presets:
            parse_spec(spec)
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, not {self.jobs}.")
        if self.model not in SIZES:
            raise ConfigError(f"Unknown model size {self.model!r}; choose one of {', '.join(SIZES)}.")
        if self.max_tokens < 1 or not self.seeds:
            raise ConfigError("--max-tokens must be positive and --seeds must name at least one seed.")
        for seed in self.seeds:
            whole(seed, "seed", 0, MAX_SEED)
        whole(self.batch_size, "batch_size", 1)
        whole(self.eval_batches, "eval_batches", 1)
        whole(self.evals, "evals", 1)
        if self.lr is not None:
            real(self.lr, "lr", 0.0, low_open=True)
        real(self.dropout, "dropout", 0.0, 1.0)
        if self.max_time is not None:
            real(self.max_time, "max_time", 0.0, low_open=True)
        if self.threads is not None:
            whole(self.threads, "threads", 1, 1024)
        if self.block_size is not None:
            whole(self.block_size, "block_size", 2)
        for spec in self.presets:  # every row's model, at this size, context and dropout
            preset, fields = parse_spec(spec)
            WaveGPTConfig.from_preset(self.model, preset, **{"block_size": block_size_of(self),
                                                             "dropout": self.dropout, **fields})


def block_size_of(args: BenchArgs) -> int:
    return args.block_size or SIZES[args.model]["block_size"]


RESULT_NAME = "bench_result.json"


def run_one(args: BenchArgs, spec: str, seed: int) -> dict[str, Any]:
    """One training run through the train command, in a fresh process.

    A run that finished before (its bench_result.json is there, for the same budget) is not
    trained again; a run that was killed continues from its last checkpoint with --resume.
    So a killed benchmark, started again with the same arguments, continues where it stopped.
    """
    preset, fields = parse_spec(spec)
    lr = row_lr(args, spec)
    out = Path(args.out) / "runs" / f"{run_slug(spec)}-seed{seed}"
    steps = max(1, args.max_tokens // (args.batch_size * block_size_of(args)))
    budget = {"steps": steps, "batch_size": args.batch_size, "block_size": block_size_of(args),
              "max_time": args.max_time, "fields": fields, "model": args.model, "lr": lr}
    previous = _finished(out, budget)
    if previous is not None:  # named by this row and folder (a folder copied or renamed keeps its result)
        return {**previous, "preset": spec, "folder": str(out)}
    resume = (out / "checkpoint").is_dir() and (out / "run.json").is_file()
    cmd = [sys.executable, "-m", "wavegpt.cli.train", "--out", str(out), "--no-progress"]  # never changed below
    proc = _train([*cmd, "--resume"], args) if resume else None
    if proc is None or proc.returncode != 0:  # nothing to resume, or an unusable or finished partial run: afresh
        fresh = _fresh_flags(args, preset, fields, seed, steps, lr) + (["--overwrite"] if out.exists() else [])
        proc = _train([*cmd, *fresh], args)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"The {spec} run with seed {seed} failed: {tail}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {"preset": spec, "seed": seed, "folder": str(out), "lr": lr, **summary}
    (out / RESULT_NAME).write_text(json.dumps({"budget": budget, "result": result}, indent=2) + "\n", encoding="utf-8")
    return result


def _finished(out: Path, budget: dict[str, Any]) -> dict[str, Any] | None:
    """The result of a run that finished before on the same budget (results written before the budget named
    its lr count when the run's own run.json says it trained at that lr), else None."""
    previous = read_result(out / RESULT_NAME)
    if previous is None:
        return None
    same = previous["budget"] == budget
    if not same and "lr" not in previous["budget"]:
        try:
            trained = json.loads((out / "run.json").read_text(encoding="utf-8")).get("lr")
        except (OSError, ValueError, AttributeError):
            trained = None
        same = {**previous["budget"], "lr": trained} == budget
    return {**previous["result"], "lr": budget["lr"]} if same else None


def read_result(path: Path) -> dict[str, Any] | None:
    """A finished run's bench_result.json ({"budget": {...}, "result": {...}}), None when there is none; a file
    of another shape is one sentence naming it (wavegpt-bench never replaces what it did not write)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    ok = isinstance(data, dict) and isinstance(data.get("budget"), dict) and isinstance(data.get("result"), dict) \
        and all(isinstance(data["result"].get(k), int | float) for k in ("val_nats_per_char", "tokens_per_s"))
    if not ok:
        raise ConfigError(f"{path} is not a result wavegpt-bench wrote (a torn or foreign file); delete it to train "
                          f"that run again.")
    return data


def _train(cmd: list[str], args: BenchArgs) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _fresh_flags(args: BenchArgs, preset: str, fields: dict[str, Any], seed: int, steps: int,
                 lr: float) -> list[str]:
    cmd = ["--preset", preset, "--model", args.model, "--seed", str(seed),
           "--max-steps", str(steps), "--batch-size", str(args.batch_size), "--lr", str(lr),
           "--dropout", str(args.dropout), "--block-size", str(block_size_of(args)),
           "--eval-interval", str(max(1, steps // args.evals)), "--eval-batches", str(args.eval_batches),
           "--save-interval", str(steps), "--warmup-steps", str(max(1, min(100, steps // 10))),
           "--report-to", "none"]
    cmd += ["--data", args.data] if args.data else ["--dataset", args.dataset or "shakespeare"]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    if args.max_time:
        cmd += ["--max-time", str(args.max_time)]
    for name, value in fields.items():
        cmd += ["--set", f"{name}={json.dumps(value)}"]
    return cmd


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for preset in dict.fromkeys(r["preset"] for r in runs):
        rs = [r for r in runs if r["preset"] == preset]
        row: dict[str, Any] = {"preset": preset, "seeds": [r["seed"] for r in rs],
                               "parameters": rs[0]["parameters"], "lr": rs[0].get("lr")}
        for key in ("tokens", "wall_time_s", "tokens_per_s", "peak_memory_mb", "val_nats_per_token",
                    "val_nats_per_char"):
            row[key], row[key + "_std"] = _mean_std([float(r[key]) for r in rs])
        rows.append(row)
    return sorted(rows, key=lambda r: r["val_nats_per_char"])


def markdown_table(rows: list[dict[str, Any]], args: BenchArgs, machine: str) -> str:
    budget = f"{args.max_time:.0f} s of wall-clock time" if args.max_time else f"{args.max_tokens:,} tokens"
    lines = [
        f"Budget per run: {budget}; model size `{args.model}`, context {block_size_of(args)}, batch "
        f"{args.batch_size}, lr {args.lr or 'each preset its own (RECIPES)'}, dropout {args.dropout}, seeds "
        f"{', '.join(map(str, args.seeds))}; validation on the held-out last 10% ({args.eval_batches} batches). "
        f"Machine: {machine}.",
        "",
        "| preset | lr | params | tokens | wall time (s) | tokens/s | peak mem (MB) | val nats/token | val nats/char |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['lr'] if r.get('lr') is not None else '-'} | {r['parameters'] / 1e6:.2f}M | "
            f"{r['tokens']:,.0f} | {r['wall_time_s']:.0f} | "
            f"{r['tokens_per_s']:,.0f} | {r['peak_memory_mb']:,.0f} | "
            f"{r['val_nats_per_token']:.3f} ± {r['val_nats_per_token_std']:.3f} | "
            f"{r['val_nats_per_char']:.3f} ± {r['val_nats_per_char_std']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def paired(runs: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Each row against `reference` seed by seed: val nats/char (row - reference) per shared seed, their mean and
    spread, and whether the row is lower on every seed (the seeds share the data order, so pairs are steadier
    than either row's own spread)."""
    ref = {r["seed"]: r["val_nats_per_char"] for r in runs if r["preset"] == reference}
    out = []
    for preset in dict.fromkeys(r["preset"] for r in runs if r["preset"] != reference):
        diffs = {r["seed"]: r["val_nats_per_char"] - ref[r["seed"]] for r in runs
                 if r["preset"] == preset and r["seed"] in ref}
        if diffs:
            mean, std = _mean_std(list(diffs.values()))
            out.append({"preset": preset, "reference": reference, "differences": diffs, "mean": mean, "std": std,
                        "lower_on_every_seed": all(d < 0 for d in diffs.values())})
    return sorted(out, key=lambda p: p["mean"])


def paired_table(pairs: list[dict[str, Any]], reference: str | None) -> str:
    if not pairs:
        return ""
    lines = ["", f"Paired against `{reference}` (val nats/char, row minus reference, per seed; negative: the row "
                 "is better):", "", "| row | per seed | mean ± spread | lower on every seed |", "|---|---|---|---|"]
    for p in pairs:
        seeds = ", ".join(f"{s}: {d:+.4f}" for s, d in sorted(p["differences"].items()))
        lines.append(f"| {p['preset']} | {seeds} | {p['mean']:+.4f} ± {p['std']:.4f} | "
                     f"{'yes' if p['lower_on_every_seed'] else 'no'} |")
    return "\n".join(lines) + "\n"


def plot_comparison(runs: list[dict[str, Any]], rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(r["preset"] for r in rows)}
    paths = []
    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    for r in runs:
        val = [m for m in read_metrics(Path(r["folder"]) / "metrics.jsonl") if "val_nats_per_char" in m]
        ax.plot([m["tokens"] for m in val], [m["val_nats_per_char"] for m in val], color=colours[r["preset"]],
                alpha=0.8, label=r["preset"] if r["seed"] == min(x["seed"] for x in runs) else None)
    ax.set(title="Held-out validation during training (every seed)", xlabel="tokens seen",
           ylabel="val nats/char")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "val_curves.png")
    fig.savefig(paths[-1], metadata={"Software": "wavegpt"})
    plt.close(fig)

    for key, title, ylabel, name in (
        ("val_nats_per_char", "Final held-out loss (mean ± std over seeds, lower is better)", "val nats/char",
         "final_nats_per_char.png"),
        ("tokens_per_s", "Training throughput (mean ± std over seeds)", "tokens/s", "tokens_per_s.png"),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
        names = [r["preset"] for r in rows]
        ax.bar(names, [r[key] for r in rows], yerr=[r[key + "_std"] for r in rows], capsize=4,
               color=[colours[n] for n in names])
        if key == "val_nats_per_char":
            lo = min(r[key] - r[key + "_std"] for r in rows)
            hi = max(r[key] + r[key + "_std"] for r in rows)
            ax.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.1 * (hi - lo + 1e-3))
        ax.set(title=title, ylabel=ylabel)
        ax.tick_params(axis="x", rotation=30)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        paths.append(out / name)
        fig.savefig(paths[-1], metadata={"Software": "wavegpt"})
        plt.close(fig)
    return paths


def run_benchmark(args: BenchArgs, log=print) -> dict[str, Any]:
    args.validate()
    out = Path(args.out)

    check_names_free(out, ["results.json", "results.md", "val_curves.png", "final_nats_per_char.png",
                           "tokens_per_s.png"], ours=is_bench_file)  # replaces only its own results
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    controls = ["classic", "classic_rope"] if args.controls else []
    presets = list(dict.fromkeys([*controls, *args.presets]))
    jobs = [(preset, seed) for preset in presets for seed in args.seeds]

    def one(job: tuple[str, int]) -> dict[str, Any]:
        run = run_one(args, *job)
        log(f"{job[0]} seed {job[1]}: val {run['val_nats_per_char']:.4f} nats/char, "
            f"{run['tokens_per_s']:,.0f} tokens/s, {run['wall_time_s']:.0f} s")
        return run

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one, jobs))
    rows = aggregate(runs)
    reference = args.reference or ("classic_rope" if "classic_rope" in presets else None)
    pairs = paired(runs, reference) if reference in presets else []
    result = {"machine": machine, "args": args.__dict__, "summary": rows, "paired": pairs, "runs": runs}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown_table(rows, args, machine) + paired_table(pairs, reference))
    plots = plot_comparison(runs, rows, out)
    best_wave = next((r for r in rows if not r["preset"].startswith("classic")), None)
    if best_wave is not None:
        try:
            from .viz.wave_plots import plot_wave_model
        except ImportError:
            plot_wave_model = None
        if plot_wave_model is not None:
            run = min((r for r in runs if r["preset"] == best_wave["preset"]), key=lambda r: r["val_nats_per_char"])
            plot_wave_model(Path(run["folder"]) / "best", out / "wave_plots",
                            metrics_path=Path(run["folder"]) / "metrics.jsonl")
    log((out / "results.md").read_text())
    log("plots: " + ", ".join(str(p) for p in plots))
    return result
