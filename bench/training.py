"""Training benchmark: the platform's training path against a plain PyTorch loop, and Delta loading.

    python bench/training.py [--rows N] [--batch-sizes 1024,4096] [--epochs E]
                             [--categorical C] [--numeric K] [--delta-rows N] [--device cpu|cuda]
                             [--threads T] [--workdir DIR] [--measurements train,delta,study]
                             [--study-rows N] [--study-trials T] [--study-epochs E]

On one device (cuda when there is one, else cpu) it times, per batch size:

- ``ours``: ``training.trainer.fit`` on a seeded synthetic fraud frame, i.e. ``training.data``
  (encoding, resident tensors, per-epoch device permutation) + ``training.module`` + Lightning,
  with its validation and test; its samples/s counts the training batches only, as it reports;
- ``anchor``: a plain PyTorch loop over the same model (``FraudNet``, AdamW, BCE with
  ``pos_weight``) and the same encoded rows resident on the device: per epoch one
  ``torch.randperm`` gather, then slices, no framework.

Each side's number is its best epoch after the first (warm-up); ``ratio`` is ours / anchor and the
goal is at least 0.9. The anchor runs before and after ours and keeps its better run.

Then ``delta_to_tensors``: a Delta table written with the ``Lakehouse`` is read back as the
Pipes entry point reads it (``Lakehouse.scan(...).select(...).collect()``), split, encoded and
placed on the device, in rows per second (``--delta-rows 0`` skips it, e.g. on a machine
without ``deltalake``). Then ``study_pruning``: the wall time of a ``training.study`` study
(TPE, median pruning after one warm-up epoch) against the same study, same data and seed, with
``optuna.pruners.NopPruner``; the goal is a ratio of at most 0.5. One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import polars as pl
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import Columns, Splits, Tensors, encode, fit_encoding, resident, split_by
from training.entry import ParquetSource
from training.models import Choice, FloatRange, IntRange, Study
from training.module import FraudNet, Hyperparameters
from training.study import StudyRequest, run_study
from training.trainer import TrainerSettings, fit

GOAL = 0.9
STUDY_GOAL = 0.5
MEASUREMENTS = ("train", "delta", "study")
TABLE = "training/bench_dataset"


def synthetic(rows: int, categorical: int, numeric: int, seed: int = 0) -> pl.DataFrame:
    """A fraud-like frame: string categories of 1000 values, skewed numbers, ~3% positives; the
    last 4% of rows are validation and test (2% each), so timing is mostly training."""
    rng = np.random.default_rng(seed)
    codes = rng.zipf(1.3, (rows, categorical)) % 1000
    numbers = rng.lognormal(0.0, 1.0, (rows, numeric)).astype(np.float32)
    logit = 1.5 * np.log(numbers[:, 0]) + 2.0 * (codes[:, 0] == 1) - 4.0
    label = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    position = np.arange(rows)
    split = np.select(
        [position < 0.96 * rows, position < 0.98 * rows], ["train", "validation"], "test"
    )
    return pl.DataFrame(
        {f"c{i}": pl.Series(codes[:, i]).cast(pl.String) for i in range(categorical)}
        | {f"n{i}": numbers[:, i] for i in range(numeric)}
        | {"is_fraud": label, "split": split}
    )


def plain_loop(
    train: Tensors,
    cardinalities: list[int],
    hyperparameters: Hyperparameters,
    pos_weight: float,
    device: torch.device,
) -> list[float]:
    """Seconds per epoch of the simplest fast loop: everything resident, slices of a gather."""
    torch.use_deterministic_algorithms(False)  # fit() turns it on for CPU runs
    torch.manual_seed(hyperparameters.seed)
    network = FraudNet(
        cardinalities,
        train.numeric.shape[1],
        hyperparameters.embedding_dim,
        hyperparameters.hidden,
        hyperparameters.dropout,
    ).to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(),
        lr=hyperparameters.learning_rate,
        weight_decay=hyperparameters.weight_decay,
        fused=device.type == "cuda",
    )
    data = train.to(device)
    weight = torch.tensor(pos_weight, device=device)
    rows, size = len(data), hyperparameters.batch_size
    seconds = []
    for _ in range(hyperparameters.epochs):
        _synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(rows, device=device)
        categorical, numeric, label = (
            data.categorical[order],
            data.numeric[order],
            data.label[order],
        )
        for first in range(0, rows, size):
            window = slice(first, first + size)
            optimizer.zero_grad(set_to_none=True)
            logits = network(categorical[window], numeric[window])
            loss = F.binary_cross_entropy_with_logits(logits, label[window], pos_weight=weight)
            loss.backward()
            optimizer.step()
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_training(
    splits: Splits, columns: Columns, batch_size: int, epochs: int, device: torch.device, work: Path
) -> dict:
    hyperparameters = Hyperparameters(batch_size=batch_size, epochs=epochs)
    encoding = fit_encoding(splits.train, columns)
    train = encode(splits.train, columns, encoding)
    positives = float(train.label.sum())
    pos_weight = (len(train) - positives) / positives
    cardinalities = encoding.cardinalities(columns)

    before = plain_loop(train, cardinalities, hyperparameters, pos_weight, device)
    result = fit(
        splits,
        columns,
        hyperparameters,
        TrainerSettings(accelerator=device.type, devices=1),
        work / f"model_{batch_size}",
    )
    after = plain_loop(train, cardinalities, hyperparameters, pos_weight, device)

    ours = max(e.train_samples / e.train_seconds for e in result.history[1:])
    anchor = len(train) / min(min(before[1:]), min(after[1:]))
    return {
        "stage": "train",
        "batch_size": batch_size,
        "train_rows": len(train),
        "samples_per_s": round(ours),
        "anchor": "plain-pytorch-loop",
        "anchor_samples_per_s": round(anchor),
        "ratio": round(ours / anchor, 3),
        "goal": GOAL,
        # What the framework adds to each optimizer step, in microseconds.
        "overhead_us_per_step": round((1 / ours - 1 / anchor) * batch_size * 1e6, 1),
        "test_auroc": round(result.test_auroc, 4),
        "epoch_seconds": [round(e.train_seconds, 4) for e in result.history],
        "anchor_epoch_seconds": [round(t, 4) for t in before + after],
    }


def bench_delta(
    rows: int, columns: Columns, device: torch.device, work: Path, args: argparse.Namespace
) -> dict:
    from resources.lakehouse import Lakehouse  # needs deltalake and dagster: only when asked

    frame = synthetic(rows, args.categorical, args.numeric, seed=1)
    lake = Lakehouse(root_uri=str(work / "lake"))
    lake.write_table(TABLE, frame)
    wanted = [*columns.categorical, *columns.numeric, columns.label, "split"]

    start = time.perf_counter()
    read = lake.scan(TABLE).select(wanted).collect()
    read_done = time.perf_counter()
    splits = split_by(read)
    encoding = fit_encoding(splits.train, columns)
    tensors = [
        encode(part, columns, encoding) for part in (splits.train, splits.validation, splits.test)
    ]
    encode_done = time.perf_counter()
    placed = [resident(part, device) for part in tensors]
    _synchronize(device)
    end = time.perf_counter()
    assert sum(len(part) for part in placed) == rows
    return {
        "stage": "delta_to_tensors",
        "rows": rows,
        "rows_per_s": round(rows / (end - start)),
        "read_seconds": round(read_done - start, 3),
        "encode_seconds": round(encode_done - read_done, 3),
        "to_device_seconds": round(end - encode_done, 3),
    }


def bench_study(
    frame: pl.DataFrame,
    columns: Columns,
    device: torch.device,
    work: Path,
    args: argparse.Namespace,
) -> dict:
    """The same study twice, on a fresh storage each: median pruning, then no pruning."""
    data = work / "study_set.parquet"
    frame.write_parquet(data)
    splits = split_by(frame)
    plan = Study(trials=args.study_trials, epochs=args.study_epochs, warmup_epochs=1, seed=0)
    space = {
        "learning_rate": FloatRange(3e-4, 1e-2, log=True),
        "weight_decay": FloatRange(1e-6, 1e-2, log=True),
        "dropout": FloatRange(0.0, 0.4),
        "embedding_dim": IntRange(4, 16, step=4),
        "hidden": Choice(((64,), (128, 64), (256, 128))),
    }
    settings = TrainerSettings(accelerator=device.type, devices=1)
    # Warm-up (first Trainer, first kernels): neither study should pay for it.
    fit(splits, columns, Hyperparameters(batch_size=1024, epochs=1), settings, None)
    seconds, results = {}, {}
    for name, pruner in (("with_pruning", None), ("without_pruning", optuna.pruners.NopPruner())):
        request = StudyRequest(
            source=ParquetSource(str(data)),
            columns=columns,
            base=Hyperparameters(batch_size=1024, epochs=args.study_epochs),
            space=space,
            metric="validation_average_precision",
            study=plan,
            storage=f"sqlite:///{work / f'{name}.db'}",
            study_name=name,
            settings=settings,
        )
        start = time.perf_counter()
        results[name] = run_study(request, splits, pruner=pruner)
        seconds[name] = time.perf_counter() - start
    pruned, unpruned = results["with_pruning"], results["without_pruning"]
    return {
        "bench": "study_pruning",
        "anchor": "same study without pruning",
        "trials": plan.trials,
        "epochs_per_trial": plan.epochs,
        "train_rows": splits.train.height,
        "with_pruning_s": round(seconds["with_pruning"], 2),
        "without_pruning_s": round(seconds["without_pruning"], 2),
        "ratio": round(seconds["with_pruning"] / seconds["without_pruning"], 3),
        "goal": f"<= {STUDY_GOAL}",
        "pruned": pruned.pruned,
        "epochs_trained": sum(t["epochs"] for t in pruned.history),
        "anchor_epochs_trained": sum(t["epochs"] for t in unpruned.history),
        "best_value": round(pruned.best_value, 4),
        "anchor_best_value": round(unpruned.best_value, 4),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the training frame")
    parser.add_argument("--batch-sizes", default="1024,4096")
    parser.add_argument("--epochs", type=int, default=3, help="the first is a warm-up")
    parser.add_argument("--categorical", type=int, default=8, help="categorical columns")
    parser.add_argument("--numeric", type=int, default=16, help="numeric columns")
    parser.add_argument("--delta-rows", type=int, default=1_000_000, help="0 skips the Delta load")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--measurements", default=",".join(MEASUREMENTS), help="which to run")
    parser.add_argument("--study-rows", type=int, default=50_000, help="rows of the study frame")
    parser.add_argument("--study-trials", type=int, default=20)
    parser.add_argument("--study-epochs", type=int, default=8, help="epochs of each trial")
    args = parser.parse_args(argv)
    measurements = set(args.measurements.split(","))
    if measurements - set(MEASUREMENTS):
        parser.error(f"--measurements: choose among {','.join(MEASUREMENTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first one is a warm-up")

    device = torch.device(args.device)
    columns = Columns(
        tuple(f"c{i}" for i in range(args.categorical)),
        tuple(f"n{i}" for i in range(args.numeric)),
        "is_fraud",
    )
    work = args.workdir or Path(tempfile.mkdtemp(prefix="training-bench-"))
    common = {
        "bench": "training",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    try:
        if "train" in measurements:
            splits = split_by(synthetic(args.rows, args.categorical, args.numeric))
            for batch_size in (int(size) for size in args.batch_sizes.split(",")):
                emit(
                    common | bench_training(splits, columns, batch_size, args.epochs, device, work)
                )
        if "delta" in measurements and args.delta_rows:
            emit(common | bench_delta(args.delta_rows, columns, device, work, args))
        if "study" in measurements:
            frame = synthetic(args.study_rows, args.categorical, args.numeric, seed=2)
            emit(common | bench_study(frame, columns, device, work, args))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
