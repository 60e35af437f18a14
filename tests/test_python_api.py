"""zoo.train from a notebook: a torch module and dataset objects given directly, not by name."""
from __future__ import annotations

import json
import re

import numpy
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import zoo
from conftest import run_zoo

# Each test trains in a folder of its own: default run names are made in the working folder.
pytestmark = pytest.mark.usefixtures("_in_tmp")


@pytest.fixture
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


class SmallNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(self.body(x))


class Images(torch.utils.data.Dataset):
    """A map-style dataset as people write them: PIL images (or tensors) and int labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes=None, as_float: bool = False):
        self.images, self.labels, self.as_float = images, labels, as_float
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from torchvision.transforms.functional import to_pil_image

        image = self.images[i]
        return (image.float() / 255 if self.as_float else to_pil_image(image)), int(self.labels[i])


@pytest.fixture(scope="module")
def sample():
    """The 5,000 + 1,000 real Fashion-MNIST images shipped with zoo, as an ImageData."""
    return zoo.default_registry().get("data", "fashion-mnist-sample").load()(root=None, download=False)


RECIPE = dict(epochs=2, batch_size=50, augs=[], opt="adam", lr=3e-3, warmup=0.0, eval_batch_size=500)


def test_a_module_trains_in_place_on_real_data_and_its_weights_load_into_a_new_one(sample):
    torch.manual_seed(0)
    net = SmallNet()
    summary = zoo.train(model=net, data=sample.subset(3000, 1000), **RECIPE)
    assert summary["test_accuracy"] > 0.7  # real Fashion-MNIST: the module itself learned
    assert summary["model"] == "python:test_python_api.SmallNet"
    fresh = SmallNet()
    fresh.load_state_dict(load_file(summary["weights"]))  # plain safetensors, the module's own keys
    net = net.cpu().eval()
    x = sample.test_images[:8].float() / 255
    assert torch.allclose(fresh.eval()(x), net(x))
    config = json.loads(open(summary["run_dir"] + "/config.json").read())
    assert config["model"] == "python:test_python_api.SmallNet" and config["data"] == "python:fashion-mnist-sample"


def test_a_pair_of_torch_datasets_trains_exactly_as_the_same_images_in_memory(sample):
    pair = (Images(sample.train_images[:500], sample.train_labels[:500], list(sample.classes)),
            Images(sample.test_images[:200], sample.test_labels[:200], as_float=True))
    data = zoo.ImageData.from_datasets(*pair)
    assert torch.equal(data.train_images, sample.train_images[:500])
    assert torch.equal(data.test_images, sample.test_images[:200])  # floats in [0, 1] back to the same bytes
    assert list(data.classes) == list(sample.classes) and data.name == "Images"
    runs = []
    for given in (pair, data):
        torch.manual_seed(0)
        runs.append(zoo.train(model=SmallNet(), data=given, **{**RECIPE, "epochs": 1}))
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]
    assert runs[0]["test_loss"] == runs[1]["test_loss"]


def test_a_run_of_objects_resumes_from_python_and_is_refused_by_name_on_the_cli(sample, tmp_path):
    data = sample.subset(300, 100)
    torch.manual_seed(0)
    net = SmallNet()
    first = zoo.train(model=net, data=data, run_dir="run", **{**RECIPE, "epochs": 1})
    resumed = zoo.train(model=net, data=data, resume="run", epochs=2)
    assert resumed["epochs"] == 2
    assert len(open(tmp_path / "run" / "metrics.jsonl").read().splitlines()) == 2
    weights = first["weights"]
    with pytest.raises(zoo.UserError, match="given to zoo.train as a module.*load_state_dict"):
        zoo.load_model(weights)
    for args in (("eval", weights), ("train", "--resume", "run")):
        result = run_zoo(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "given to zoo.train" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_named_model_trains_on_a_dataset_object(sample):
    summary = zoo.train(model="vgg_bn", data=sample.subset(200, 100), model_options={"layout": [8, "M", 16, "M"]},
                        **{**RECIPE, "epochs": 1})
    assert summary["model"] == "vgg_bn" and summary["data"] == "fashion-mnist-sample"
    rebuilt = zoo.load_model(summary["weights"])  # a named model is rebuilt from its weights as always
    assert rebuilt.zoo_meta["classes"] == list(sample.classes)


@pytest.mark.parametrize("call, message", [
    (lambda data: zoo.train(model=SmallNet(classes=3), data=data, batch_size=50), r"gives \(3,\) outputs.*10 classes"),
    (lambda data: zoo.train(model=SmallNet(), data=data, pretrained="default"), "trained as it is"),
    (lambda data: zoo.train(model=SmallNet(), data=data, data_options={"image_size": 64}), "used as it is"),
    (lambda data: zoo.train(model=SmallNet(), data=data.train_images), "data must be"),
    (lambda data: zoo.train(model=SmallNet(), data=data, epoch=3), "unknown option epoch"),
])
def test_objects_that_cannot_train_are_one_clear_error(sample, call, message):
    with pytest.raises(zoo.UserError, match=message):
        call(sample.subset(100, 50))


def test_datasets_zoo_cannot_hold_as_images_are_refused_with_the_fix():
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(4)
    normalised = [((images[i].float() / 255 - 0.5) / 0.25, int(labels[i])) for i in range(4)]
    with pytest.raises(zoo.UserError, match="leave Normalize out"):
        zoo.ImageData.from_datasets(Images(images, labels), ListDataset(normalised))
    mixed = ListDataset([(images[0], 0), (torch.zeros(1, 9, 9, dtype=torch.uint8), 1)])
    with pytest.raises(zoo.UserError, match=r"item 1 is \(1, 9, 9\) but the first is \(1, 8, 8\)"):
        zoo.ImageData.from_datasets(mixed, mixed)
    with pytest.raises(zoo.UserError, match="map-style dataset"):
        zoo.ImageData.from_datasets(Images(images, labels), ListDataset([]))
    with pytest.raises(zoo.UserError, match=r"the test set has label 3, but its classes are 2 \(0..1\)"):
        zoo.ImageData.from_datasets(Images(images, labels % 2, classes=["cat", "dog"]), Images(images, labels))
    for label in ("cat", -1, 0.5):
        with pytest.raises(zoo.UserError, match=rf"the train set's item 1 has label {re.escape(repr(label))}; labels "
                                                "are class indices"):
            zoo.ImageData.from_datasets(ListDataset([(images[0], 0), (images[1], label)]), Images(images, labels))
    data = zoo.ImageData.from_datasets(ListDataset([(images[i], numpy.int64(i)) for i in range(4)]),
                                       ListDataset([(images[i], torch.tensor(i)) for i in range(4)]))
    assert data.train_labels.tolist() == data.test_labels.tolist() == [0, 1, 2, 3]


def test_a_torchvision_dataset_is_taken_as_it_comes():
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    train, test = FakeData(40, (3, 12, 12), 4, random_offset=0), FakeData(20, (3, 12, 12), 4, random_offset=40)
    data = zoo.ImageData.from_datasets(train, test)
    assert data.train_images.shape == (40, 3, 12, 12) and data.name == "FakeData"
    assert data.classes == [str(i) for i in range(data.num_classes)] and data.num_classes <= 4
    assert torch.equal(data.train_images[7], pil_to_tensor(train[7][0]))  # FakeData draws item 7 the same again


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_messages_name_python_parameters_in_python_and_flags_on_the_command_line(sample, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(zoo.UserError, match="choose another `run_dir` or pass `overwrite`"):
        zoo.train(model="vgg_bn", data=sample, run_dir="taken")
    result = run_zoo("train", "vgg_bn", "--data", "fashion-mnist-sample", "--run-dir", "taken", cwd=tmp_path)
    assert result.returncode == 2 and "choose another --run-dir or pass --overwrite" in result.stderr
    result = run_zoo("train", "vgg_bn", "--data", "fashion-mnist-sample", "--run-dir", "taken", "--overwrite",
                     cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite: " in result.stderr and "choose another --run-dir" in result.stderr
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
