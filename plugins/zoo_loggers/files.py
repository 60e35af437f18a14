"""Loggers that write into the run folder."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from zoo import SilentReporter


class CsvLogger(SilentReporter):
    """A row per epoch in ``<run>/metrics.csv`` (what metrics.jsonl holds, for spreadsheets)."""

    def start(self, config, info: dict[str, Any]) -> None:
        self.path = Path(info["run_dir"]) / "metrics.csv"

    def epoch_end(self, record: dict[str, Any]) -> None:
        new = not self.path.exists() or record["epoch"] == 1
        with open(self.path, "w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(record), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)
