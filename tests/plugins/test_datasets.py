"""The dataset plugin (zoo_datasets): CIFAR's original batches, Fashion-MNIST's idx files, image folders, downloads."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import zoo
from zoo.base.errors import UserError
from zoo.io.weights import load_model

from conftest import picture_folder, run_zoo


def test_cifar_loader_reads_the_original_batch_format(cifar_dir):
    data = zoo.default_registry().get("data", "cifar10").load()(root=cifar_dir, download=False)
    assert data.train_images.shape == (100, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (20, 3, 32, 32) and data.test_labels.dtype == torch.int64
    assert data.classes[:2] == ["airplane", "automobile"] and data.num_classes == 10
    batch = pickle.loads((cifar_dir / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="bytes")
    assert torch.equal(data.train_images[0].flatten(), torch.from_numpy(batch[b"data"][0]))
    assert data.train_labels[:20].tolist() == batch[b"labels"]


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_loader_refuses_a_pickle_that_runs_code(cifar_dir, tmp_path):
    marker = tmp_path / "pwned"
    crafted = {b"data": _RunsCode(str(marker)), b"labels": [0]}
    (cifar_dir / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(crafted, protocol=2))
    with pytest.raises(UserError, match=r"data_batch_3 is not a CIFAR batch \(refusing to load posix.system\)"):
        zoo.default_registry().get("data", "cifar10").load()(root=cifar_dir, download=False)
    assert not marker.exists()


def test_fashion_mnist_sample_ships_real_images():
    data = zoo.default_registry().get("data", "fashion-mnist-sample").load()()
    assert data.train_images.shape == (5000, 1, 32, 32) and len(data.test_images) == 1000
    assert torch.bincount(data.train_labels).tolist() == [500] * 10
    assert data.train_images[:, :, 2:30, 2:30].float().mean() > 50  # real pictures, zero-padded to 32


def test_cifar10_default_without_files_or_network_says_where_to_put_them(tmp_path):
    result = run_zoo("train", "se-vgg16", "--aug", "hflip", "--data-dir", str(tmp_path / "empty"), "--no-download",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cifar-10-batches-py" in result.stderr
    assert "--data fashion-mnist-sample" in result.stderr
    assert not (tmp_path / "weights").exists() and not (tmp_path / "runs").exists()


def test_imagefolder_reads_a_folder_per_class(tmp_path):
    from PIL import Image

    for split, count in (("train", 6), ("val", 2)):
        for cls, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            folder = tmp_path / "pics" / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20 + i, 24), colour).save(folder / f"{i}.png")
    (tmp_path / "pics" / "train" / "red" / "notes.txt").write_text("not an image, skipped")
    data = zoo.default_registry().get("data", "imagefolder").load()(root=tmp_path / "pics")
    assert data.classes == ["blue", "red"] and data.train_images.shape == (12, 3, 32, 32)
    assert len(data.test_images) == 4
    red = data.train_images[data.train_labels == 1]
    assert red[:, 0].float().mean() > 250 and red[:, 2].float().mean() < 5
    assert data.std[1] == pytest.approx(1 / 255)  # no green at all: normalised to 0, not to NaN
    (tmp_path / "pics" / "train" / "green").mkdir()
    with pytest.raises(UserError, match="class folder.* green in .* hold no images"):
        zoo.default_registry().get("data", "imagefolder").load()(root=tmp_path / "pics")
    (tmp_path / "pics" / "train" / "green").rmdir()
    (tmp_path / "pics" / "val" / "red" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png is not a readable image"):
        zoo.default_registry().get("data", "imagefolder").load()(root=tmp_path / "pics")


def test_imagefolder_refuses_test_classes_it_cannot_learn_and_records_itself_as_the_dataset(tmp_path):
    pics = picture_folder(tmp_path / "cifar10")  # a folder named like a built-in dataset
    picture_folder(pics, splits=(("test", 2),), classes=("green",))
    with pytest.raises(UserError, match="class folder.* green in .*test are not in .*train"):
        zoo.default_registry().get("data", "imagefolder").load()(root=pics)
    import shutil

    shutil.rmtree(pics / "test" / "green")
    result = run_zoo("train", "vgg_bn", "--data", "imagefolder", "--data-dir", str(pics), "--set", "layout=8,M",
                     "--epochs", "1", "--batch-size", "4", "--aug", "none", "--out", "w.safetensors", "--run-dir", "r",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_model(tmp_path / "w.safetensors").zoo_meta["dataset"] == "imagefolder"
    evaluated = run_zoo("eval", "w.safetensors", "--data-dir", str(pics), "--json", cwd=tmp_path)
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["data"] == "imagefolder", evaluated.stderr
