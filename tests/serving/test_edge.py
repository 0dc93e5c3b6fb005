"""Edge export: ONNX fp32 and int8 score as the trained network does, and load by runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
import torch
from torch.nn import functional as F

from serving.edge import (
    FILES,
    INT8_FILE,
    INT8_MAX_AUROC_CHANGE,
    ONNX_FILE,
    RUNTIMES,
    OnnxScorer,
    Parity,
    TorchScorer,
    check_parity,
    export_edge,
    export_onnx,
    load_scorer,
    quantize_int8,
)
from training.data import Columns, encode, fit_encoding
from training.module import FraudNet, Hyperparameters
from training.trainer import MODEL, WEIGHTS, load, save

COLUMNS = Columns(
    categorical=("merchant_category", "channel", "country"),
    numeric=("amount", "velocity", "account_age_days"),
    label="is_fraud",
)
HYPERPARAMETERS = Hyperparameters(embedding_dim=4, hidden=(64, 32), dropout=0.0, seed=0)
INT8_DRIFT = 0.3
"""Bound on |int8 - torch| for this model: measured 0.18 at worst (see ``quantize_int8``)."""


def synthetic_frame(rows: int, seed: int) -> pl.DataFrame:
    """Fraud is likely for a risky category, a large (heavy-tailed) amount or a high velocity."""
    rng = np.random.default_rng(seed)
    category = rng.choice(["grocery", "travel", "gaming", "fuel", "crypto"], rows)
    channel = rng.choice(["web", "pos", "app"], rows)
    country = rng.choice(["DE", "FR", "US", "BR", "NG", "JP"], rows)
    amount = rng.lognormal(3.0, 1.0, rows)
    velocity = rng.normal(0.0, 1.0, rows)
    age = rng.exponential(400.0, rows)
    logit = (
        2.5 * (category == "crypto")
        + 1.0 * (channel == "web")
        + 1.5 * (np.log(amount) - 3.0)
        + 1.5 * velocity
        - 0.002 * age
        - 2.5
    )
    fraud = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return pl.DataFrame(
        {
            "merchant_category": category,
            "channel": channel,
            "country": country,
            "amount": amount,
            "velocity": velocity,
            "account_age_days": age,
            "is_fraud": fraud,
        }
    )


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return synthetic_frame(4000, seed=11)


@pytest.fixture(scope="module")
def labels(frame: pl.DataFrame) -> np.ndarray:
    return frame.get_column("is_fraud").to_numpy()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, frame: pl.DataFrame) -> Path:
    """A FraudNet trained full-batch for 300 steps, saved as training saves it."""
    torch.manual_seed(HYPERPARAMETERS.seed)
    encoding = fit_encoding(frame, COLUMNS)
    data = encode(frame, COLUMNS, encoding)
    network = FraudNet(
        encoding.cardinalities(COLUMNS),
        len(COLUMNS.numeric),
        HYPERPARAMETERS.embedding_dim,
        HYPERPARAMETERS.hidden,
        HYPERPARAMETERS.dropout,
    )
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(
            network(data.categorical, data.numeric), data.label
        )
        loss.backward()
        optimizer.step()
    directory = tmp_path_factory.mktemp("model")
    save(directory, network.eval(), COLUMNS, encoding, HYPERPARAMETERS)
    return directory


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    frame: pl.DataFrame,
    labels: np.ndarray,
) -> tuple[Path, dict[str, Parity]]:
    directory = tmp_path_factory.mktemp("edge")
    return directory, export_edge(directory, model_dir, frame, labels)


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> TorchScorer:
    return TorchScorer(load(model_dir))


def test_the_model_learned_something(exported: tuple[Path, dict[str, Parity]]) -> None:
    _, parity = exported
    assert parity["torch"].auroc_torch > 0.85


def test_torch_scorer_matches_trained_model(
    reference: TorchScorer, model_dir: Path, frame: pl.DataFrame
) -> None:
    expected = load(model_dir).score(frame).numpy()
    scores = reference.score(frame)
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, expected)


def test_onnx_fp32_matches_torch_on_every_row(
    exported: tuple[Path, dict[str, Parity]], reference: TorchScorer, frame: pl.DataFrame
) -> None:
    directory, parity = exported
    scorer = OnnxScorer(directory / ONNX_FILE, reference.columns, reference.encoding)
    scores = scorer.score(frame)
    assert scores.dtype == np.float32
    assert scores.shape == (frame.height,)
    np.testing.assert_allclose(scores, reference.score(frame), rtol=0, atol=1e-5)
    assert parity["onnx"].max_abs_diff <= 1e-5
    assert abs(parity["onnx"].auroc_change) <= 1e-4  # float32 near-ties may order differently


@pytest.mark.parametrize("rows", [1, 2, 1000])
def test_onnx_takes_any_batch_size(
    exported: tuple[Path, dict[str, Parity]],
    reference: TorchScorer,
    frame: pl.DataFrame,
    rows: int,
) -> None:
    directory, _ = exported
    batch = frame.slice(7, rows)
    for name in (ONNX_FILE, INT8_FILE):
        scores = OnnxScorer(directory / name, reference.columns, reference.encoding).score(batch)
        assert scores.shape == (rows,)
    fp32 = OnnxScorer(directory / ONNX_FILE, reference.columns, reference.encoding)
    np.testing.assert_allclose(fp32.score(batch), reference.score(batch), rtol=0, atol=1e-5)


def test_exported_graph_has_named_inputs_and_a_free_batch(
    exported: tuple[Path, dict[str, Parity]],
) -> None:
    directory, _ = exported
    graph = onnx.load(str(directory / ONNX_FILE)).graph
    shapes = {
        value.name: (
            value.type.tensor_type.elem_type,
            [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim],
        )
        for value in (*graph.input, *graph.output)
    }
    assert set(shapes) == {"categorical", "numeric", "probability"}
    assert shapes["categorical"][0] == onnx.TensorProto.INT64
    assert shapes["numeric"][0] == onnx.TensorProto.FLOAT
    assert shapes["categorical"][1][1:] == [len(COLUMNS.categorical)]
    assert shapes["numeric"][1][1:] == [len(COLUMNS.numeric)]
    batch_dims = {shape[1][0] for shape in shapes.values()}
    assert len(batch_dims) == 1
    assert isinstance(batch_dims.pop(), str)  # symbolic, not fixed to the example's 2 rows
    assert "Sigmoid" in {node.op_type for node in graph.node}
    assert not list(directory.glob("*.data"))  # weights inside the file


def test_int8_is_smaller_and_ranks_alike(exported: tuple[Path, dict[str, Parity]]) -> None:
    directory, parity = exported
    int8, fp32 = parity["onnx-int8"], parity["onnx"]
    assert int8.size_bytes < fp32.size_bytes
    assert int8.size_bytes == (directory / INT8_FILE).stat().st_size
    assert fp32.size_bytes == (directory / ONNX_FILE).stat().st_size
    assert abs(int8.auroc_change) <= INT8_MAX_AUROC_CHANGE
    assert 0 < int8.max_abs_diff <= INT8_DRIFT


def test_first_layer_in_fp32_drifts_less_than_all_int8(
    exported: tuple[Path, dict[str, Parity]],
    reference: TorchScorer,
    frame: pl.DataFrame,
    labels: np.ndarray,
    tmp_path: Path,
) -> None:
    directory, parity = exported
    every = quantize_int8(directory / ONNX_FILE, tmp_path / INT8_FILE, keep_first_layer_fp32=False)
    scorer = OnnxScorer(every, reference.columns, reference.encoding)
    all_int8 = check_parity(reference, scorer, frame, labels, "onnx-int8", 0, repeats=1)
    assert parity["onnx-int8"].max_abs_diff < all_int8.max_abs_diff
    assert abs(parity["onnx-int8"].auroc_change) < abs(all_int8.auroc_change)
    assert every.stat().st_size < parity["onnx-int8"].size_bytes


def test_int8_keeps_the_first_layer_in_fp32(exported: tuple[Path, dict[str, Parity]]) -> None:
    directory, _ = exported
    ops = [node.op_type for node in onnx.load(str(directory / INT8_FILE)).graph.node]
    assert ops.count("MatMul") == 1
    assert ops.count("MatMulInteger") == len(HYPERPARAMETERS.hidden)
    assert "Gemm" not in ops
    assert ops.index("MatMul") < ops.index("MatMulInteger")


def test_quantize_int8_stands_alone(
    exported: tuple[Path, dict[str, Parity]], tmp_path: Path
) -> None:
    directory, _ = exported
    target = quantize_int8(directory / ONNX_FILE, tmp_path / "nested" / INT8_FILE)
    assert target.read_bytes() == (directory / INT8_FILE).read_bytes()


def test_unknown_categories_and_null_numbers_score_as_in_torch(
    exported: tuple[Path, dict[str, Parity]], reference: TorchScorer
) -> None:
    directory, _ = exported
    odd = pl.DataFrame(
        {
            "merchant_category": ["never-seen", None, "crypto", None],
            "channel": ["web", "carrier-pigeon", None, None],
            "country": [None, "XX", "DE", None],
            "amount": [None, 12.5, float("nan"), None],
            "velocity": [0.3, None, None, None],
            "account_age_days": [None, None, 10.0, None],
        },
        schema_overrides={"amount": pl.Float64, "velocity": pl.Float64},
    )
    expected = reference.score(odd)
    assert np.isfinite(expected).all()
    fp32 = OnnxScorer(directory / ONNX_FILE, reference.columns, reference.encoding)
    np.testing.assert_allclose(fp32.score(odd), expected, rtol=0, atol=1e-5)
    int8 = OnnxScorer(directory / INT8_FILE, reference.columns, reference.encoding)
    np.testing.assert_allclose(int8.score(odd), expected, rtol=0, atol=INT8_DRIFT)


def test_empty_frame_scores_nothing(
    exported: tuple[Path, dict[str, Parity]], reference: TorchScorer, frame: pl.DataFrame
) -> None:
    directory, _ = exported
    empty = frame.clear()
    for runtime in RUNTIMES:
        scores = load_scorer(directory, runtime).score(empty)
        assert scores.shape == (0,)
        assert scores.dtype == np.float32


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_load_scorer_scores_as_the_direct_scorer(
    exported: tuple[Path, dict[str, Parity]],
    reference: TorchScorer,
    frame: pl.DataFrame,
    runtime: str,
) -> None:
    directory, _ = exported
    direct = {
        "torch": reference,
        "onnx": OnnxScorer(directory / ONNX_FILE, reference.columns, reference.encoding),
        "onnx-int8": OnnxScorer(directory / INT8_FILE, reference.columns, reference.encoding),
    }[runtime]
    np.testing.assert_array_equal(load_scorer(directory, runtime).score(frame), direct.score(frame))


def test_export_edge_makes_the_directory_self_contained(
    exported: tuple[Path, dict[str, Parity]], model_dir: Path
) -> None:
    directory, parity = exported
    assert {path.name for path in directory.iterdir()} == {WEIGHTS, MODEL, ONNX_FILE, INT8_FILE}
    assert (directory / WEIGHTS).read_bytes() == (model_dir / WEIGHTS).read_bytes()
    assert set(parity) == set(RUNTIMES)
    assert parity["torch"].max_abs_diff == 0.0
    assert parity["torch"].auroc_change == 0.0
    assert parity["torch"].size_bytes == (model_dir / WEIGHTS).stat().st_size
    for runtime, result in parity.items():
        assert result.runtime == runtime
        assert 0 < result.p50_ms_one_row <= result.p99_ms_one_row


def test_onnx_runtime_needs_no_torch_weights(
    exported: tuple[Path, dict[str, Parity]], reference: TorchScorer, tmp_path: Path
) -> None:
    directory, _ = exported
    for name in (MODEL, INT8_FILE):
        shutil.copy2(directory / name, tmp_path / name)
    scorer = load_scorer(tmp_path, "onnx-int8")
    assert isinstance(scorer, OnnxScorer)
    with pytest.raises(FileNotFoundError, match=r"'torch' needs .*weights\.pt"):
        load_scorer(tmp_path, "torch")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_missing_runtime_file_is_a_clear_error(
    exported: tuple[Path, dict[str, Parity]], tmp_path: Path, runtime: str
) -> None:
    directory, _ = exported
    for name in {MODEL, *FILES.values()} - {FILES[runtime]}:
        shutil.copy2(directory / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match=rf"{runtime!r} needs .*{FILES[runtime]}"):
        load_scorer(tmp_path, runtime)


def test_unknown_runtime_is_refused(exported: tuple[Path, dict[str, Parity]]) -> None:
    directory, _ = exported
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        load_scorer(directory, "tflite")  # type: ignore[arg-type]


def test_onnx_file_for_other_columns_is_refused(
    exported: tuple[Path, dict[str, Parity]], reference: TorchScorer
) -> None:
    directory, _ = exported
    fewer = Columns(COLUMNS.categorical[:2], COLUMNS.numeric, COLUMNS.label)
    with pytest.raises(ValueError, match="takes inputs"):
        OnnxScorer(directory / ONNX_FILE, fewer, reference.encoding)


def test_check_parity_refuses_mismatched_or_one_class_labels(
    reference: TorchScorer, frame: pl.DataFrame, labels: np.ndarray
) -> None:
    with pytest.raises(ValueError, match="rows"):
        check_parity(reference, reference, frame, labels[:-1], "torch", 1)
    with pytest.raises(ValueError, match="both classes"):
        check_parity(reference, reference, frame, np.zeros(frame.height, bool), "torch", 1)


def test_parity_metadata_is_flat(exported: tuple[Path, dict[str, Parity]]) -> None:
    _, parity = exported
    for result in parity.values():
        metadata = result.to_metadata()
        assert set(metadata) == {
            "runtime",
            "max_abs_diff",
            "auroc_torch",
            "auroc_runtime",
            "auroc_change",
            "size_bytes",
            "p50_ms_one_row",
            "p99_ms_one_row",
        }
        assert all(type(value) in (str, int, float) for value in metadata.values())


def test_export_onnx_writes_where_asked_reproducibly(
    exported: tuple[Path, dict[str, Parity]],
    reference: TorchScorer,
    tmp_path: Path,
    frame: pl.DataFrame,
) -> None:
    directory, _ = exported
    path = export_onnx(reference.model, tmp_path / "deeper" / "custom.onnx")
    scorer = OnnxScorer(path, reference.columns, reference.encoding)
    np.testing.assert_allclose(scorer.score(frame), reference.score(frame), rtol=0, atol=1e-5)
    content = path.read_bytes()
    assert content == (directory / ONNX_FILE).read_bytes()
    assert b"stack_trace" not in content
    assert b"edge.py" not in content
