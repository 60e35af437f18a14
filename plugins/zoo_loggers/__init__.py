"""Loggers: a CSV file and TensorBoard in the run folder, and the W&B and MLflow trackers. Each is
imported only when chosen (--log)."""
from zoo import Logger, hookimpl


@hookimpl
def loggers():
    return [
        Logger("csv", "zoo_loggers.files:CsvLogger", "metrics.csv in the run folder: a row per epoch",
               writes=("metrics.csv",)),
        Logger("tensorboard", "zoo_loggers.trackers:TensorBoardLogger",
               "TensorBoard events in <run>/tensorboard (needs the tensorboard package)", writes=("tensorboard",)),
        Logger("wandb", "zoo_loggers.trackers:WandbLogger", param="project", writes=("wandb",),
               summary="a Weights & Biases run (needs wandb; wandb=PROJECT, WANDB_MODE=offline)"),
        Logger("mlflow", "zoo_loggers.trackers:MlflowLogger", param="experiment",
               summary="an MLflow run (needs mlflow; mlflow=EXPERIMENT, MLFLOW_TRACKING_URI)"),
    ]
