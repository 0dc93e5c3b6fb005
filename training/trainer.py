"""One training run: encode the splits, fit with Lightning, test, save what serving needs.

``fit`` is a plain function: the same call trains on a laptop's CPU, on one GPU or with DDP on
several (``TrainerSettings``); under DDP every rank calls it and gets the same result, and only
rank 0 writes. The saved model is tensors and JSON only (``weights.pt`` is a ``state_dict``
loaded with ``torch.load(weights_only=True)``, ``model.json`` the columns, encoding and
hyperparameters), so loading it never runs pickled code.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import polars as pl
import torch

from training.data import (
    SPLITS,
    Batches,
    Columns,
    Encoding,
    Splits,
    Tensors,
    encode,
    encode_inputs,
    fit_encoding,
    resident,
)
from training.module import EpochMetrics, FraudNet, FraudScorer, Hyperparameters

WEIGHTS = "weights.pt"
MODEL = "model.json"
METRICS = "metrics.json"
BATCHES_PER_STEP = 32
"""Batches handed to Lightning at once: its per-step hooks cost about as much as a GPU step of a
small tabular model, so it sees one step per group while the model steps once per batch."""
CHILD_EXIT_SECONDS = 60
"""How long rank 0 waits for the ranks it launched to exit before it stops them."""


@dataclass(frozen=True)
class TrainerSettings:
    """Where and how Lightning trains: the arguments of ``lightning.Trainer`` of the same names."""

    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerSettings:
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitResult:
    history: tuple[EpochMetrics, ...]
    test_auroc: float
    test_average_precision: float
    samples_per_second: float
    """Training rows per second over all ranks, batches only (no validation, no test)."""
    output_dir: Path | None
    """Where the model was saved; None when the run was not to be saved (a study's trial)."""
    global_rank: int
    """This process's rank: only rank 0 has written ``output_dir`` and should report."""

    def metrics(self) -> dict[str, Any]:
        """Every number of the run as plain JSON values."""
        return {
            "test_auroc": self.test_auroc,
            "test_average_precision": self.test_average_precision,
            "samples_per_second": self.samples_per_second,
            "epochs": [asdict(epoch) for epoch in self.history],
        }


@dataclass(frozen=True)
class TrainedModel:
    """A saved model, loaded: what serving and evaluation need to score rows."""

    network: FraudNet
    columns: Columns
    encoding: Encoding
    hyperparameters: Hyperparameters

    @torch.inference_mode()
    def score(self, frame: pl.DataFrame) -> torch.Tensor:
        """Fraud probability of each row of ``frame``, encoded as in training; no label needed."""
        self.network.eval()
        return torch.sigmoid(self.network(*encode_inputs(frame, self.columns, self.encoding)))


def fit(
    splits: Splits,
    columns: Columns,
    hyperparameters: Hyperparameters,
    settings: TrainerSettings,
    output_dir: str | Path | None,
    *,
    callbacks: Sequence[L.Callback] = (),
) -> FitResult:
    """Train on ``splits.train``, validate every epoch, test once, save to ``output_dir``.

    ``output_dir`` None saves nothing (a study's trial only needs the scores); ``callbacks`` are
    Lightning's (a study's pruning callback may stop the run by raising out of ``fit``).

    Seeded by ``hyperparameters.seed``; on CPU the run is also deterministic (same seed, same
    weights). Lightning keeps to the per-step minimum: no progress bar, model summary, logger,
    sanity check or checkpointing. A strategy that launches processes (``ddp``) starts each
    other rank by re-running the current command, so call it from a script such as
    ``training.entry``, never inside Dagster or pytest; in the rank that launched the others,
    ``fit`` returns once they have exited, so nothing outlives the run.
    """
    L.seed_everything(hyperparameters.seed, workers=False, verbose=False)
    encoding = fit_encoding(splits.train, columns)
    data = {name: encode(getattr(splits, name), columns, encoding) for name in SPLITS}
    module = FraudScorer(
        encoding.cardinalities(columns),
        len(columns.numeric),
        hyperparameters,
        pos_weight=_pos_weight(data["train"], hyperparameters),
    )
    trainer = L.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        strategy=settings.strategy,
        precision=settings.precision,
        num_nodes=settings.num_nodes,
        max_epochs=hyperparameters.epochs,
        deterministic=settings.accelerator == "cpu" or not torch.cuda.is_available(),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )
    datamodule = _DeviceData(data, hyperparameters.batch_size, hyperparameters.seed)
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    output = None if output_dir is None else Path(output_dir)
    history = tuple(module.history)
    result = FitResult(
        history=history,
        test_auroc=module.test_metrics["test_auroc"],
        test_average_precision=module.test_metrics["test_average_precision"],
        samples_per_second=sum(e.train_samples for e in history)
        / max(sum(e.train_seconds for e in history), 1e-9),
        output_dir=output,
        global_rank=trainer.global_rank,
    )
    if trainer.is_global_zero and output is not None:
        save(output, module.network, columns, encoding, hyperparameters)
        (output / METRICS).write_text(json.dumps(result.metrics(), indent=2))
    _finish_ranks(trainer)
    return result


def save(
    directory: Path,
    network: FraudNet,
    columns: Columns,
    encoding: Encoding,
    hyperparameters: Hyperparameters,
) -> None:
    """Weights as a ``state_dict`` of CPU tensors, everything else as JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in network.state_dict().items()}
    torch.save(state, directory / WEIGHTS)
    model = {
        "columns": columns.to_json(),
        "encoding": encoding.to_json(),
        "hyperparameters": hyperparameters.to_json(),
    }
    (directory / MODEL).write_text(json.dumps(model, indent=2))


def load(directory: str | Path) -> TrainedModel:
    """The model ``save`` wrote, on CPU, in evaluation mode."""
    directory = Path(directory)
    model = json.loads((directory / MODEL).read_text())
    columns = Columns.from_json(model["columns"])
    encoding = Encoding.from_json(model["encoding"])
    hyperparameters = Hyperparameters.from_json(model["hyperparameters"])
    network = FraudNet(
        encoding.cardinalities(columns),
        len(columns.numeric),
        hyperparameters.embedding_dim,
        hyperparameters.hidden,
        hyperparameters.dropout,
    )
    network.load_state_dict(torch.load(directory / WEIGHTS, weights_only=True, map_location="cpu"))
    network.eval()
    return TrainedModel(network, columns, encoding, hyperparameters)


class _DeviceData(L.LightningDataModule):
    """The encoded splits, placed on each rank's device once and served as ``Batches``.

    Lightning decides the device, rank and world size only when the run starts (in each rank),
    so placement happens in ``setup`` and sharding when the batches are asked for.
    """

    def __init__(self, data: dict[str, Tensors], batch_size: int, seed: int) -> None:
        super().__init__()
        self._data = data
        self._batch_size = batch_size
        self._seed = seed

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device
        self._data = {name: resident(tensors, device) for name, tensors in self._data.items()}

    def _batches(self, split: str, shuffle: bool) -> Batches:
        return Batches(
            self._data[split],
            self._batch_size,
            shuffle=shuffle,
            seed=self._seed,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
            device=self.trainer.strategy.root_device,
            epoch=lambda: self.trainer.current_epoch,
            group=BATCHES_PER_STEP,
        )

    def transfer_batch_to_device(
        self, batch: tuple[Tensors, ...], device: torch.device, dataloader_idx: int
    ) -> tuple[Tensors, ...]:
        """Batches come out of ``Batches`` on the device already: no per-step traversal."""
        return tuple(b if b.device == device else b.to(device, non_blocking=True) for b in batch)

    def train_dataloader(self) -> Batches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> Batches:
        return self._batches("validation", shuffle=False)

    def test_dataloader(self) -> Batches:
        return self._batches("test", shuffle=False)


def _pos_weight(train: Tensors, hyperparameters: Hyperparameters) -> float:
    if hyperparameters.pos_weight is not None:
        return hyperparameters.pos_weight
    positives = float(train.label.sum())
    if positives == 0:
        raise ValueError("the training split has no positive rows")
    return (len(train) - positives) / positives


def _finish_ranks(trainer: L.Trainer) -> None:
    """Leave the process group, and in the launching rank wait for the ranks it started."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    children = getattr(trainer.strategy.launcher, "procs", [])
    deadline = time.monotonic() + CHILD_EXIT_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
