"""Where a training step's time goes on the CPU, and how fast its convolution kernels run: what
zoo's loop can still win, and what only faster kernels could.

    python bench/step_profile.py [--model vgg16] [--batch-size 128] [--steps 3]

Table 1 profiles one step of the lab's loop (fp32, contiguous, a host sync per step; data loading
left out) and of zoo's fp32 and amp trainers, and splits it into convolutions and everything else.
Its last column is the most a trainer could gain over the lab step if everything but its
convolutions cost nothing. Table 2 times each convolution shape of the model alone: forward,
gradient of the input, gradient of the weight, and a matrix product of the same size (the im2col
GEMM) for comparison.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from common import machine, table

import zoo
from zoo.models import create_model

CONV_FORWARD = {"aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv2d"}
CONV_BACKWARD = {"aten::convolution_backward"}


def profile_step(model_name: str, trainer_name: str | None, batch: int, steps: int) -> dict[str, float]:
    """Milliseconds per step: all of it, the convolutions forward and backward. ``trainer_name``
    None is the lab's step: fp32, contiguous, ``loss.item()`` every step."""
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, input_size=32)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if trainer_name is None:
        def step():
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            loss.item()
    else:
        trainer = zoo.default_registry().get("trainer", trainer_name).load()(device="cpu")
        model = trainer.prepare(model)
        x = trainer.prepare_input(x)

        def step():
            with trainer.autocast():
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            trainer.backward_step(loss, optimizer)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - started) / steps * 1000
    self_ms = {e.key: e.self_cpu_time_total / 1000 / steps for e in prof.key_averages()}
    return {"step": wall, "forward": sum(v for k, v in self_ms.items() if k in CONV_FORWARD),
            "backward": sum(v for k, v in self_ms.items() if k in CONV_BACKWARD)}


def conv_shapes(model_name: str, batch: int) -> Counter:
    """(input shape, out channels, kernel, stride, padding) of every Conv2d call, counted."""
    model = create_model(model_name, num_classes=10, input_size=32)
    shapes: Counter = Counter()

    def record(module, inputs, _output):
        shapes[(tuple(inputs[0].shape), module.out_channels, module.kernel_size, module.stride, module.padding,
                module.groups)] += 1

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return shapes


def milliseconds(fn, repeat: int = 6) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat * 1000


def kernel_speeds(shape, dtype: torch.dtype) -> tuple[float, float, float, float]:
    """GFLOP/s of forward, input gradient, weight gradient (channels_last) and the same-size GEMM."""
    (n, c, h, w), out, kernel, stride, padding, groups = shape
    cl = torch.channels_last
    x = torch.randn(n, c, h, w, dtype=dtype).contiguous(memory_format=cl)
    weight = torch.randn(out, c // groups, *kernel, dtype=dtype).contiguous(memory_format=cl)
    y = F.conv2d(x, weight, None, stride, padding, 1, groups)
    grad = torch.randn_like(y)
    rows, depth = y.shape[0] * y.shape[2] * y.shape[3], c // groups * kernel[0] * kernel[1]
    gflop = 2 * rows * depth * out / 1e9

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, (1, 1), False,
                                                           (0, 0), groups, mask)

    a, b = torch.randn(rows, depth, dtype=dtype), torch.randn(depth, out, dtype=dtype)
    times = [milliseconds(lambda: F.conv2d(x, weight, None, stride, padding, 1, groups)),
             milliseconds(backward([True, False, False])), milliseconds(backward([False, True, False])),
             milliseconds(lambda: a @ b)]
    return tuple(gflop / t * 1000 for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    setups = [("lab step, fp32 contiguous", None), ("zoo train fp32", "fp32"), ("zoo train --amp", "amp")]
    profiles = [(label, profile_step(args.model, trainer, args.batch_size, args.steps)) for label, trainer in setups]
    lab_step = profiles[0][1]["step"]
    rows = []
    for label, p in profiles:
        conv = p["forward"] + p["backward"]
        rows.append([label, f"{p['step']:,.0f}", f"{p['forward']:,.0f}", f"{p['backward']:,.0f}",
                     f"{p['step'] - conv:,.0f} ({(p['step'] - conv) / p['step']:.0%})",
                     f"{lab_step / p['step']:.2f}x", f"{lab_step / conv:.2f}x"])
    print(f"\nOne training step of {args.model}, batch {args.batch_size}, CIFAR shape; {machine()}\n")
    print(table(["setup", "step (ms)", "conv forward (ms)", "conv backward (ms)", "everything else (ms)",
                 "vs lab step", "ceiling vs lab step (convolutions only)"], rows))

    rows = []
    for shape, count in conv_shapes(args.model, args.batch_size).items():
        (_, c, h, w), out = shape[0], shape[1]
        fp32 = kernel_speeds(shape, torch.float32)
        bf16 = kernel_speeds(shape, torch.bfloat16)
        rows.append([f"{c}->{out} at {h}x{w}", count, *(f"{v:,.0f}" for v in fp32), *(f"{v:,.0f}" for v in bf16)])
    print("\nConvolution kernels alone (channels_last), GFLOP/s; GEMM: a matrix product of the same size\n")
    print(table(["convolution", "times", "fp32 forward", "fp32 grad input", "fp32 grad weight", "fp32 GEMM",
                 "bf16 forward", "bf16 grad input", "bf16 grad weight", "bf16 GEMM"], rows))


if __name__ == "__main__":
    main()
