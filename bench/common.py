"""Shared by the benchmark scripts: the machine, Markdown tables, in-memory data for zoo, and the
baseline: a training loop written the lab's way (per-sample Dataset, torchvision transforms on each
PIL image, DataLoader, fp32, a host sync per step)."""
from __future__ import annotations

import os
import platform
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

import zoo
from zoo import Dataset, hookimpl
from zoo.data.images import ImageData
from zoo.testing import fresh_registry
from zoo import SilentReporter

BUILTINS = ("vgg", "resnet", "se", "augment", "optim", "trainers", "datasets")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, zoo {zoo.__version__}, device {device}, "
            f"{torch.get_num_threads()} threads")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def random_cifar(n: int, seed: int = 0) -> ImageData:
    """CIFAR-shaped uint8 images with labels; throughput does not depend on the pixels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageData("random-cifar", images, labels, images[:512].clone(), labels[:512].clone(),
                     [str(i) for i in range(10)], CIFAR_MEAN, CIFAR_STD)


def registry_with(data: ImageData):
    """The built-in plugins plus a dataset plugin serving ``data`` from memory."""

    class InMemory:
        @hookimpl
        def datasets(self):
            return [Dataset("bench", lambda root=None, download=False: data, "in-memory benchmark data")]

    return fresh_registry({"bench": InMemory()}, installed=BUILTINS)


class StepClock(SilentReporter):
    """Timestamps the end of every training step, for steady-state images/s: a zoo reporter, and
    ``mark`` is the lab loop's ``on_step``."""

    def __init__(self, batch: int):
        self.batch = batch
        self.marks: list[tuple[int, float]] = []

    def mark(self, done: int) -> None:
        self.marks.append((done, time.perf_counter()))

    def step(self, done, loss, accuracy, images_per_s):
        self.mark(done)

    def images_per_s(self, warmup: int) -> float:
        """Over the steps after the first ``warmup`` ones (a mark at step ``warmup`` is needed: zoo
        marks at its log steps only, so the caller logs every ``warmup`` steps)."""
        (d0, t0), (d1, t1) = next(m for m in self.marks if m[0] == warmup), self.marks[-1]
        return (d1 - d0) * self.batch / (t1 - t0)


class LabDataset(torch.utils.data.Dataset):
    """One PIL image at a time through torchvision transforms, as the lab (and most tutorials) do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        image = self.images[index]
        image = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        return self.transform(image), self.labels[index]


def lab_transform(mean, std, padding: int = 4):
    from torchvision import transforms

    return transforms.Compose([transforms.RandomCrop(32, padding=padding), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor(), transforms.Normalize(mean, std)])


def lab_loader(data: ImageData, batch_size: int, workers: int = 2, padding: int = 4):
    dataset = LabDataset(data.train_images, data.train_labels, lab_transform(data.mean, data.std, padding))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       drop_last=True, persistent_workers=workers > 0)


def lab_train_epoch(model, loader, optimizer, device, on_step: Callable[[int], None] | None = None,
                    max_steps: int | None = None, scheduler=None) -> float:
    """The lab's loop: fp32, .item() every step. Returns the mean loss."""
    model.train()
    total, steps = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item()
        steps += 1
        if on_step:
            on_step(steps)
        if max_steps and steps >= max_steps:
            break
    return total / max(steps, 1)


def lab_evaluate(model, data: ImageData, device, batch_size: int = 500) -> float:
    model.eval()
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data.test_images), batch_size):
            x = (data.test_images[start:start + batch_size].float() / 255 - mean) / std
            correct += (model(x.to(device)).argmax(1).cpu() == data.test_labels[start:start + batch_size]).sum().item()
    return correct / len(data.test_images)
