"""Writing and reading back each format; the metadata travels inside the file."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from zoo import UserError


def _batch_dim(dynamic_batch: bool):
    return ({0: torch.export.Dim.DYNAMIC},) if dynamic_batch else None


def save_pt2(model, example, path: Path, dynamic_batch: bool = False, metadata: dict | None = None) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=_batch_dim(dynamic_batch))
    buffer = io.BytesIO()  # through a buffer: torch.export wants a path ending in .pt2, zoo writes a temporary
    torch.export.save(program, buffer, extra_files=metadata or {})
    path.write_bytes(buffer.getvalue())


def load_pt2(path: Path):
    metadata = {"zoo": ""}
    program = torch.export.load(io.BytesIO(path.read_bytes()), extra_files=metadata)
    return program.module(), metadata


def save_onnx(model, example, path: Path, dynamic_batch: bool = False, metadata: dict | None = None) -> None:
    onnx = _need("onnx")
    _need("onnxscript")
    torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                      dynamic_shapes=_batch_dim(dynamic_batch), verbose=False)
    program = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        program.metadata_props.add(key=key, value=value)
    onnx.save(program, str(path))


def load_onnx(path: Path):
    runtime = _need("onnxruntime")
    session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])

    return predict, dict(session.get_modelmeta().custom_metadata_map)


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export needs {module}: pip install 'cnn-zoo[export]'") from None
