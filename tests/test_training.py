"""Training: data readers, augmentations, optimizers, schedules, weights, resume and reproducibility."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import UserError
from zoo import RunConfig, train
from zoo.weights import load_model

from conftest import StopAtEpoch, run_zoo

TINY_VGG = {"layout": "8,M,16,M", "width": 1.0}


def tiny_config(**changes) -> RunConfig:
    base = dict(model="vgg_bn", data="cifar10", augs=["crop=2", "hflip"], epochs=2, batch_size=20, lr=0.05,
                model_options=dict(TINY_VGG), eval_batch_size=64)
    base.update(changes)
    return RunConfig(**base)


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


def _augmentation(name, **options):
    return zoo.default_registry().get("aug", name).load()(**options)


@pytest.mark.parametrize("name, options", [("hflip", {}), ("crop", {"padding": 4}), ("rotate", {"degrees": 30}),
                                           ("cutout", {"size": 8}), ("jitter", {"strength": 0.4})])
def test_augmentations_keep_shape_dtype_labels_and_differ_per_sample(name, options):
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32)
    x, y = image.repeat(64, 1, 1, 1), torch.arange(64)
    out, labels = _augmentation(name, **options)(x.clone(), y)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.equal(labels, y)
    distinct = {tuple(o.flatten()[:2048].tolist()) for o in out}
    assert len(distinct) > 1  # per-sample randomness: identical inputs, different outputs


def test_label_alignment_survives_geometric_augmentations():
    # Image i is filled with the value of its label: any mix-up of samples would show.
    y = torch.randperm(16)
    x = (y.float() / 16).view(-1, 1, 1, 1).expand(16, 3, 8, 8).contiguous()
    for name in ("hflip", "crop", "rotate", "cutout"):
        out, labels = _augmentation(name)(x.clone(), y)
        for image, label in zip(out, labels):
            values = image.unique()
            assert set(values.tolist()) <= {0.0, float(label) / 16} or torch.allclose(values.max(), label.float() / 16)


def test_hflip_flips_exactly_the_images_it_draws_and_normalising_is_the_textbook_formula():
    x = torch.rand(16, 3, 8, 8)
    torch.manual_seed(3)
    expected = torch.where((torch.rand(16) < 0.5)[:, None, None, None], x.flip(3), x)
    torch.manual_seed(3)
    out, _ = _augmentation("hflip")(x.clone(), torch.arange(16))
    assert torch.equal(out, expected) and 0 < (out != x).flatten(1).any(1).sum() < 16
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    textbook = (images / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(zoo.Normalize(mean, std)(images), textbook)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_batch_mixing_augmentations_mix_labels(name):
    torch.manual_seed(1)
    x = torch.rand(32, 3, 16, 16)
    y = torch.nn.functional.one_hot(torch.arange(32) % 10, 10).float()
    out, soft = _augmentation(name)(x, y)
    assert out.shape == x.shape and soft.shape == (32, 10)
    torch.testing.assert_close(soft.sum(1), torch.ones(32))
    assert (soft.max(1).values < 1).any()


def test_every_optimizer_and_schedule_builds_and_steps():
    registry = zoo.default_registry()
    names = [s.name for s in registry.items("opt") if "/" not in s.name] + ["timm/lamb", "timm/adamp", "timm/momentum"]
    for name in names:
        model = torch.nn.Linear(4, 2)
        before = model.weight.detach().clone()
        optimizer = registry.get("opt", name).load()(model.parameters(), lr=0.1, weight_decay=1e-4)
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
        assert not torch.equal(before, model.weight), name
    for spec in registry.items("sched"):
        factor = spec.load()(epochs=50)
        values = [factor(t / 2) for t in range(100)]
        assert all(0 <= v <= 1 for v in values) and values[0] > 0, spec.name


def test_multistep_reproduces_the_labs_learning_rates():
    factor = zoo.default_registry().get("sched", "multistep").load()(epochs=50, milestones=[20, 30, 40], gamma=0.1)
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.005)
    reference = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[20, 30, 40], gamma=0.1)
    for epoch in range(50):
        expected = optimizer.param_groups[0]["lr"]
        for within in (0.0, 0.5, 0.99):
            assert 0.005 * factor(epoch + within) == pytest.approx(expected, rel=1e-9), epoch
        optimizer.step()
        reference.step()
    assert 0.005 * factor(45) == pytest.approx(5e-6)


def test_a_run_writes_config_metrics_and_weights_that_rebuild_the_model(cifar_dir, tmp_path):
    config = tiny_config(data_dir=str(cifar_dir), model="se-vgg_bn", model_options={**TINY_VGG, "se": {"reduction": 4}})
    summary = train(config, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == "se-vgg_bn" and saved["augs"] == ["crop=2", "hflip"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds", "images_per_s"} <= set(lines[0])
    assert summary["test_accuracy"] == lines[-1]["test_accuracy"]

    model = load_model(tmp_path / "w.safetensors")  # nothing else given
    assert model.zoo_meta["classes"][0] == "airplane" and model.zoo_meta["dataset"] == "cifar10"
    rebuilt = zoo.create_model("se-vgg_bn", num_classes=10, input_size=32, **TINY_VGG, se={"reduction": 4}).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model(x), rebuilt(x))


def _comparable(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s", "eval_seconds")} for r in records]


def test_two_equal_runs_give_identical_metrics(cifar_dir, tmp_path):
    config = tiny_config(data_dir=str(cifar_dir), augs=["crop=2", "hflip", "rotate=10", "mixup"])
    train(config, run_dir=tmp_path / "a", weights=tmp_path / "a.safetensors")
    train(config, run_dir=tmp_path / "b", weights=tmp_path / "b.safetensors")
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# Every optimizer zoo offers. timm's lamb keeps a tensor in its parameter groups, adafactorbv a dtype,
# kron tuples and lists of tensors; lamb's trust ratio sums its state in the state's memory format.
@pytest.mark.parametrize("opt", [spec.name for spec in zoo.default_registry().items("opt")])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(cifar_dir, tmp_path, opt):
    config = tiny_config(data_dir=str(cifar_dir), epochs=3, opt=opt, lr=0.01)
    train(config, run_dir=tmp_path / "full", weights=tmp_path / "full.safetensors")
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "cut", weights=tmp_path / "cut.safetensors", reporter=StopAtEpoch(2))
    assert not (tmp_path / "cut.safetensors").exists()
    train(config, resume=tmp_path / "cut")
    assert _comparable(tmp_path / "full") == _comparable(tmp_path / "cut")
    full, cut = load_model(tmp_path / "full.safetensors"), load_model(tmp_path / "cut.safetensors")
    for (name, a), b in zip(full.state_dict().items(), cut.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(UserError, match="cannot resume .* other lr"):
        train(tiny_config(data_dir=str(cifar_dir), epochs=3, opt=opt, lr=0.02), resume=tmp_path / "cut")


def test_amp_trainer_trains_in_bf16_on_cpu(cifar_dir, tmp_path):
    summary = train(tiny_config(data_dir=str(cifar_dir), trainer="amp", epochs=1),
                    run_dir=tmp_path / "r", weights=tmp_path / "w.safetensors")
    meta = load_model(tmp_path / "w.safetensors").zoo_meta
    assert meta["trainer"]["precision"] == "bf16" and meta["trainer"]["channels_last"] is True
    assert 0 <= summary["test_accuracy"] <= 1


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_weights(cifar_dir, tmp_path):
    eager = train(tiny_config(data_dir=str(cifar_dir), epochs=1), run_dir=tmp_path / "e", weights=tmp_path / "e.safetensors")
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = train(tiny_config(data_dir=str(cifar_dir), epochs=1, trainer_options={"compile": True}),
                     run_dir=tmp_path / "c", weights=tmp_path / "c.safetensors")
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled the model
    assert load_model(tmp_path / "c.safetensors").zoo_meta["trainer"]["compile"] is True
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-3)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "e.safetensors"), load_file(tmp_path / "c.safetensors")
    assert a.keys() == b.keys()  # no torch.compile "_orig_mod." prefix
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)


def test_on_cpus_small_feature_maps_stay_contiguous_unless_channels_last_is_asked_for():
    from zoo import BaseTrainer, prepare_model

    def formats(trainer):
        torch.manual_seed(0)
        model = prepare_model(trainer, zoo.create_model("vgg_bn", layout="8,M,16,M,16,M,16", num_classes=10,
                                                        input_size=32), (3, 32, 32))
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        return model, [conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in convs]

    default, chosen = formats(BaseTrainer("cpu")), formats(BaseTrainer("cpu", channels_last=True))
    # the convolutions see 32x32, 16x16, 8x8 and 4x4 maps: only the last is under 8 pixels
    assert default[1] == [True, True, True, False] and chosen[1] == [True, True, True, True]
    assert BaseTrainer("cpu").describe()["contiguous_below"] == 8
    assert BaseTrainer("cpu", channels_last=True).describe()["contiguous_below"] == 0
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = default[0].train()(x)
    y.sum().backward()  # the contiguous layer trains like the others
    torch.testing.assert_close(y, chosen[0].train()(x), rtol=1e-4, atol=1e-5)


def test_the_python_api_trains(cifar_dir, tmp_path):
    summary = zoo.train(zoo.RunConfig(model="vgg_bn", data="cifar10", data_dir=str(cifar_dir), epochs=1, batch_size=20,
                                      model_options=TINY_VGG), run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    assert zoo.load_model(summary["weights"]).zoo_meta["metrics"]["test_accuracy"] == summary["test_accuracy"]


@pytest.mark.parametrize("trainer", ["fp32", "amp"])
def test_cli_train_eval_predict(cifar_dir, tmp_path, trainer):
    weights = tmp_path / "w.safetensors"
    result = run_zoo("train", "vgg_bn", "--data", "cifar10", "--data-dir", str(cifar_dir), "--epochs", "1",
                     "--batch-size", "20", "--set", "layout=8,M,16,M", "--aug", "crop=2", "--aug", "hflip",
                     "--sched", "multistep=[1]", "--opt", "sgd-momentum", "--trainer", trainer, "--out", str(weights),
                     "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["weights"] == str(weights) and weights.exists()
    assert "epoch   1/1" in result.stderr
    report = json.loads(run_zoo("eval", str(weights), "--data-dir", str(cifar_dir), "--json").stdout)
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"]) and len(report["per_class_accuracy"]) == 10
    # the same precision and memory formats as the run's own evaluation: the same loss, not a close one
    assert report["loss"] == pytest.approx(summary["test_loss"], rel=1e-6)
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "red.png")
    top = json.loads(run_zoo("predict", str(weights), str(tmp_path / "red.png"), "--top-k", "2", "--json").stdout)
    assert len(top[0]["top"]) == 2 and top[0]["top"][0]["class"] in report["per_class_accuracy"]


def test_cifar10_default_without_files_or_network_says_where_to_put_them(tmp_path):
    result = run_zoo("train", "se-vgg16", "--aug", "hflip", "--data-dir", str(tmp_path / "empty"), "--no-download",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cifar-10-batches-py" in result.stderr
    assert "--data fashion-mnist-sample" in result.stderr
    assert not (tmp_path / "weights").exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_real_fashion_mnist_reaches_88_percent_through_the_cli(tmp_path, real_fashion_mnist):
    result = run_zoo("train", "vgg_bn", "--data", "fashion-mnist", "--set", "layout=32,M,64,M,128,M", "--epochs", "4",
                     "--batch-size", "128", "--lr", "0.1", "--sched", "onecycle", "--warmup", "0", "--aug", "crop=2",
                     "--amp", "--json", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["test_accuracy"] >= 0.88


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


def test_data_dir_comes_from_the_environment(cifar_dir, tmp_path):
    result = run_zoo("train", "vgg_bn", "--set", "layout=8,M", "--epochs", "1", "--batch-size", "20", "--no-download",
                     "--json", env={"ZOO_DATA_DIR": str(cifar_dir)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == "cifar10"


def test_predict_shapes_images_as_training_did(tmp_path):
    """A Fashion-MNIST model saw 28x28 images zero-padded to 32: predict pads a 28x28 picture the same way, so
    its answer equals the model's on the training tensor."""
    from PIL import Image

    weights = tmp_path / "w.safetensors"
    result = run_zoo("train", "vgg_bn", "--data", "fashion-mnist-sample", "--set", "layout=8,M,16,M", "--epochs", "1",
                     "--out", str(weights), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model = load_model(weights)
    assert model.zoo_meta["padded_from"] == 28
    data = zoo.default_registry().get("data", "fashion-mnist-sample").load()()
    picture = data.test_images[0, 0, 2:30, 2:30].numpy()
    Image.fromarray(picture).save(tmp_path / "item.png")
    x = (data.test_images[:1].float() / 255 - 0.2860) / 0.3530
    with torch.inference_mode():
        expected = model(x).softmax(1)[0]
    top = json.loads(run_zoo("predict", str(weights), str(tmp_path / "item.png"), "--top-k", "1", "--json").stdout)
    best = top[0]["top"][0]
    assert best["class"] == data.classes[int(expected.argmax())]
    assert best["probability"] == pytest.approx(float(expected.max()), abs=1e-5)


@pytest.mark.parametrize("opt, lr", [("sgd-nesterov", 0.05), ("adam", 1e-3), ("timm/lion", 1e-4), ("timm/sgdp", 0.05)])
def test_each_optimizer_brings_its_learning_rate_unless_one_is_given(opt, lr):
    from zoo.config import with_defaults

    registry = zoo.default_registry()
    assert with_defaults(RunConfig(opt=opt), registry).lr == lr
    assert with_defaults(RunConfig(opt=opt, lr=0.3), registry).lr == 0.3


def test_without_normalisation_the_model_sees_pixels_in_0_1_and_the_weights_say_so(cifar_dir, tmp_path):
    train(tiny_config(data_dir=str(cifar_dir), epochs=1, normalize=False), run_dir=tmp_path / "r",
          weights=tmp_path / "w.safetensors")
    meta = load_model(tmp_path / "w.safetensors").zoo_meta
    assert meta["mean"] == [0.0, 0.0, 0.0] and meta["std"] == [1.0, 1.0, 1.0]
    result = run_zoo("eval", str(tmp_path / "w.safetensors"), "--data-dir", str(cifar_dir), "--json")
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(meta["metrics"]["test_accuracy"])


def test_checkpointing_every_n_epochs_still_resumes_exactly(cifar_dir, tmp_path):
    config = tiny_config(data_dir=str(cifar_dir), epochs=4, checkpoint_every=2)
    train(config, run_dir=tmp_path / "full", weights=tmp_path / "full.safetensors")
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 1: nothing checkpointed yet
        train(config, run_dir=tmp_path / "cut", weights=tmp_path / "cut.safetensors", reporter=StopAtEpoch(1))
    assert not (tmp_path / "cut" / "checkpoint.safetensors").exists()
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 3: resumes from epoch 2's checkpoint
        train(config, resume=tmp_path / "cut", reporter=StopAtEpoch(3))
    train(config, resume=tmp_path / "cut")
    assert _comparable(tmp_path / "full") == _comparable(tmp_path / "cut")
    full, cut = load_model(tmp_path / "full.safetensors"), load_model(tmp_path / "cut.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), cut.state_dict().values()))


def _picture_folder(root: Path, splits=(("train", 6), ("test", 2)), classes=("blue", "red")) -> Path:
    from PIL import Image

    colours = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}
    for split, count in splits:
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (20, 24), colours[cls]).save(folder / f"{i}.png")
    return root


def test_imagefolder_refuses_test_classes_it_cannot_learn_and_records_itself_as_the_dataset(tmp_path):
    pics = _picture_folder(tmp_path / "cifar10")  # a folder named like a built-in dataset
    _picture_folder(pics, splits=(("test", 2),), classes=("green",))
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


def test_eval_refuses_data_of_another_input_size(cifar_dir, tmp_path):
    pics = _picture_folder(tmp_path / "pics")
    trained = run_zoo("train", "vgg_bn", "--data", "imagefolder", "--data-dir", str(pics), "--set", "layout=8,M",
                      "--epochs", "1", "--batch-size", "4", "--aug", "none", "--out", "w.safetensors", "--run-dir",
                      "r", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    meta_path = tmp_path / "w.safetensors"
    from conftest import rewrite_metadata

    rewrite_metadata(meta_path, tmp_path / "w64.safetensors",
                     lambda d: d.update(input_size=64) or d["options"].update(input_size=64))
    result = run_zoo("eval", "w64.safetensors", "--data-dir", str(pics), cwd=tmp_path)
    assert result.returncode == 2 and "was trained on 64x64 images; imagefolder has 32x32" in result.stderr


def test_overwrite_keeps_the_mode_the_umask_gives(cifar_dir, tmp_path):
    out = tmp_path / "w.safetensors"
    out.write_text("old")
    out.chmod(0o644)
    train(tiny_config(data_dir=str(cifar_dir), epochs=1), run_dir=tmp_path / "r", weights=out, overwrite=True)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask and load_model(out).zoo_meta["model"] == "vgg_bn"


def test_biases_and_norm_weights_are_exempt_from_weight_decay_unless_asked(tmp_path):
    from zoo.config import Run

    model = zoo.create_model("se-resnet20", num_classes=10)
    exempt = {id(p) for name, p in model.named_parameters() if p.ndim <= 1}
    assert len(exempt) > 40  # batch norm weights and biases, SE and classifier biases
    groups = Run.resolve(RunConfig(weight_decay=5e-4)).optimizer(model).param_groups
    assert {id(p) for p in groups[1]["params"]} == exempt and groups[1]["weight_decay"] == 0.0
    assert groups[0]["weight_decay"] == 5e-4 and all(p.ndim == 4 or p.ndim == 2 for p in groups[0]["params"])
    everything = Run.resolve(RunConfig(weight_decay=5e-4, decay_all=True)).optimizer(model).param_groups
    assert len(everything) == 1 and everything[0]["weight_decay"] == 5e-4
    printed = run_zoo("train", "resnet20", "--wd-all", "--print-config", cwd=tmp_path)
    assert json.loads(printed.stdout)["decay_all"] is True
