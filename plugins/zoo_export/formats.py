"""Writing and reading back each format; the metadata travels inside the file."""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from zoo import UserError

from .checks import bounded_run, checked_onnx, checked_pt2


def _batch_dim(dynamic_batch: bool):
    return ({0: torch.export.Dim.DYNAMIC},) if dynamic_batch else None


def save_pt2(model, example, path: Path, dynamic_batch: bool = False, metadata: dict | None = None) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=_batch_dim(dynamic_batch))
    buffer = io.BytesIO()  # through a buffer: torch.export wants a path ending in .pt2, zoo writes a temporary
    torch.export.save(program, buffer, extra_files=metadata or {})
    path.write_bytes(buffer.getvalue())


def load_pt2(path: Path):
    metadata = {"zoo": ""}
    try:
        program = torch.export.load(checked_pt2(path), extra_files=metadata)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a checked archive torch still cannot read: corrupt, or another version
        raise UserError(f"{path} is not a torch.export program this torch can load ({type(exc).__name__})") from None
    return bounded_run(program.module(), str(path)), metadata


def save_onnx(model, example, path: Path, dynamic_batch: bool = False, metadata: dict | None = None) -> None:
    onnx = _need("onnx")
    _need("onnxscript")
    # every tensor inside the file: an external .data file would be left beside zoo's temporary name
    torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                      dynamic_shapes=_batch_dim(dynamic_batch), verbose=False, external_data=False)
    program = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        program.metadata_props.add(key=key, value=value)
    onnx.save(program, str(path))


def load_onnx(path: Path):
    _need("onnx")
    model, data = checked_onnx(path)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # else importing onnxruntime writes ~/.cache/Microsoft
    os.environ.pop("ORT_LOAD_CONFIG_FROM_MODEL", None)  # session options come from zoo, never from the file
    runtime = _need("onnxruntime")
    options = runtime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = runtime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a model it refuses
        raise UserError(f"onnxruntime cannot run {path} ({str(exc).strip().splitlines()[0][:160]})") from None

    def predict(x: torch.Tensor) -> torch.Tensor:
        try:
            return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own types: a shape the file was not made for
            raise RuntimeError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None

    return predict, dict(session.get_modelmeta().custom_metadata_map)


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export needs {module}: pip install 'cnn-zoo[export]'") from None
