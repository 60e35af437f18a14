"""Loggers: a CSV file and TensorBoard in the run folder. Each is imported only when chosen (--log)."""
from zoo import Logger, hookimpl


@hookimpl
def loggers():
    return [
        Logger("csv", "zoo_loggers.files:CsvLogger", "metrics.csv in the run folder: a row per epoch"),
        Logger("tensorboard", "zoo_loggers.files:TensorBoardLogger",
               "TensorBoard events in <run>/tensorboard (needs the tensorboard package)"),
    ]
