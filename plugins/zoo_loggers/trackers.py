"""Experiment trackers: TensorBoard, Weights & Biases and MLflow, on one step axis (the global step).
Each library is imported only when its logger is chosen (``--log wandb``), and a tracker that fails
while the run goes (no network, no login) is dropped with a warning by zoo: the run never waits on it
or dies with it."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zoo import SilentReporter, UserError

EPOCH_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "images_per_s")


def _quiet(**defaults: str) -> None:
    """Settings a tracker reads from the environment, unless the user set them: its telemetry and
    error reports off, its caches where zoo says."""
    for name, value in defaults.items():
        if not os.environ.get(name):
            os.environ[name] = value


def _needs(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"the {extra} logger needs {module}: pip install 'cnn-zoo[{extra}]'") from None


class _Tracker(SilentReporter):
    """One step axis, the global step: the train metrics at each log step, the epoch metrics at the
    epoch's last step."""

    def start(self, config, info: dict[str, Any]) -> None:
        self.steps, self.epoch = info["steps_per_epoch"], 0
        self.open(Path(info["run_dir"]), {**asdict(config), "parameters": info["parameters"]})

    def epoch_start(self, epoch: int, steps: int) -> None:
        self.epoch = epoch

    def step(self, done: int, loss: float, accuracy: float, images_per_s: float) -> None:
        self.log({"train/loss": loss, "train/accuracy": accuracy, "train/images_per_s": images_per_s},
                 self.epoch * self.steps + done)

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.log({f"epoch/{key}": record[key] for key in EPOCH_METRICS} | {"epoch": record["epoch"]},
                 record["epoch"] * self.steps)

    def open(self, run_dir: Path, config: dict[str, Any]) -> None:
        raise NotImplementedError

    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError


class TensorBoardLogger(_Tracker):
    """Scalars in ``<run>/tensorboard`` (``tensorboard --logdir runs``)."""

    def __init__(self, flush_secs: int = 30):
        self.writer_type = _needs("torch.utils.tensorboard", "tensorboard").SummaryWriter
        self.flush_secs = flush_secs

    def open(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.writer = self.writer_type(str(run_dir / "tensorboard"), flush_secs=self.flush_secs)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def epoch_end(self, record: dict[str, Any]) -> None:
        super().epoch_end(record)
        self.writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        self.writer.close()


class WandbLogger(_Tracker):
    """A W&B run named after the run folder (resumed with it), in the run folder. ``WANDB_MODE=offline``
    writes it there without a network, for ``wandb sync`` later."""

    def __init__(self, project: str = "zoo"):
        _quiet(WANDB_ERROR_REPORTING="false")  # Sentry reports, a network call of their own
        self.wandb, self.project = _needs("wandb", "wandb"), project

    def open(self, run_dir: Path, config: dict[str, Any]) -> None:
        _quiet(WANDB_CACHE_DIR=str(run_dir / "wandb" / "cache"))  # else its debug logs go to ~/.cache/wandb
        # one W&B id per run folder, so that a resumed zoo run continues its W&B run
        run_id = "zoo-" + hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
        self.run = self.wandb.init(project=self.project, name=run_dir.name, id=run_id, resume="allow",
                                   dir=str(run_dir), config=config,
                                   settings=self.wandb.Settings(console="off", silent=True))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        self.run.finish()


class MlflowLogger(_Tracker):
    """An MLflow run named after the run folder, in ``experiment``, at ``MLFLOW_TRACKING_URI``, else in
    ``.mlflow/`` beside the run folder (``runs/.mlflow/mlflow.db``: the runs of a project together, not in
    whatever folder zoo ran from, and hidden from ``zoo report runs/*``). A resumed zoo run starts a new
    MLflow run of the same name."""

    def __init__(self, experiment: str = "zoo"):
        _quiet(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")  # MLflow 3 reports usage over the network
        self.mlflow, self.experiment = _needs("mlflow", "mlflow"), experiment

    def open(self, run_dir: Path, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        home = run_dir.parent.absolute() / ".mlflow"
        given = os.environ.get("MLFLOW_TRACKING_URI")
        if not given:
            home.mkdir(exist_ok=True)
        self.client = self.mlflow.MlflowClient(tracking_uri=given or f"sqlite:///{home / 'mlflow.db'}")
        found = self.client.get_experiment_by_name(self.experiment)
        experiment = found.experiment_id if found else self.client.create_experiment(
            self.experiment, artifact_location=None if given else (home / "artifacts").as_uri())
        self.run_id = self.client.create_run(experiment, run_name=run_dir.name,
                                             tags={"zoo.run_dir": str(run_dir)}).info.run_id
        # MLflow keeps parameters as text of at most 6,000 characters, and its searches compare that text
        # (params.model = 'resnet20'): names and numbers as they read, tables and lists as JSON
        self.client.log_batch(self.run_id, params=[
            Param(key, (value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list))
                        else str(value))[:6000]) for key, value in config.items()])

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, float(value), now, step)
                                                    for key, value in metrics.items()])

    def finish(self, summary: dict[str, Any]) -> None:
        self.client.set_tag(self.run_id, "zoo.weights", summary["weights"])
        self.client.set_terminated(self.run_id)
