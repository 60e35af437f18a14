"""zoo export: deployment files that answer as the PyTorch model does and carry what turns images into
their inputs; checked as they are written, and usable by zoo predict."""
from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo import Exporter, UserError, hookimpl
from zoo.io.export import export_weights
from zoo.testing import fresh_registry

from conftest import run_zoo


FIELDS = dict(classes=[f"c{i}" for i in range(10)], num_classes=10, in_chans=3, input_size=32, mean=[0.5] * 3,
              std=[0.25] * 3, dataset="cifar10")


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("se-resnet20", num_classes=10, width=0.25)
    return zoo.save_weights(model, tmp_path / "w.safetensors", **FIELDS)


@pytest.mark.parametrize("format", ["pt2", "onnx"])
def test_an_export_answers_as_pytorch_for_any_batch_and_carries_its_metadata(weights, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    result = run_zoo("export", str(weights), "--format", format, "--json", cwd=weights.parent)  # any batch: the default
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    path = weights.with_suffix(f".{format}")
    assert report["path"] == str(path) and report["relative_difference"] <= 1e-4
    registry = zoo.default_registry()
    spec = registry.get("exporter", format)
    predict, metadata = spec.resolve(spec.runner, "runner")(path)
    carried = json.loads(metadata["zoo"])
    assert {k: carried[k] for k in ("classes", "input_size", "mean", "std")} == {
        k: FIELDS[k] for k in ("classes", "input_size", "mean", "std")}
    model = zoo.load_model(weights).eval()
    x = torch.randn(5, 3, 32, 32)  # a batch size the export never saw
    with torch.no_grad():
        torch.testing.assert_close(predict(x), model(x), rtol=1e-4, atol=1e-5)
    again = run_zoo("export", str(weights), "--format", format, cwd=weights.parent)
    assert again.returncode == 2 and "exists; choose another --out or pass --overwrite" in again.stderr


class WrongRunner:
    """An exporter whose files answer differently: zoo must notice and keep nothing."""

    @staticmethod
    @hookimpl
    def exporters():
        def save(model, example, path, dynamic_batch=False, metadata=None):
            path.write_bytes(b"whatever")

        def load(path):
            return (lambda x: torch.zeros(len(x), 10)), {"zoo": "{}"}

        return [Exporter("broken", save, "answers zeros", suffix=".bin", runner=load)]


def test_an_export_that_answers_differently_is_refused_and_nothing_is_kept(weights):
    registry = fresh_registry({"wrong": WrongRunner()}, installed=("resnet", "se"))
    with pytest.raises(UserError, match="answers differently from the PyTorch model .* nothing was written"):
        export_weights(weights, "broken", registry=registry)
    assert sorted(p.name for p in weights.parent.iterdir()) == ["w.safetensors"]


@pytest.mark.parametrize("format", ["pt2", "onnx"])
def test_zoo_predict_runs_an_exported_file_of_any_batch_or_a_fixed_one(weights, tmp_path, format):
    from PIL import Image

    if format == "onnx":
        pytest.importorskip("onnxruntime")
    for name, colour in (("red", (200, 30, 30)), ("green", (30, 200, 30)), ("blue", (30, 30, 200))):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{name}.png")
    from_weights = json.loads(run_zoo("predict", str(weights), str(tmp_path), "--json", cwd=tmp_path).stdout)
    path = weights.with_suffix(f".{format}")
    for export in ([], ["--batch-size", "2", "--overwrite"]):  # any batch; exactly 2, and 3 images to predict
        written = run_zoo("export", str(weights), "--format", format, *export, cwd=tmp_path)
        assert written.returncode == 0, written.stderr
        for batch in ("64", "2", "1"):
            exported = run_zoo("predict", str(path), str(tmp_path), "--json", "--batch-size", batch, cwd=tmp_path)
            assert exported.returncode == 0, exported.stderr
            for ours, theirs in zip(from_weights, json.loads(exported.stdout), strict=True):
                assert [t["class"] for t in ours["top"]] == [t["class"] for t in theirs["top"]]
                assert [t["probability"] for t in ours["top"]] == pytest.approx(
                    [t["probability"] for t in theirs["top"]], abs=1e-5)
    assert "batches of exactly 2" in written.stdout
    # a file an older zoo exported for a fixed batch says nothing of it: one line, never the runtime's traceback
    model, spec = zoo.load_model(weights).eval(), zoo.default_registry().get("exporter", format)
    carried = {k: FIELDS[k] for k in ("classes", "num_classes", "in_chans", "input_size", "mean", "std")}
    old = tmp_path / f"old.{format}"
    spec.load()(model, torch.randn(2, 3, 32, 32), old, dynamic_batch=False,
                metadata={"zoo": json.dumps({"model": "se-resnet20", **carried})})
    refused = run_zoo("predict", str(old), str(tmp_path / "red.png"), cwd=tmp_path)
    assert refused.returncode == 2 and "export it again (any batch size is the default)" in refused.stderr
    assert "Traceback" not in refused.stderr
