"""End to end: a Dagster asset trains through Pipes with Lightning DDP on two CPU processes."""

import sys
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from resources.lakehouse import Lakehouse
from tests.training.conftest import COLUMNS, synthetic_frame
from training.data import split_by
from training.entry import DeltaSource, ParquetSource, TrainingRequest, is_first_rank, read_rows
from training.module import Hyperparameters
from training.trainer import TrainerSettings, load

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    # Raised inside Dagster's Pipes client and Lightning's loader, not by this code.
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
]
MARKER = "TRAINING_ENTRY_TEST_RUN"


def processes_of(run: str) -> list[psutil.Process]:
    """Live processes started for ``run`` (every rank inherits the marker variable)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == run:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_pipes_asset_trains_with_ddp_and_reports(tmp_path: Path) -> None:
    data = tmp_path / "training_set.parquet"
    synthetic_frame().write_parquet(data)
    request = TrainingRequest(
        source=ParquetSource(str(data)),
        columns=COLUMNS,
        # 38 batches per rank and epoch: two Lightning steps of up to 32 optimizer steps each.
        hyperparameters=Hyperparameters(hidden=(32,), batch_size=24, epochs=3, learning_rate=3e-3),
        settings=TrainerSettings(accelerator="cpu", devices=2, strategy="ddp"),
        output_dir=str(tmp_path / "model"),
    )
    run = uuid.uuid4().hex

    @dg.asset
    def fraud_model(
        context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient
    ) -> dg.MaterializeResult:
        return pipes.run(
            command=[sys.executable, "-m", "training.entry"],
            context=context,
            extras=request.to_extras(),
            env={MARKER: run},
            cwd=str(ROOT),
        ).get_materialize_result()

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [fraud_model], resources={"pipes": dg.PipesSubprocessClient()}, instance=instance
        )
    assert result.success
    assert processes_of(run) == []  # both ranks are gone: nothing outlives the asset

    (materialization,) = result.asset_materializations_for_node("fraud_model")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert metadata["test_auroc"] > 0.9
    assert 0 < metadata["test_average_precision"] <= 1
    assert metadata["output_dir"] == request.output_dir
    assert len(metadata["epochs"]) == 3
    assert metadata["epochs"][0]["train_samples"] == 1800  # both ranks' shares, counted once

    # The saved weights reproduce what both ranks reported: the test scores, and the last
    # validation (each rank scored its half with its own weights, so DDP kept them equal).
    model = load(metadata["output_dir"])
    splits = split_by(synthetic_frame())
    for rows, auroc, average_precision in (
        (splits.test, metadata["test_auroc"], metadata["test_average_precision"]),
        (
            splits.validation,
            metadata["validation_auroc"],
            metadata["validation_average_precision"],
        ),
    ):
        scores = model.score(rows)
        labels = torch.from_numpy(rows["is_fraud"].to_numpy()).long()
        assert float(binary_auroc(scores, labels)) == pytest.approx(auroc, abs=1e-6)
        assert float(binary_average_precision(scores, labels)) == pytest.approx(
            average_precision, abs=1e-6
        )


def test_a_delta_source_is_read_at_its_version(tmp_path: Path) -> None:
    lake = Lakehouse(root_uri=str(tmp_path / "lake"))
    frame = synthetic_frame(rows=50)
    lake.write_table("training/fraud_dataset", frame)
    lake.write_table("training/fraud_dataset", frame.head(10))
    request = TrainingRequest(
        source=DeltaSource(lake.root_uri, "training/fraud_dataset", version=0),
        columns=COLUMNS,
        hyperparameters=Hyperparameters(),
        settings=TrainerSettings(),
        output_dir=str(tmp_path / "model"),
    )
    assert TrainingRequest.from_extras(request.to_extras()) == request
    rows = read_rows(request)
    assert rows.height == 50
    assert rows.columns == [*COLUMNS.categorical, *COLUMNS.numeric, COLUMNS.label, "split"]
    assert rows.equals(frame.select(rows.columns))


def test_only_the_first_rank_reports() -> None:
    assert is_first_rank({})
    assert is_first_rank({"LOCAL_RANK": "0", "NODE_RANK": "0"})
    assert not is_first_rank({"LOCAL_RANK": "1"})
    assert not is_first_rank({"RANK": "3", "LOCAL_RANK": "1"})
    assert not is_first_rank({"NODE_RANK": "1", "LOCAL_RANK": "0"})


def test_outside_pipes_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.entry import main

    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    with pytest.raises(SystemExit, match="Dagster Pipes"):
        main()
