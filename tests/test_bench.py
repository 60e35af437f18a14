"""The benchmark scripts run end to end at tiny sizes and print the tables docs/benchmarks.md shows.
Speeds are not asserted (they belong to the scripts' tables, not to tests); structure and sanity are."""
from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
NUMBER = re.compile(r"^[\d,.]+")


def run_bench(script: str, *args: str) -> list[list[list[str]]]:
    """Runs bench/<script> and returns its Markdown tables: a list of rows of cells, header first."""
    result = subprocess.run([sys.executable, script, *args], cwd=BENCH, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return markdown_tables(result.stdout)


def markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in text.splitlines():
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


# Each table script end to end, at tiny sizes on the CPU.
CPU_COMMANDS = {
    "throughput.py": ["--formats", "--device", "cpu", "--models", "vgg_bn,resnet18", "--steps", "1", "--rounds", "2",
                      "--batch-size", "8"],
    "augment.py": ["--device", "cpu", "--batches", "2", "--batch-size", "8"],
    "startup.py": ["--repeat", "1"],
}


@pytest.mark.slow
def test_the_throughput_augmentation_and_startup_tables():
    tables = {script: run_bench(script, *args) for script, args in CPU_COMMANDS.items()}

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


def bare_python(tmp_path: Path, with_pip: bool = True) -> Path:
    """A fresh venv that sees this one's packages but neither zoo nor this venv's pip: a GPU machine's
    Python, torch and friends preinstalled, zoo not. With pip, its own (the venv's), and setuptools this
    venv's (a bundled one may be too old for the pyproject's license field). Returns its python."""
    deps = tmp_path / "preinstalled"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("cnn_zoo", "zoo", "__editable__", "pip")):
            (deps / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(tmp_path / "venv")],
                   check=True, timeout=300)
    python = tmp_path / "venv" / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "preinstalled.pth").write_text(f"{deps}\n")
    if with_pip:
        subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True, timeout=300)
    return python


def gpu_check(python: Path, *args: str, data: Path) -> subprocess.CompletedProcess:
    """bash bench/gpu.sh with ``python`` as the machine's Python, no package index reachable."""
    env = {**os.environ, "PYTHON": str(python), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PYTHONPATH": ""}
    return subprocess.run(["bash", str(BENCH / "gpu.sh"), "--fashion-mnist", str(data), "--device", "cpu",
                           "--quick", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_the_gpu_check_installs_without_an_index_and_runs_end_to_end_on_the_cpu(tmp_path, real_fashion_mnist):
    python = bare_python(tmp_path)
    result = gpu_check(python, data=real_fashion_mnist)
    assert result.returncode == 0, result.stderr[-3000:]
    # zoo was installed into that Python, with its entry points: every built-in plugin is found
    found = subprocess.run([python, "-c", "import zoo; print(zoo.__file__)"], capture_output=True, text=True)
    assert Path(found.stdout.strip()).parent.parent == BENCH.parent
    assert "zoo from installed, plugins augment, datasets, export, loggers, optim, resnet, se" in result.stdout
    setup, speed, memory, flops, accuracy, goals = markdown_tables(result.stdout)
    assert {row[0]: row[3] for row in setup[1:]}["torch"] == "yes"
    assert speed[0] == ["model", "lab loop fp32", "zoo fp32", "zoo --amp", "zoo --amp --compile"]
    assert [row[0] for row in speed[1:]] == ["resnet18", "vgg16"]
    for row in speed[1:]:
        assert number(row[1]) > 0
        assert all(number(cell) > 0 and cell.endswith("x)") for cell in row[2:])  # images/s (ratio to the lab's)
    assert [row[1:] for row in memory[1:]] == [["n/a"] * 4] * 2  # peak CUDA memory: there is no CUDA here
    assert all(number(row[1]) >= 0 and row[2] == "unknown" for row in flops[1:])
    assert [row[0] for row in accuracy[1:]] == ["zoo, fashion-mnist-93.toml", "lab loop, same network and schedule"]
    assert all(row[2] == "1" and 0 < number(row[4].rstrip("%")) <= 100 for row in accuracy[1:])
    assert len(goals) == 4 and "failed" not in result.stdout


@pytest.mark.slow
def test_the_gpu_check_runs_zoo_from_the_source_tree_where_pip_cannot_install_it(tmp_path):
    result = gpu_check(bare_python(tmp_path, with_pip=False), "--sections", "setup", data=tmp_path / "not-read")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pip could not install zoo here" in result.stderr  # this Python has no pip
    assert "zoo from the source tree (pip could not install it), plugins augment, datasets, export" in result.stdout
