"""Loggers as plugins: the console always, a CSV file and TensorBoard on request, any plugin's logger
by name; a logger that fails is a warning, never a lost run."""
from __future__ import annotations

import csv
import json

from conftest import make_plugin_dist, run_zoo

TINY = ["--set", "layout=8,M,16,M", "--batch-size", "20", "--aug", "none", "--epochs", "2"]


def test_csv_and_tensorboard_loggers_record_what_metrics_jsonl_holds(cifar_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "csv", "--log", "tensorboard",
                     "--log-every", "1", "--run-dir", "r", "--out", "w.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    assert [float(r["test_accuracy"]) for r in rows] == [m["test_accuracy"] for m in metrics]
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("epoch/test_accuracy")] == [
        __import__("pytest").approx(m["test_accuracy"]) for m in metrics]
    assert len(events.Scalars("train/loss")) == 10  # 5 steps a epoch, a point at each log step


def test_a_failing_logger_is_a_warning_not_a_lost_run(cifar_dir, tmp_path, plugin_dir):
    source = """
        from zoo import Logger, SilentReporter, hookimpl

        class Offline(SilentReporter):
            def step(self, done, loss, accuracy, images_per_s):
                raise ConnectionError("no network")

        @hookimpl
        def loggers():
            return [Logger("tracker", Offline, "an experiment tracker without a network")]
    """
    make_plugin_dist(plugin_dir, "zoo-tracker", "tracker_plugin", source, entry_point="tracker")
    env = {"PYTHONPATH": str(plugin_dir)}
    listed = run_zoo("list", "--kind", "logger", env=env).stdout
    assert all(name in listed for name in ("console", "csv", "tensorboard", "tracker"))
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "tracker", "--log-every", "1",
                     "--run-dir", "r", "--out", "w.safetensors", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "logger 'tracker:tracker' failed in step() (ConnectionError: no network)" in warnings[0]
    assert (tmp_path / "w.safetensors").exists()
    unknown = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "trackr", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown logger 'trackr'; did you mean tracker" in unknown.stderr
