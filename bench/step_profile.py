"""Where a training step's time goes on the CPU, and how fast its convolution kernels run: what
zoo's loop can still win, and what only faster kernels could.

    python bench/step_profile.py [--model vgg16] [--batch-size 128] [--steps 3]

Table 1 profiles one step of the lab's loop (fp32, contiguous, a host sync per step; data loading
left out) and of zoo's fp32 and amp trainers, and splits it into convolutions and everything else.
Its last column is the most a trainer could gain over the lab step if everything but its
convolutions cost nothing. Table 2 times each convolution shape of the model alone: forward,
gradient of the input, gradient of the weight, and a matrix product of the same size (the im2col
GEMM) for comparison, in channels_last; and how long the contiguous format takes relative to it
(under 1: contiguous is faster, which is why zoo keeps maps under 8x8 contiguous on CPUs).
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from common import lab_train_epoch, machine, table

import zoo
from zoo import create_model
from zoo import prepare_model

CONV_FORWARD = {"aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv2d"}
CONV_BACKWARD = {"aten::convolution_backward"}


def profile_step(model_name: str, trainer_name: str | None, batch: int, steps: int) -> dict[str, float]:
    """Milliseconds per step: all of it, the convolutions forward and backward. ``trainer_name``
    None is the lab's step: fp32, contiguous, ``loss.item()`` every step."""
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, input_size=32)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if trainer_name is None:
        def step():  # one batch through the benchmarks' one definition of the lab loop
            lab_train_epoch(model, [(x, y)], optimizer, "cpu")
    else:
        trainer = zoo.default_registry().get("trainer", trainer_name).load()(device="cpu")
        model = prepare_model(trainer, model, tuple(x.shape[1:]))
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
    """(input shape, out channels, kernel, stride, padding, groups) of every Conv2d call, counted."""
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


def kernel_times(shape, dtype: torch.dtype, memory_format: torch.memory_format) -> tuple[list[float], float]:
    """Milliseconds of forward, input gradient and weight gradient, and the GFLOP of each."""
    (n, c, h, w), out, kernel, stride, padding, groups = shape
    x = torch.randn(n, c, h, w, dtype=dtype).contiguous(memory_format=memory_format)
    weight = torch.randn(out, c // groups, *kernel, dtype=dtype).contiguous(memory_format=memory_format)
    y = F.conv2d(x, weight, None, stride, padding, 1, groups)
    grad = torch.randn_like(y)
    gflop = 2 * y.shape[0] * y.shape[2] * y.shape[3] * (c // groups) * kernel[0] * kernel[1] * out / 1e9

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, (1, 1), False,
                                                           (0, 0), groups, mask)

    return [milliseconds(lambda: F.conv2d(x, weight, None, stride, padding, 1, groups)),
            milliseconds(backward([True, False, False])), milliseconds(backward([False, True, False]))], gflop


def gemm_ms(shape, dtype: torch.dtype) -> float:
    """Milliseconds of the matrix product with the convolution's size (its im2col form)."""
    (n, c, h, w), out, kernel, stride, padding, groups = shape
    rows = n * ((h + 2 * padding[0] - kernel[0]) // stride[0] + 1) * ((w + 2 * padding[1] - kernel[1]) // stride[1] + 1)
    a, b = torch.randn(rows, c // groups * kernel[0] * kernel[1], dtype=dtype), torch.randn(
        c // groups * kernel[0] * kernel[1], out, dtype=dtype)
    return milliseconds(lambda: a @ b)


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
        row = [f"{c}->{out} at {h}x{w}", count]
        for dtype in (torch.float32, torch.bfloat16):
            channels_last, gflop = kernel_times(shape, dtype, torch.channels_last)
            contiguous, _ = kernel_times(shape, dtype, torch.contiguous_format)
            row += [f"{gflop / ms * 1000:,.0f}" for ms in (*channels_last, gemm_ms(shape, dtype))]
            row.append(f"{sum(contiguous) / sum(channels_last):.2f}")
        rows.append(row)
    print("\nConvolution kernels alone, GFLOP/s in channels_last; GEMM: a matrix product of the same size; "
          "contiguous / channels_last: time of forward and both gradients in the contiguous format, relative\n")
    print(table(["convolution", "times", "fp32 forward", "fp32 grad input", "fp32 grad weight", "fp32 GEMM",
                 "fp32 contiguous / channels_last", "bf16 forward", "bf16 grad input", "bf16 grad weight",
                 "bf16 GEMM", "bf16 contiguous / channels_last"], rows))

if __name__ == "__main__":
    main()
