"""Where training runs and where studies keep their trials: chosen per deployment, not per model.

A model declares what to train; this resource says on what: a laptop trains on its CPU, a GPU
node on every GPU it has with DDP (``devices="auto"``), a cluster on several nodes. The values are
the ``lightning.Trainer`` arguments of the same names.
"""

from __future__ import annotations

import dagster as dg

from training.trainer import TrainerSettings


class Trainer(dg.ConfigurableResource):
    accelerator: str = "auto"
    devices: str = "auto"
    """``auto`` (every device), a count such as ``2``, or ``-1``."""
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1

    def settings(self) -> TrainerSettings:
        devices = self.devices
        return TrainerSettings(
            accelerator=self.accelerator,
            devices=int(devices) if devices.lstrip("-").isdigit() else devices,
            strategy=self.strategy,
            precision=self.precision,
            num_nodes=self.num_nodes,
        )


class StudyStorage(dg.ConfigurableResource):
    """The RDB where Optuna keeps every trial, so a killed study resumes where it stopped."""

    url: str
