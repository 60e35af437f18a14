"""The benchmark scripts run end to end at tiny sizes and print the tables docs/benchmarks.md shows.
Speeds are not asserted (they belong to the scripts' tables, not to tests); structure and sanity are."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
NUMBER = re.compile(r"^[\d,.]+")


def run_bench(script: str, *args: str) -> list[list[list[str]]]:
    """Runs bench/<script> and returns its Markdown tables: a list of rows of cells, header first."""
    result = subprocess.run([sys.executable, script, *args], cwd=BENCH, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    tables, current = [], None
    for line in result.stdout.splitlines():
        if line.startswith("| "):
            if current is None:
                current = []
                tables.append(current)
            if not line.startswith("| ---"):
                current.append([cell.strip() for cell in line.strip("|").split("|")])
        else:
            current = None
    return tables


def number(cell: str) -> float:
    """The leading number of a cell such as '1,234 (1.52x)'."""
    return float(NUMBER.match(cell).group().replace(",", ""))


# What each script of bench/gpu.sh gets on top of its CUDA arguments here: the CPU, tiny sizes.
CPU_OVERRIDES = {
    "throughput.py": ["--device", "cpu", "--models", "vgg_bn,resnet18", "--steps", "1", "--rounds", "2",
                      "--batch-size", "8"],
    "augment.py": ["--device", "cpu", "--batches", "2", "--batch-size", "8"],
    "startup.py": ["--repeat", "1"],
}


def gpu_script_commands() -> list[tuple[str, list[str]]]:
    """The benchmark commands of bench/gpu.sh, as (script, arguments)."""
    commands = []
    for line in (BENCH / "gpu.sh").read_text().splitlines():
        words = line.split()
        if "python" in words and words[words.index("python") + 1].endswith(".py"):
            at = words.index("python") + 1
            commands.append((words[at], words[at + 1:]))
    return commands


@pytest.mark.slow
def test_the_gpu_script_commands_run_here_on_the_cpu():
    """Every command of bench/gpu.sh, as written there (argparse keeps the last of a repeated option,
    so the CPU overrides win), prints its table: a typo would otherwise surface on a rare GPU session."""
    tables = {script: run_bench(script, *args, *CPU_OVERRIDES[script]) for script, args in gpu_script_commands()}
    assert set(tables) == set(CPU_OVERRIDES)

    [throughput] = tables["throughput.py"]
    assert throughput[0][:4] == ["model", "lab loop fp32 (img/s)",
                                 "zoo train fp32 (channels_last, maps under 8x8 contiguous)",
                                 "zoo train --amp (channels_last, maps under 8x8 contiguous)"]
    assert throughput[0][4:] == ["zoo fp32 (contiguous)", "zoo amp (contiguous)"]  # --formats
    assert [row[0] for row in throughput[1:]] == ["vgg_bn", "resnet18"]
    for row in throughput[1:]:
        lab, fp32, amp = (number(cell) for cell in row[1:4])
        assert all(value > 0 for value in (lab, fp32, amp, number(row[4]), number(row[5])))
        for cell, value in ((row[2], fp32), (row[3], amp)):
            # the ratio of the unrounded numbers, shown to two decimals: within what rounding allows
            ratio = float(cell.split("(")[1].rstrip("x)"))
            assert (value - 0.5) / (lab + 0.5) - 0.005 <= ratio <= (value + 0.5) / (lab - 0.5) + 0.005

    [augment] = tables["augment.py"]
    assert [row[0] for row in augment[1:]] == ["zoo batched, on the device",
                                               "torchvision per sample, DataLoader 2 workers",
                                               "torchvision per sample, DataLoader 0 workers"]
    assert all(number(row[1]) > 0 for row in augment[1:])
    [startup] = tables["startup.py"]
    assert [row[0] for row in startup[1:]][1:4] == ["zoo --help", "zoo list", "zoo plugins"]
    assert all(number(row[1]) > 0 for row in startup[1:])


def test_step_profile_splits_the_step_and_finds_every_convolution():
    split, kernels = run_bench("step_profile.py", "--model", "resnet18", "--batch-size", "4", "--steps", "1")
    assert [row[0] for row in split[1:]] == ["lab step, fp32 contiguous", "zoo train fp32", "zoo train --amp"]
    for row in split[1:]:
        step, forward, backward = number(row[1]), number(row[2]), number(row[3])
        # the convolutions are part of the step; the profiler's op times and the step's wall time come
        # from different clocks, and on a loaded machine they once disagreed by a little
        assert 0 < forward + backward < 1.25 * step
    # ResNet-18: a stem, 16 convolutions in its blocks, 3 projection shortcuts
    assert sum(int(row[1]) for row in kernels[1:]) == 20
    assert all(number(cell) > 0 for row in kernels[1:] for cell in row[2:])


@pytest.mark.slow
def test_memory_table():
    [memory] = run_bench("memory.py", "--images", "256", "--steps", "2")
    peaks = {row[0]: number(row[1]) for row in memory[1:]}
    assert set(peaks) == {"zoo train fp32", "zoo train --amp", "lab loop, DataLoader 2 workers"}
    assert all(100 < mib < 20_000 for mib in peaks.values())  # torch alone is a few hundred MiB


@pytest.mark.slow
def test_time_to_accuracy_on_real_fashion_mnist(real_fashion_mnist):
    tables = run_bench("time_to_accuracy.py", "--epochs", "1", "--target", "0.6", "--train-limit", "15000")
    rows = tables[0][1:]
    assert [row[0].split(" (")[0] for row in rows] == ["zoo train --amp", "lab loop"]
    # one epoch of a real network on a quarter of the real data passes 60 % (both reach about 75 %)
    assert all(number(row[2].rstrip("%")) > 60 and number(row[1]) > 0 for row in rows)
