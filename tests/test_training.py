"""Training: data readers, augmentations, optimizers, schedules, weights, resume and reproducibility."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import zoo
from zoo.base.errors import UserError
from zoo import RunConfig, train
from zoo.io.weights import load_model

from conftest import TINY_VGG, StopAtEpoch, picture_folder, run_zoo, tiny_config


def test_a_run_writes_config_metrics_and_weights_that_rebuild_the_model(cifar_dir, tmp_path):
    config = tiny_config(data_dir=str(cifar_dir), model="se-vgg_bn", model_options={**TINY_VGG, "se": {"reduction": 4}})
    summary = train(config, run_dir=tmp_path / "run", weights=tmp_path / "w.safetensors")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == "se-vgg_bn" and saved["augs"] == ["crop", "hflip"]
    assert saved["aug_options"] == {"crop": {"padding": 2}}
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
    config = tiny_config(data_dir=str(cifar_dir), augs=["crop", "hflip", "rotate", "mixup"],
                         aug_options={"crop": {"padding": 2}, "rotate": {"degrees": 10}})
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


def amp_where_native() -> tuple[str, ...]:
    """--amp where the CPU has native bf16; on one that emulates it (AVX2 only), bf16 is several times
    slower than fp32, and the accuracy test would take most of CI's time."""
    from zoo_trainers.amp import cpu_has_fast_bf16

    return ("--amp",) if cpu_has_fast_bf16() else ()


@pytest.mark.slow
def test_real_fashion_mnist_reaches_88_percent_through_the_cli(tmp_path, real_fashion_mnist):
    result = run_zoo("train", "vgg_bn", "--data", "fashion-mnist", "--set", "layout=32,M,64,M,128,M", "--epochs", "2",
                     "--batch-size", "128", "--lr", "0.1", "--sched", "onecycle", "--warmup", "0", "--aug", "crop=2",
                     *amp_where_native(), "--json", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["test_accuracy"] >= 0.88


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


def test_eval_refuses_data_of_another_input_size(cifar_dir, tmp_path):
    pics = picture_folder(tmp_path / "pics")
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
    from zoo.training.config import Run

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


class StepCounter(zoo.SilentReporter):
    def __init__(self):
        self.steps = []

    def step(self, done, loss, accuracy, images_per_s):
        self.steps.append(done)


@pytest.mark.parametrize("seconds, heard", [(0.0, [1, 2, 3, 4, 5] * 2), (float("inf"), [5, 5])])
def test_a_reporter_hears_of_the_steps_by_time_as_well_as_by_count(cifar_dir, tmp_path, seconds, heard):
    """A CPU epoch of 16 slow steps once showed 0/16 for 43 s: news comes every log_seconds, whatever
    log_every says (here 1,000 steps, more than an epoch's 5)."""
    counter = StepCounter()
    train(tiny_config(data_dir=str(cifar_dir)), run_dir=tmp_path / "r", weights=tmp_path / "w.safetensors",
          reporter=counter, log_every=1000, log_seconds=seconds)
    assert counter.steps == heard


def output_of(code: str, terminal: bool) -> str:
    """What ``python -c code`` writes, run in a pseudo-terminal or with its output piped."""
    import pty
    import subprocess
    import sys

    if not terminal:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout + result.stderr
    main, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", code], stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=300) == 0, b"".join(chunks)[-2000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("progress, terminal, shown", [(None, True, True), (False, True, False), (None, False, False),
                                                       (True, False, True)])
def test_zoo_train_in_python_shows_progress_in_a_terminal_unless_told(cifar_dir, tmp_path, progress, terminal, shown):
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import zoo; "
            f"from conftest import tiny_config; zoo.train(tiny_config(data_dir={str(cifar_dir)!r}, epochs=1), "
            f"run_dir={str(tmp_path / 'r')!r}, weights={str(tmp_path / 'w.safetensors')!r}, progress={progress})")
    output = output_of(code, terminal)
    assert ("epoch   1/1  train loss" in output) is shown, output[-2000:]


TINY_PLUGIN = """
    from zoo import Architecture, hookimpl

    def build(num_classes=10, in_chans=3, input_size=32):
        import torch.nn as nn
        return nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    @hookimpl
    def architectures():
        return [Architecture("gonenet", build, "a net whose plugin goes away")]
"""


def test_a_run_whose_plugin_is_gone_names_the_plugin_when_resumed_or_evaluated(plugin_dir, cifar_dir, tmp_path):
    from conftest import make_plugin_dist

    make_plugin_dist(plugin_dir, "zoo-gone", "gone_plugin", TINY_PLUGIN, entry_point="gone")
    here = {"PYTHONPATH": str(plugin_dir)}
    trained = run_zoo("train", "gonenet", "--data-dir", str(cifar_dir), "--epochs", "1", "--batch-size", "20",
                      "--aug", "none", "--run-dir", "r", env=here, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    gone = {**here, "ZOO_DISABLE_PLUGINS": "gone"}
    resumed = run_zoo("train", "--resume", "r", "--epochs", "2", env=gone, cwd=tmp_path)
    assert resumed.returncode == 2 and "the run was made with plugin 'gone', which is not installed here" \
        in resumed.stderr, resumed.stderr
    evaluated = run_zoo("eval", str(tmp_path / "weights" / "r.safetensors"), env=gone, cwd=tmp_path)
    assert evaluated.returncode == 2 and "made with plugin 'gone', which is not installed" in evaluated.stderr


def test_zoo_eval_of_image_folder_weights_says_which_folder_they_were_trained_on(tmp_path):
    photos = picture_folder(tmp_path / "photos")
    trained = run_zoo("train", "vgg_bn", "--data", "imagefolder", "--data-dir", str(photos), "--set", "layout=8,M",
                      "--epochs", "1", "--batch-size", "4", "--aug", "none", "--out", "w.safetensors", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_zoo("eval", str(tmp_path / "w.safetensors"), cwd=elsewhere,
                     env={"ZOO_DATA_DIR": str(tmp_path / "empty")})
    assert result.returncode == 2 and f"was trained on the data in {photos} (as the file says): give --data-dir " \
        f"{photos} to evaluate on it" in result.stderr, result.stderr
    given = run_zoo("eval", str(tmp_path / "w.safetensors"), "--data-dir", str(photos), cwd=elsewhere)
    assert given.returncode == 0, given.stderr
