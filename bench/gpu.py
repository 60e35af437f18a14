"""The GPU check: what zoo's training loop does on one CUDA device, each number beside the lab's loop
in the same run, printed as one Markdown section for docs/benchmarks.md (progress goes to stderr).

    bash bench/gpu.sh --fashion-mnist DIR [--device cpu --quick] [--sections throughput,steps,accuracy]

DIR holds Fashion-MNIST's four idx files (gzipped or not); throughput uses synthetic CIFAR-shape data.
``--quick`` is the same script at sizes that run on a CPU in about a minute (compiling with dynamo's
eager backend there: inductor's C++ build alone takes minutes on two cores); its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import dataclasses
import functools
import importlib.util
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def zoo_source() -> str:
    """Where zoo comes from: installed (gpu.sh's pip step), else this source tree, with the entry points
    of pyproject.toml written beside it where importlib.metadata finds them (pip could not install)."""
    if importlib.util.find_spec("zoo") is not None:
        return "installed"
    sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]
    from zoo.base.version import __version__

    folder = tempfile.mkdtemp(prefix="zoo-source-")
    atexit.register(shutil.rmtree, folder, True)
    info = Path(folder) / f"cnn_zoo-{__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: cnn-zoo\nVersion: {__version__}\n")
    plugins = read_pyproject()["project"]["entry-points"]["zoo.plugins"]
    (info / "entry_points.txt").write_text("[zoo.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in plugins.items()))
    sys.path.insert(0, str(info.parent))
    return "the source tree (pip could not install it)"


def read_pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


SOURCE = zoo_source()

import torch  # noqa: E402  (after zoo_source: a source-tree zoo needs sys.path first)
import torch.nn.functional as F  # noqa: E402

from common import machine, random_cifar, registry_with, table  # noqa: E402
from throughput import WARMUP_STEPS, lab_images_per_s, zoo_images_per_s  # noqa: E402
from time_to_accuracy import first_reaching, lab_points, zoo_points  # noqa: E402

import zoo  # noqa: E402
from zoo import prepare_model  # noqa: E402
from zoo.apps.compare import Experiment  # noqa: E402

RECIPE = ROOT / "experiments" / "fashion-mnist-93.toml"
TARGET = 0.93
MODELS = ("resnet18", "vgg16")
SETUPS = (("zoo fp32", "fp32", {}), ("zoo --amp", "amp", {}), ("zoo --amp --compile", "amp", {"compile": True}))
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' datasheets, by a substring of the device's
# name, first match wins (an "H100 PCIe" is no SXM H100); --peak-tflops for any other card.
BF16_PEAKS = (("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989), ("A100", 312), ("L40S", 362),
              ("L4", 121), ("A10", 125))


def versions() -> list[list[str]]:
    """Each dependency's version here, against the range zoo's pyproject.toml asks for."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # matplotlib needs packaging, so it is rarely missing; without it, versions only
        Requirement = None
    rows = []
    for line in read_pyproject()["project"]["dependencies"]:
        name = line.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip()
        requirement = Requirement(line) if Requirement else None
        if requirement and requirement.marker and not requirement.marker.evaluate():
            continue
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            rows.append([name, "missing", line, "no"])
            continue
        fits = requirement.specifier.contains(found, prereleases=True) if requirement else "?"
        rows.append([name, found, line, "yes" if fits is True else "no" if fits is False else fits])
    return rows


def bf16_peak(device: str, given: float | None) -> float | None:
    if given or not device.startswith("cuda"):
        return given
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in BF16_PEAKS if key in name), None)


def flops_per_image(name: str, device: str) -> float:
    """FLOPs of one training image through ``name`` (forward and backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = zoo.create_model(name, num_classes=10, input_size=32).to(device)
    x, y = torch.randn(8, 3, 32, 32, device=device), torch.randint(0, 10, (8,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 8


@contextlib.contextmanager
def peak_memory(device: str, into: list):
    """Appends the peak CUDA memory (MiB) of the block to ``into``; None on a CPU."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    yield
    into.append(torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None)


def throughput(args, registry, data) -> tuple[str, dict]:
    """images/s and peak memory of each model: the lab loop and zoo's trainers."""
    rows, memory_rows, found = [], [], {}
    for name in MODELS:
        peaks: list = []
        with peak_memory(args.device, peaks):
            lab = lab_images_per_s(name, data, args.steps, args.batch_size, args.device)
        speeds = []
        for _, trainer, options in SETUPS:
            with peak_memory(args.device, peaks):
                speeds.append(zoo_images_per_s(name, registry, args.steps, args.batch_size, trainer, args.device,
                                               **options))
            progress(f"{name} {trainer} {options or ''}: {speeds[-1]:,.0f} images/s")
        found[name] = {"lab": lab, "compiled": speeds[-1], "flops": flops_per_image(name, args.device)}
        rows.append([name, f"{lab:,.0f}", *(f"{s:,.0f} ({s / lab:.2f}x)" for s in speeds)])
        memory_rows.append([name, *("n/a" if p is None else f"{p:,.0f}" for p in peaks)])
    labels = [label for label, _, _ in SETUPS]
    text = (f"### Training throughput (images/s), CIFAR shape, batch {args.batch_size}, {args.steps} steady-state "
            f"steps\n\n{table(['model', 'lab loop fp32', *labels], rows)}\n\n"
            f"### Peak CUDA memory (MiB) of the same runs\n\n{table(['model', 'lab loop fp32', *labels], memory_rows)}")
    return text, found


def compiled_step(device: str, batch: int):
    """zoo's --amp --compile step of ResNet-18 on random data, warmed up (compiled), as a function."""
    trainer = zoo.default_registry().get("trainer", "amp").load()(device=device, compile=True)
    model = prepare_model(trainer, zoo.create_model("resnet18", num_classes=10, input_size=32), (3, 32, 32))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = trainer.prepare_input(torch.randn(batch, 3, 32, 32, device=device))
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with trainer.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        trainer.backward_step(loss, optimizer)

    for _ in range(3):
        step()
    return step


def gpu_share(step, steps: int) -> float:
    """The share of a step's wall time in which the GPU runs no kernel: launch overhead, Python, syncs."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - started
    # the kernels' own events (kineto's, device type CUDA); the CPU ops that launched them are not counted
    busy = sum(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
               for e in prof.key_averages() if str(getattr(e, "device_type", "")).endswith("CUDA")) / 1e6
    return 1 - min(busy / wall, 1.0)


def syncs_in_a_step(step) -> str:
    """One step under torch.cuda.set_sync_debug_mode("error"): any host sync in it raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        return "none (the step ran under set_sync_debug_mode(\"error\"))"
    except RuntimeError as exc:
        return f"a sync: {str(exc).splitlines()[0][:200]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)


def syncs_in_a_run(registry, steps: int, batch: int) -> str:
    """Host syncs of a whole `zoo train --amp` of ``steps`` steps (logged every WARMUP_STEPS), counted by
    source line (set_sync_debug_mode("warn")): a sync in every step would show ``steps`` times at one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            zoo_images_per_s("resnet18", registry, steps - WARMUP_STEPS, batch, "amp", "cuda")
        finally:
            torch.cuda.set_sync_debug_mode(0)
    lines = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                                if "synchroniz" in str(w.message))
    if not lines:
        return f"none in {steps} steps"
    where, most = lines.most_common(1)[0]
    return f"{sum(lines.values())} in {steps} steps, at most {most} at one line ({where})"


def steps_section(args, registry, found: dict) -> str:
    """FLOP/s against the card's bf16 peak; on CUDA also the idle share and the host syncs of a step."""
    peak = bf16_peak(args.device, args.peak_tflops)
    rows = []
    for name in MODELS:
        if name not in found:
            continue
        achieved = found[name]["flops"] * found[name]["compiled"] / 1e12
        rows.append([name, f"{achieved:,.2f}", "unknown" if peak is None else f"{achieved / peak:.1%} of {peak:,} "])
    text = (f"### Achieved TFLOP/s of `--amp --compile` (forward and backward FLOPs counted by torch)\n\n"
            f"{table(['model', 'TFLOP/s', 'share of the bf16 peak'], rows)}")
    if not args.device.startswith("cuda"):
        return text + "\n\nThe GPU's idle share and host syncs: n/a on a CPU."
    step = compiled_step(args.device, args.batch_size)
    idle = gpu_share(step, args.steps)
    return (f"{text}\n\n### A ResNet-18 `--amp --compile` step, batch {args.batch_size}\n\n"
            + table(["measure", "value"], [
                ["share of the step with no kernel on the GPU", f"{idle:.1%}"],
                ["host syncs in one step", syncs_in_a_step(step)],
                ["host syncs in a whole `zoo train --amp` run", syncs_in_a_run(registry, 30, args.batch_size)]]))


def accuracy_section(args) -> tuple[str, float | None]:
    """Seconds of training to 93 % on the full Fashion-MNIST: the recipe vs the lab loop."""
    [(_, _, config)] = Experiment.from_toml(RECIPE).runs(quick=args.quick)
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "fashion-mnist").symlink_to(Path(args.fashion_mnist).resolve(), target_is_directory=True)
        config = dataclasses.replace(config, data_dir=root, download=False,
                                     trainer_options={**config.trainer_options, "device": args.device})
        if args.quick:
            torch_compile_eagerly()
        zoo_timeline = zoo_points(config)
        progress(f"zoo: {zoo_timeline}")
        lab_timeline, images = lab_points(config, args.device, TARGET, args.lab_seconds)
        progress(f"lab: {lab_timeline}")
    rows = []
    for label, timeline in (("zoo, " + RECIPE.name, zoo_timeline), ("lab loop, same network and schedule", lab_timeline)):
        reached = first_reaching(timeline, TARGET)
        rows.append([label, "not reached" if reached is None else f"{reached:,.1f}", len(timeline),
                     f"{timeline[-1][0]:,.1f}", f"{max(a for _, a in timeline):.2%}"])
    return (f"### Time to {TARGET:.0%} test accuracy, Fashion-MNIST ({images:,} training images)\n\n"
            + table(["trainer", f"seconds of training to {TARGET:.0%}", "epochs run", "seconds run", "best accuracy"],
                    rows)), first_reaching(zoo_timeline, TARGET)


def goals(args, found: dict, to_target: float | None) -> str:
    resnet = found.get("resnet18")
    speedup = resnet["compiled"] / resnet["lab"] if resnet else None
    peak = bf16_peak(args.device, args.peak_tflops)
    share = resnet["flops"] * resnet["compiled"] / 1e12 / peak if resnet and peak else None
    h100 = args.device.startswith("cuda") and "H100" in torch.cuda.get_device_name()
    rows = [["`--amp --compile` >= 10x the lab loop's images/s, ResNet-18",
             "n/a" if speedup is None else f"{speedup:.1f}x", verdict(speedup, lambda v: v >= 10)],
            ["within 2x of the FLOP bound (>= 50 % of the bf16 peak), ResNet-18",
             "n/a" if share is None else f"{share:.1%}", verdict(share, lambda v: v >= 0.5)],
            [f"{TARGET:.0%} Fashion-MNIST in under 60 s on one H100",
             "not reached" if to_target is None else f"{to_target:,.1f} s",
             verdict(to_target, lambda v: v < 60) if h100 else "n/a (not an H100)"]]
    return "### Goals\n\n" + table(["goal", "measured", "met"], rows)


def verdict(value, test) -> str:
    return "n/a" if value is None else "yes" if test(value) else "no"


def torch_compile_eagerly() -> None:
    """--quick: torch.compile traces with dynamo but skips inductor's code generation (minutes on a CPU)."""
    if not isinstance(torch.compile, functools.partial):
        torch.compile = functools.partial(torch.compile, backend="eager")


def progress(text: str) -> None:
    print(f"[gpu check] {text}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fashion-mnist", required=True, help="The folder of Fashion-MNIST's four idx files.")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: the script end to end, numbers aside.")
    parser.add_argument("--sections", default="throughput,steps,accuracy",
                        help="Which to measure, of throughput,steps,accuracy; 'setup' for the versions alone.")
    parser.add_argument("--steps", type=int, help="Timed steps per measurement (100; --quick 2).")
    parser.add_argument("--batch-size", type=int, help="Throughput batch (256; --quick 8).")
    parser.add_argument("--lab-seconds", type=float, help="Stop the lab loop's race to 93 %% after this much "
                        "training (150; --quick 1 epoch).")
    parser.add_argument("--peak-tflops", type=float, help="The card's dense bf16 peak, where it is not in the table.")
    args = parser.parse_args()
    args.steps = args.steps or (2 if args.quick else 100)
    args.batch_size = args.batch_size or (8 if args.quick else 256)
    args.lab_seconds = args.lab_seconds or (1e-9 if args.quick else 150)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu.sh: this machine has no CUDA device; run it with --device cpu --quick here", file=sys.stderr)
        return 2
    wanted = set(args.sections.split(","))
    print(f"## GPU check: {torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}"
          f"{' (--quick: sizes for a smoke test, numbers mean nothing)' if args.quick else ''}\n\n"
          f"{machine()}; zoo from {SOURCE}, plugins {', '.join(sorted(zoo.default_registry().plugins))}.\n\n" + table(["package", "found", "zoo asks", "fits"], versions()))
    if args.quick:
        torch_compile_eagerly()
    failed, found, to_target = [], {}, None
    data = random_cifar((args.steps + WARMUP_STEPS) * args.batch_size)
    registry = registry_with(data)
    for section in ("throughput", "steps", "accuracy"):
        if section not in wanted:
            continue
        progress(f"{section} ...")
        try:
            if section == "throughput":
                text, found = throughput(args, registry, data)
            elif section == "steps":
                text = steps_section(args, registry, found)
            else:
                text, to_target = accuracy_section(args)
        except Exception as exc:  # one broken measure must not cost the others on a rare GPU machine
            failed.append(section)
            text = f"### {section}: failed\n\n`{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}`"
            progress(f"{section} failed:")
            traceback.print_exc()
        print(f"\n{text}", flush=True)
    if wanted & {"throughput", "accuracy"}:
        print(f"\n{goals(args, found, to_target)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
