"""The trainer plugin (zoo_trainers): mixed precision, compilation, memory formats."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo import train
from zoo.io.weights import load_model

from conftest import tiny_config


def test_amp_trainer_trains_in_bf16_on_a_cpu_with_native_bf16_and_in_fp32_elsewhere(cifar_dir, tmp_path):
    from zoo_trainers.amp import cpu_has_fast_bf16

    summary = train(tiny_config(data_dir=str(cifar_dir), trainer="amp", epochs=1),
                    run_dir=tmp_path / "r", weights=tmp_path / "w.safetensors")
    meta = load_model(tmp_path / "w.safetensors").zoo_meta
    # decided by the CPU: AVX512-BF16 or AMX run bf16 natively; AVX2 alone would emulate it, slower than fp32
    expected = "bf16" if cpu_has_fast_bf16() else "fp32 (this CPU has no fast bf16)"
    assert meta["trainer"]["precision"] == expected and meta["trainer"]["channels_last"] is True
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
