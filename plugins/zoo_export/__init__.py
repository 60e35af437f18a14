"""Deployment formats: torch.export's .pt2, and ONNX (with the optional `export` extra: onnx,
onnxscript, onnxruntime). TorchScript is left out: torch 2.14 deprecates torch.jit.script and trace
in favour of torch.export."""
from zoo import Exporter, hookimpl


@hookimpl
def exporters():
    return [
        Exporter("pt2", "zoo_export.formats:save_pt2", "torch.export program (.pt2), for torch and AOTInductor",
                 suffix=".pt2", runner="zoo_export.formats:load_pt2"),
        Exporter("onnx", "zoo_export.formats:save_onnx", "ONNX (opset of torch's exporter), for onnxruntime, "
                 "TensorRT, OpenVINO", suffix=".onnx", runner="zoo_export.formats:load_onnx"),
    ]
