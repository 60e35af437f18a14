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
    assert [(e.step, e.value) for e in events.Scalars("epoch/test_accuracy")] == [
        (5 * m["epoch"], __import__("pytest").approx(m["test_accuracy"])) for m in metrics]  # one axis: global steps
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 11))  # 5 steps a epoch, each logged
    assert [e.value for e in events.Scalars("epoch/images_per_s")] == [
        __import__("pytest").approx(m["images_per_s"]) for m in metrics]
    # The same run over it: what the loggers wrote goes with zoo's own files, and they start afresh.
    again = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "csv", "--log", "tensorboard",
                    "--run-dir", "r", "--out", "w.safetensors", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))) == 2
    assert len(list((tmp_path / "r" / "tensorboard").iterdir())) == 1  # one events file, the new run's


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


def _wandb_records(run_file):
    """The records of a W&B run file (``run-<id>.wandb``): wandb's LevelDB-style log of protobuf
    records, read as wandb's own reader did before it moved into its Go core."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, position, block, records, pending = run_file.read_bytes(), 7, 32768, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        length, kind = struct.unpack("<HB", data[position + 4:position + 7]) if left >= 7 else (0, 0)
        if left < 7 or (length, kind) == (0, 0):  # a block's padding
            position += left
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_logger_writes_an_offline_run_in_the_run_folder(cifar_dir, tmp_path):
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "wandb=lab", "--run-dir", "r",
                     "--out", "w.safetensors", env={"WANDB_MODE": "offline"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    metrics = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    (run_file,) = (tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb")
    records = _wandb_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "lab" and run.display_name == "r"
    assert json.loads({u.key: u.value_json for u in run.config.update}["model"]) == "vgg_bn"
    history = [{"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    epochs = [h for h in history if "epoch/test_accuracy" in h]
    assert [h["epoch/test_accuracy"] for h in epochs] == [m["test_accuracy"] for m in metrics]
    assert [h["_step"] for h in epochs] == [5, 10]  # global steps: 5 a epoch


def test_mlflow_logger_records_params_metrics_and_the_weights(cifar_dir, tmp_path):
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "mlflow=lab", "--run-dir", "r",
                     "--out", "w.safetensors", env={"MLFLOW_TRACKING_URI": store}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    metrics = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("lab").experiment_id])
    assert run.info.run_name == "r" and run.info.status == "FINISHED"
    assert run.data.params["model"] == "vgg_bn" and run.data.params["epochs"] == "2"  # as MLflow's searches compare
    assert json.loads(run.data.params["model_options"]) == {"layout": "8,M,16,M"}
    (found,) = client.search_runs([run.info.experiment_id], "params.model = 'vgg_bn' and params.epochs = '2'")
    assert found.info.run_id == run.info.run_id
    assert run.data.tags["zoo.weights"] == str(tmp_path / "w.safetensors")
    history = client.get_metric_history(run.info.run_id, "epoch/test_accuracy")
    assert [(m.step, m.value) for m in history] == [(5 * m["epoch"], m["test_accuracy"]) for m in metrics]


def test_mlflow_without_a_tracking_uri_writes_beside_the_run_not_where_zoo_ran(cifar_dir, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "mlflow", "--run-dir",
                     "runs/r", "--out", "w.safetensors", cwd=work)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["runs", "w.safetensors"]  # no ./mlflow.db
    assert sorted(p.name for p in (work / "runs").iterdir()) == [".mlflow", "r"]  # runs/* still lists runs only
    client = MlflowClient(f"sqlite:///{work / 'runs' / '.mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    assert run.info.run_name == "r"


def test_trackers_without_a_login_or_their_library_cost_no_run(cifar_dir, tmp_path):
    # online W&B without an API key: the tracker fails at the start, the run goes on
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "WANDB_DIR": str(tmp_path)}
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "wandb", "--run-dir", "r",
                     "--out", "w.safetensors", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "logger 'loggers:wandb' failed in start() (UsageError" in result.stderr and (tmp_path / "w.safetensors").exists()
    # a tracker whose library is missing stops the run before it starts, saying what to install
    missing = tmp_path / "site" / "mlflow"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('No module named mlflow')\n")
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), *TINY, "--log", "mlflow", "--run-dir", "r2",
                     env={"PYTHONPATH": str(tmp_path / "site")}, cwd=tmp_path)
    assert result.returncode == 2 and "pip install 'cnn-zoo[mlflow]'" in result.stderr
    assert not (tmp_path / "r2").exists()


def test_trackers_are_not_imported_unless_chosen():
    import subprocess
    import sys

    code = ("import sys, zoo; r = zoo.default_registry(); [s.load() for s in r.items('logger')]; "
            "print(sorted(m for m in ('wandb', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_logger_that_would_have_a_run_remove_more_than_its_own_files_is_refused():
    import pytest

    from zoo import Logger, PluginError, hookimpl
    from zoo.testing import fresh_registry

    for writes in ("metrics.csv", ("..",), ("../elsewhere",), ("",)):
        class Careless:
            @hookimpl
            def loggers(self, writes=writes):
                return [Logger("careless", "zoo_loggers.files:CsvLogger", "a logger", writes=writes)]

        with pytest.raises(PluginError, match="writes are not a tuple of names in the run folder"):
            fresh_registry({"careless": Careless()})
