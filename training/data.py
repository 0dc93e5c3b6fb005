"""From a training frame to tensors once, then batches that keep the accelerator busy.

A tabular model is small: a step over a batch of a few thousand rows takes about a millisecond
on a GPU, so per-batch Python (a DataLoader, a collate function, a host-to-device copy) would cost
more than the step itself. The frame is therefore encoded once into three tensors (categorical
codes, standardized numbers, labels) through Arrow, moved to the device when it fits, and every
epoch is one permutation on the device: each rank gathers its shard of it once and its batches
are slices (views) of that shard.

The encoding (vocabularies, normalisation statistics) is learned from the training split only and
returned, so validation, test and serving encode rows exactly as training did.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

UNKNOWN = 0
"""The code of a category the training split never saw (and of a missing one)."""

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Columns:
    """Which columns of a training frame the model reads, and its label."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    label: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Columns:
        return cls(tuple(data["categorical"]), tuple(data["numeric"]), data["label"])

    def to_json(self) -> dict[str, Any]:
        return {
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "label": self.label,
        }


@dataclass(frozen=True)
class Encoding:
    """What turns a row into model inputs; learned on the training split, reused by serving.

    A categorical value's code is its index in the column's vocabulary plus one; ``UNKNOWN`` (0)
    stands for any value outside it and for null. A numeric value is ``(x - mean) / scale``, a
    null or NaN becomes the mean (so 0).
    """

    vocabularies: dict[str, list[str]]
    means: dict[str, float]
    scales: dict[str, float]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Encoding:
        return cls(dict(data["vocabularies"]), dict(data["means"]), dict(data["scales"]))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def codes(self, name: str) -> dict[str, int]:
        """Column ``name``'s value-to-code map, built once per encoding."""
        cache = self.__dict__.setdefault("_codes", {})
        if name not in cache:
            vocabulary = self.vocabularies[name]
            cache[name] = {value: code for code, value in enumerate(vocabulary, UNKNOWN + 1)}
        return cache[name]

    def cardinalities(self, columns: Columns) -> list[int]:
        """Embedding rows per categorical column: the vocabulary plus ``UNKNOWN``."""
        return [len(self.vocabularies[name]) + 1 for name in columns.categorical]


@dataclass(frozen=True)
class Tensors:
    """Rows as model inputs: int64 codes ``[n, categorical]``, float32 ``[n, numeric]``, float32
    labels ``[n]``. Indexing with a slice gives views, never copies."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        return self.label.shape[0]

    def __getitem__(self, rows: slice) -> Tensors:
        return Tensors(self.categorical[rows], self.numeric[rows], self.label[rows])

    @property
    def device(self) -> torch.device:
        return self.label.device

    @property
    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (self.categorical, self.numeric, self.label)
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Tensors:
        return Tensors(
            self.categorical.to(device, non_blocking=non_blocking),
            self.numeric.to(device, non_blocking=non_blocking),
            self.label.to(device, non_blocking=non_blocking),
        )

    def take(self, rows: torch.Tensor) -> Tensors:
        """The given rows, gathered into new tensors on the same device as the data."""
        return Tensors(
            self.categorical.index_select(0, rows),
            self.numeric.index_select(0, rows),
            self.label.index_select(0, rows),
        )

    def pin_memory(self) -> Tensors:
        return Tensors(
            self.categorical.pin_memory(), self.numeric.pin_memory(), self.label.pin_memory()
        )


@dataclass(frozen=True)
class Splits:
    """The three frames of a temporal split; only ``train`` teaches the encoding."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame


def split_by(frame: pl.DataFrame, column: str = "split") -> Splits:
    """The rows of each split named in ``column`` (``train``, ``validation``, ``test``)."""
    parts = frame.partition_by(column, as_dict=True, include_key=False)
    found = {key[0]: part for key, part in parts.items()}
    missing = [name for name in SPLITS if name not in found or found[name].is_empty()]
    if missing:
        raise ValueError(f"column {column!r} has no rows for split(s) {missing}")
    unexpected = sorted(str(name) for name in found if name not in SPLITS)
    if unexpected:
        raise ValueError(f"column {column!r} has unknown split(s) {unexpected}")
    return Splits(found["train"], found["validation"], found["test"])


def fit_encoding(train: pl.DataFrame, columns: Columns) -> Encoding:
    """Vocabularies and normalisation statistics of the training split only.

    A vocabulary is the sorted distinct values (as strings), so the same rows always give the
    same codes; a constant or empty numeric column gets scale 1 so nothing divides by zero.
    """
    _require(train, (*columns.categorical, *columns.numeric))
    vocabularies = {
        name: train.get_column(name).cast(pl.String).drop_nulls().unique().sort().to_list()
        for name in columns.categorical
    }
    numbers = train.select(_number(name) for name in columns.numeric)
    means = {name: float(numbers[name].mean() or 0.0) for name in columns.numeric}
    scales = {name: float(numbers[name].std(ddof=0) or 1.0) for name in columns.numeric}
    return Encoding(vocabularies, means, scales)


def encode(frame: pl.DataFrame, columns: Columns, encoding: Encoding) -> Tensors:
    """The frame as tensors, in one pass of polars expressions and one copy out of Arrow."""
    _require(frame, (columns.label,))
    labels = frame.get_column(columns.label)
    if labels.null_count():
        raise ValueError(f"label column {columns.label!r} has {labels.null_count()} null values")
    categorical, numeric = encode_inputs(frame, columns, encoding)
    return Tensors(
        categorical, numeric, torch.from_numpy(labels.cast(pl.Float32).to_numpy().copy())
    )


def encode_inputs(
    frame: pl.DataFrame, columns: Columns, encoding: Encoding
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model inputs of each row, without a label: what scoring needs.

    Up to ``SMALL_FRAME`` rows (a serving batch) the columns are encoded one by one in numpy:
    polars' fixed cost per query is about 2.2 ms whatever the rows, sixteen times the whole
    encoding of one row. Larger frames go through polars. Both give the same tensors, bit for
    bit (a test holds them to it).
    """
    _require(frame, (*columns.categorical, *columns.numeric))
    if frame.height <= SMALL_FRAME:
        return _encoded_small(frame, columns, encoding)
    codes = [
        pl.col(name)
        .cast(pl.String)
        .replace_strict(
            encoding.vocabularies[name],
            range(UNKNOWN + 1, len(encoding.vocabularies[name]) + 1),
            default=UNKNOWN,
            return_dtype=pl.Int64,
        )
        .fill_null(UNKNOWN)
        for name in columns.categorical
    ]
    numbers = [
        (
            (_number(name).fill_null(encoding.means[name]) - encoding.means[name])
            / encoding.scales[name]
        ).cast(pl.Float32)
        for name in columns.numeric
    ]
    return _matrix(frame, codes, torch.int64), _matrix(frame, numbers, torch.float32)


SMALL_FRAME = 1024
"""Rows up to which ``encode_inputs`` encodes in numpy rather than polars (faster below it)."""


def _encoded_small(
    frame: pl.DataFrame, columns: Columns, encoding: Encoding
) -> tuple[torch.Tensor, torch.Tensor]:
    codes = np.full((frame.height, len(columns.categorical)), UNKNOWN, dtype=np.int64)
    for j, name in enumerate(columns.categorical):
        code = encoding.codes(name)
        values = frame.get_column(name).cast(pl.String).to_list()
        codes[:, j] = [code.get(value, UNKNOWN) for value in values]
    numbers = np.empty((frame.height, len(columns.numeric)), dtype=np.float64)
    for j, name in enumerate(columns.numeric):
        mean = encoding.means[name]
        values = frame.get_column(name).cast(pl.Float64).to_numpy()
        numbers[:, j] = (np.where(np.isnan(values), mean, values) - mean) / encoding.scales[name]
    return torch.from_numpy(codes), torch.from_numpy(numbers.astype(np.float32))


def resident(tensors: Tensors, device: torch.device | str) -> Tensors:
    """The tensors on ``device`` when they fit there, else in pinned host memory.

    On a GPU, the data plus one epoch's gathered shard may take at most half of the free memory;
    the rest is for the model, its optimizer state and activations. Data kept on the host is
    pinned so each batch's copy to the device overlaps compute.
    """
    device = torch.device(device)
    if tensors.device == device or device.type != "cuda":
        return tensors.to(device)
    free, _ = torch.cuda.mem_get_info(device)
    if 2 * tensors.nbytes <= free // 2:
        return tensors.to(device)
    return tensors.pin_memory()


def steps_per_epoch(rows: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per rank and epoch: the same on every rank, as DDP's collectives require."""
    if rows < world_size:
        raise ValueError(f"{rows} rows cannot be shared by {world_size} ranks")
    largest_shard = -(-rows // world_size)
    # Never more batches than the smallest shard has rows: no rank gets an empty batch.
    return min(-(-largest_shard // batch_size), rows // world_size)


def epoch_batches(
    tensors: Tensors,
    batch_size: int,
    *,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str | None = None,
) -> Iterator[Tensors]:
    """One epoch of this rank's batches.

    Shuffled, the epoch is ``torch.randperm`` on the data's device, seeded by ``(seed, epoch)``
    so every rank draws the same permutation; the rank gathers its contiguous share of it once
    and yields slices of that. Unshuffled (evaluation), the rank's share is a contiguous block of
    rows. Either way each row appears exactly once across ranks, every rank takes
    ``steps_per_epoch`` batches of near-equal size (at most ``batch_size``; a last small batch
    would be a noisy step), and batches are moved to ``device`` only when the data is not there.
    """
    rows = len(tensors)
    steps = steps_per_epoch(rows, batch_size, world_size)
    if shuffle:
        generator = torch.Generator(device=tensors.device)
        generator.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        order = torch.randperm(rows, generator=generator, device=tensors.device)
        share = tensors.take(order.tensor_split(world_size)[rank])
        if tensors.label.is_pinned():  # the gather lands in pageable memory: copies would block
            share = share.pin_memory()
    else:
        start, stop = _share(rows, world_size, rank)
        share = tensors[start:stop]
    target = share.device if device is None else torch.device(device)
    size = len(share)
    for step in range(steps):
        batch = share[step * size // steps : (step + 1) * size // steps]
        yield batch if batch.device == target else batch.to(target, non_blocking=True)


class Batches:
    """An iterable over epochs: each iteration is the next epoch of ``epoch_batches``, in groups.

    ``epoch`` tells which epoch is starting (a trainer's counter), so the shuffle depends on the
    epoch number and not on how often something iterated. Each item is a tuple of up to ``group``
    consecutive batches: a trainer that pays a fixed cost per item it is handed (Lightning's
    hooks) pays it once per group, while the model still steps once per batch. ``len`` is the
    number of items.
    """

    def __init__(
        self,
        tensors: Tensors,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        epoch: Callable[[], int] = lambda: 0,
        group: int = 1,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.epoch = epoch
        self.group = group

    def __len__(self) -> int:
        steps = steps_per_epoch(len(self.tensors), self.batch_size, self.world_size)
        return -(-steps // self.group)

    def __iter__(self) -> Iterator[tuple[Tensors, ...]]:
        batches = epoch_batches(
            self.tensors,
            self.batch_size,
            epoch=self.epoch(),
            seed=self.seed,
            shuffle=self.shuffle,
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
        )
        while chunk := tuple(itertools.islice(batches, self.group)):
            yield chunk


def _share(rows: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous block, the same split as ``Tensor.tensor_split``."""
    base, extra = divmod(rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def _number(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Float64).fill_nan(None)


def _matrix(frame: pl.DataFrame, expressions: list[pl.Expr], dtype: torch.dtype) -> torch.Tensor:
    """Row-major ``[rows, columns]`` so a gathered row is one contiguous read."""
    if not expressions:
        return torch.empty((frame.height, 0), dtype=dtype)
    array = frame.select(expressions).to_numpy(order="c")
    return torch.from_numpy(np.ascontiguousarray(array))


def _require(frame: pl.DataFrame, names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(f"training frame lacks column(s) {missing}")
