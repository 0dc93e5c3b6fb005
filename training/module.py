"""The fraud scorer: embeddings of the categorical columns and the numeric inputs into an MLP.

``FraudNet`` is the plain ``torch`` network that serving loads; ``FraudScorer`` is the
LightningModule that trains it. Its per-step work is kept to the minimum Lightning needs (manual
optimization straight on the torch optimizer, no per-step logging), because on a GPU a
tabular step is short enough that framework overhead would be a large share of it. Everything a
person reads is computed once per epoch: the training loss, and the validation AUROC and average
precision, synced across ranks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from training.data import Tensors


@dataclass(frozen=True)
class Hyperparameters:
    """Everything a study may vary, and the seed that makes a run reproducible."""

    embedding_dim: int = 8
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 4096
    epochs: int = 5
    seed: int = 0
    pos_weight: float | None = None
    """Weight of a positive (fraud) row in the loss; None: negatives per positive in training."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hyperparameters:
        values = dict(data)
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}


class FraudNet(nn.Module):
    """Logits of fraud for rows of categorical codes and standardized numbers.

    Each categorical column has its own embedding table; the tables are stored as consecutive
    row ranges of one matrix (a column's codes are offset to its range) so that the lookup is one
    kernel whatever the number of columns.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        numeric_features: int,
        embedding_dim: int,
        hidden: Sequence[int],
        dropout: float,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max(sum(cardinalities), 1), embedding_dim)
        starts = torch.tensor([0, *cardinalities[:-1]], dtype=torch.int64).cumsum(0)
        self.register_buffer("offsets", starts[: len(cardinalities)])
        layers: list[nn.Module] = []
        width = len(cardinalities) * embedding_dim + numeric_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(categorical + self.offsets).flatten(1)
        return self.mlp(torch.cat((embedded, numeric), dim=1)).squeeze(1)


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch as a person reads it; the seconds cover the training batches only."""

    epoch: int
    train_loss: float
    """The mean of the epoch's batch losses (its batches differ in size by one row at most)."""
    train_samples: int
    train_seconds: float
    validation_loss: float
    validation_auroc: float
    validation_average_precision: float


class FraudScorer(L.LightningModule):
    """Trains ``FraudNet`` with BCE-with-logits weighted for the rare positive class."""

    def __init__(
        self,
        cardinalities: Sequence[int],
        numeric_features: int,
        hyperparameters: Hyperparameters,
        pos_weight: float,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.hyperparameters = hyperparameters
        self.network = FraudNet(
            cardinalities,
            numeric_features,
            hyperparameters.embedding_dim,
            hyperparameters.hidden,
            hyperparameters.dropout,
        )
        self.register_buffer("pos_weight", torch.tensor(pos_weight), persistent=False)
        self._batch_losses: list[torch.Tensor] = []
        self._samples = 0
        self._clock = 0.0
        self._train_seconds = 0.0
        # Scores are sigmoids and labels 0/1 by construction: checking them would sync per batch.
        self.validation_auroc = BinaryAUROC(validate_args=False)
        self.validation_ap = BinaryAveragePrecision(validate_args=False)
        self.test_auroc = BinaryAUROC(validate_args=False)
        self.test_ap = BinaryAveragePrecision(validate_args=False)
        self.history: list[EpochMetrics] = []
        self.test_metrics: dict[str, float] = {}

    def forward(self, batch: Tensors) -> torch.Tensor:
        return self.network(batch.categorical, batch.numeric)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # fused: one kernel per step for every parameter, on a GPU.
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hyperparameters.learning_rate,
            weight_decay=self.hyperparameters.weight_decay,
            fused=self.device.type == "cuda",
        )

    def _loss(self, batch: Tensors) -> torch.Tensor:
        # Straight to the network rather than through ``self(batch)``: one module call fewer.
        return F.binary_cross_entropy_with_logits(
            self.network(batch.categorical, batch.numeric), batch.label, pos_weight=self.pos_weight
        )

    def on_train_epoch_start(self) -> None:
        self._batch_losses = []
        self._samples = 0
        self._clock = time.perf_counter()

    def training_step(self, batches: tuple[Tensors, ...], batch_idx: int) -> None:
        """One optimizer step per batch of the group, and nothing that waits for the device.

        The step talks to the torch optimizer directly instead of through ``manual_backward``
        and ``LightningOptimizer.step``: their hooks cost as much as a small model's step. What
        they would do that this model needs is kept: the strategy's backward preparation (DDP
        under manual optimization), the gradient scaler of 16-bit mixed precision, and the
        step count behind ``trainer.global_step``. Their callback hooks (``on_before_backward``,
        ``on_after_backward``, ``on_before_optimizer_step``) and gradient clipping do not run.
        """
        optimizer = self.optimizers().optimizer
        strategy = self.trainer.strategy
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        steps = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = self._loss(batch)
            strategy.pre_backward(loss)
            (loss if scaler is None else scaler.scale(loss)).backward()
            strategy.post_backward(loss)
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            steps.increment_ready()
            steps.increment_completed()
            self._batch_losses.append(loss.detach())  # summed once, at the epoch's end
        self._samples += sum(len(batch) for batch in batches)
        if batch_idx + 1 == self.trainer.num_training_batches:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._train_seconds = time.perf_counter() - self._clock

    def on_validation_epoch_start(self) -> None:
        self._validation_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self._validation_samples = 0

    def validation_step(self, batches: tuple[Tensors, ...], batch_idx: int) -> None:
        for batch in batches:
            logits = self(batch)
            self._validation_loss += F.binary_cross_entropy_with_logits(
                logits, batch.label, pos_weight=self.pos_weight, reduction="sum"
            )
            self._validation_samples += len(batch)
            scores = torch.sigmoid(logits.float())
            self.validation_auroc.update(scores, batch.label.long())
            self.validation_ap.update(scores, batch.label.long())

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.validation_auroc.reset()
            self.validation_ap.reset()
            return
        train_loss, batches, samples, validation_loss, validation_samples = self._totals(
            torch.stack(self._batch_losses).double().sum(),
            len(self._batch_losses),
            self._samples,
            self._validation_loss,
            self._validation_samples,
        )
        metrics = EpochMetrics(
            epoch=self.current_epoch,
            train_loss=train_loss / batches,
            train_samples=int(samples),
            train_seconds=self._train_seconds,
            validation_loss=validation_loss / validation_samples,
            validation_auroc=float(self.validation_auroc.compute()),
            validation_average_precision=float(self.validation_ap.compute()),
        )
        self.validation_auroc.reset()
        self.validation_ap.reset()
        self.history.append(metrics)
        # Once per epoch, for callbacks (early stopping) and any logger the caller adds.
        self.log_dict(
            {
                "train_loss": metrics.train_loss,
                "validation_loss": metrics.validation_loss,
                "validation_auroc": metrics.validation_auroc,
                "validation_average_precision": metrics.validation_average_precision,
            },
            on_epoch=True,
            sync_dist=True,  # the values agree already; this only tells Lightning they do
        )

    def test_step(self, batches: tuple[Tensors, ...], batch_idx: int) -> None:
        for batch in batches:
            scores = torch.sigmoid(self(batch).float())
            self.test_auroc.update(scores, batch.label.long())
            self.test_ap.update(scores, batch.label.long())

    def on_test_epoch_end(self) -> None:
        self.test_metrics = {
            "test_auroc": float(self.test_auroc.compute()),
            "test_average_precision": float(self.test_ap.compute()),
        }
        self.test_auroc.reset()
        self.test_ap.reset()

    def _totals(self, *values: torch.Tensor | float) -> list[float]:
        """Each value summed over every rank, in one collective."""
        stacked = torch.stack(
            [torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in values]
        )
        return self.trainer.strategy.reduce(stacked, reduce_op="sum").tolist()
