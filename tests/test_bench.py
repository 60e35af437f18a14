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


@pytest.mark.slow
def test_throughput_compares_the_lab_loop_with_both_trainers():
    [table] = run_bench("throughput.py", "--models", "vgg_bn,resnet18", "--steps", "1", "--rounds", "2",
                        "--batch-size", "8", "--formats")
    assert table[0][:4] == ["model", "lab loop fp32 (img/s)", "zoo train fp32 (channels_last)",
                            "zoo train --amp (channels_last)"] and len(table[0]) == 6
    assert [row[0] for row in table[1:]] == ["vgg_bn", "resnet18"]
    for row in table[1:]:
        lab, fp32, amp = (number(cell) for cell in row[1:4])
        assert all(value > 0 for value in (lab, fp32, amp, number(row[4]), number(row[5])))
        for cell, value in ((row[2], fp32), (row[3], amp)):  # the ratio of the shown, rounded numbers
            assert float(cell.split("(")[1].rstrip("x)")) == pytest.approx(value / lab, abs=0.02)


def test_step_profile_splits_the_step_and_finds_every_convolution():
    split, kernels = run_bench("step_profile.py", "--model", "resnet18", "--batch-size", "4", "--steps", "1")
    assert [row[0] for row in split[1:]] == ["lab step, fp32 contiguous", "zoo train fp32", "zoo train --amp"]
    for row in split[1:]:
        step, forward, backward = number(row[1]), number(row[2]), number(row[3])
        assert 0 < forward + backward < step
    # ResNet-18: a stem, 16 convolutions in its blocks, 3 projection shortcuts
    assert sum(int(row[1]) for row in kernels[1:]) == 20
    assert all(number(cell) > 0 for row in kernels[1:] for cell in row[2:])


@pytest.mark.slow
def test_augment_startup_and_memory_tables():
    [augment] = run_bench("augment.py", "--batches", "2", "--batch-size", "8")
    assert [row[0] for row in augment[1:]] == ["zoo batched, on the device",
                                               "torchvision per sample, DataLoader 2 workers",
                                               "torchvision per sample, DataLoader 0 workers"]
    assert all(number(row[1]) > 0 for row in augment[1:])
    [startup] = run_bench("startup.py", "--repeat", "1")
    assert [row[0] for row in startup[1:]][1:4] == ["zoo --help", "zoo list", "zoo plugins"]
    assert all(number(row[1]) > 0 for row in startup[1:])
    [memory] = run_bench("memory.py", "--images", "256", "--steps", "2")
    peaks = {row[0]: number(row[1]) for row in memory[1:]}
    assert set(peaks) == {"zoo train fp32", "zoo train --amp", "lab loop, DataLoader 2 workers"}
    assert all(100 < mib < 20_000 for mib in peaks.values())  # torch alone is a few hundred MiB


@pytest.mark.slow
def test_time_to_accuracy_on_real_fashion_mnist():
    tables = run_bench("time_to_accuracy.py", "--epochs", "1", "--target", "0.6")
    rows = tables[0][1:]
    assert [row[0].split(" (")[0] for row in rows] == ["zoo train --amp", "lab loop"]
    # one epoch of a real network on real data passes 60 % (both reach about 77 %)
    assert all(number(row[2].rstrip("%")) > 60 and number(row[1]) > 0 for row in rows)
