"""What ``zoo info`` reports (parameters, multiply-adds, output shape, a layer table), and the one-image
probe (``forward_one``) with which training and evaluation check that a model takes its input."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..base.errors import UserError, first_line


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(model: nn.Module, input_size: int, in_chans: int, depth: int = 2) -> dict[str, Any]:
    """Run one image through ``model`` and measure it, with a row per layer down to ``depth`` levels.

    Multiply-adds are half of what torch's ``FlopCounterMode`` counts: the convolutions and matrix
    products, attention included (what the ResNet paper's "FLOPs" count). A layer's activation memory
    is the size of its output for that image.
    """
    from torch.utils.flop_counter import FlopCounterMode

    layers: list[dict[str, Any]] = []
    shallow = {name: module for name, module in model.named_modules() if name and name.count(".") < depth}

    def record(name: str):
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            tensor = output if isinstance(output, torch.Tensor) else None
            layers.append({"name": name, "type": type(module).__name__,
                           "output": list(tensor.shape[1:]) if tensor is not None else [],
                           "params": count_parameters(module),
                           "activation_bytes": tensor.numel() * tensor.element_size() if tensor is not None else 0})
        return hook

    # A container above the deepest level (features, layer1) is shown through its children instead.
    handles = [m.register_forward_hook(record(name)) for name, m in shallow.items()
               if not (_is_container(m) and name.count(".") < depth - 1)]
    try:
        with FlopCounterMode(display=False, depth=None) as counter:
            output = forward_one(model, (in_chans, input_size, input_size))
    finally:
        for handle in handles:
            handle.remove()
    counts, root = counter.get_flop_counts(), type(model).__name__
    for layer in layers:
        layer["multiply_adds"] = sum(counts.get(f"{root}.{layer['name']}", {}).values()) // 2
    return {
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "multiply_adds": counter.get_total_flops() // 2,
        "input": [in_chans, input_size, input_size],
        "output": list(output.shape[1:]),
        "layers": layers,
    }


def _is_container(module: nn.Module) -> bool:
    return isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict))


def forward_one(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """One zero image of ``input_shape`` through ``model`` in eval mode, without gradients, on the
    model's device. A model that cannot take that input (poolings that shrink it below a pixel, an
    option checked only in the forward pass) is the user's error: one line, not a traceback."""
    parameter = next(model.parameters(), None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.zeros(1, *input_shape, device=parameter.device if parameter is not None else None))
    except (AssertionError, RuntimeError, ValueError) as exc:  # timm checks input sizes with assert
        name = getattr(model, "zoo_config", {}).get("model", type(model).__name__)
        shape = "x".join(map(str, input_shape))
        raise UserError(f"{name} cannot take {shape} inputs: {first_line(exc)}") from exc
    finally:
        model.train(was_training)
