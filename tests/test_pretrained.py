"""Pretrained weights: listed without torch, found in the caches people have (torch.hub's, the Hugging
Face Hub's) that the tests write themselves, checked by hash, fitted to the model, used to fine-tune."""
from __future__ import annotations

import math
import hashlib
import json
import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file, save_file

import zoo
from zoo.io.pretrained import fit_state_dict
from zoo.io.weights import read_metadata
from zoo import UserError, Weights, hookimpl
from zoo.io.pretrained import describe, find_weights
from zoo.testing import assert_conforms, fresh_registry

from conftest import run_zoo


def hub_cache(root, repo: str, tensors: dict[str, torch.Tensor], file_name: str = "model.safetensors"):
    """``tensors`` where huggingface_hub caches ``repo``'s file: blobs/<SHA-256>, linked from the snapshot
    that refs/main names. Returns the blob."""
    folder = root / f"models--{repo.replace('/', '--')}"
    staging = root / "staging.safetensors"
    root.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, staging)
    data = staging.read_bytes()
    staging.unlink()
    blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snapshot = folder / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / file_name).symlink_to(f"../../blobs/{blob.name}")
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text("a" * 40)
    return blob


def timm_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name).state_dict()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch.hub and Hub caches, downloads off: only what a test puts there exists."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    return tmp_path


# ----------------------------------------------------------------------------- listing and finding
def test_hundreds_of_weights_are_listed_without_importing_torch():
    code = ("import sys, zoo; weights = zoo.default_registry().items('weights'); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(weights))")
    count = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert count > 300
    listed = {w["name"]: w for w in json.loads(run_zoo("list", "--kind", "weights", "--json").stdout)}
    assert listed["resnet50.tv2_in1k"]["default"] and not listed["resnet50.tv_in1k"]["default"]
    assert listed["resnet50.tv2_in1k"]["accuracy"] == pytest.approx(80.858)
    assert listed["timm/resnet50.a1_in1k"]["default"] and listed["timm/resnet50.a1_in1k"]["arch"] == "timm/resnet50"
    assert {f"vgg{d}{bn}.tv_in1k" for d in (11, 13, 16, 19) for bn in ("", "_bn")} <= set(listed)


def test_tags_resolve_as_timm_users_expect():
    assert find_weights("resnet50").name == "resnet50.tv2_in1k"  # torchvision's DEFAULT
    assert find_weights("resnet50", "tv_in1k").name == "resnet50.tv_in1k"
    assert find_weights("resnet50", "resnet50.tv_in1k").name == "resnet50.tv_in1k"
    assert find_weights("timm/resnet50").name == "timm/resnet50.a1_in1k"  # timm's first tag
    # a wrapped model starts from its architecture's weights; timm's SE-ResNet ones by their tag
    assert find_weights("se-resnet50").name == "resnet50.tv2_in1k"
    assert find_weights("se-resnet50", "a1_in1k").name == "se-resnet50.a1_in1k"
    with pytest.raises(UserError, match=r"no weights 'nope' for 'resnet50'; it has .*resnet50\.tv2_in1k"):
        find_weights("resnet50", "nope")
    # any weights by their full name: timm's resnet50 and zoo's share a state dict (the fit decides)
    assert find_weights("resnet50", "timm/resnet50.a1_in1k").arch == "timm/resnet50"
    with pytest.raises(UserError, match="no pretrained weights for 'resnet20'"):
        find_weights("resnet20")


def test_torchvision_weights_are_described_by_torchvision_itself():
    d = describe(zoo.default_registry().get("weights", "resnet50.tv2_in1k"))
    assert d.url == torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url
    assert (d.num_classes, d.input_size, d.resize_size) == (1000, 224, 232)
    assert d.mean == [0.485, 0.456, 0.406] and d.std == [0.229, 0.224, 0.225]
    assert d.classes[0] == "tench" and d.license == "bsd-3-clause"


def test_zoo_resnet_and_vgg_take_torchvision_state_dicts_as_they_are():
    for name, make in (("resnet18", torchvision.models.resnet18), ("vgg11_bn", torchvision.models.vgg11_bn)):
        reference = make().eval()
        model = zoo.create_model(name).eval()
        assert fit_state_dict(model, reference.state_dict(), name) == []
        x = torch.randn(2, 3, 64, 64)
        assert torch.equal(model(x), reference(x)), name


# ----------------------------------------------------------------------------- caches, hashes, offline
def test_offline_without_the_file_says_which_file_and_where(caches):
    with pytest.raises(UserError, match=r"resnet18-f37072fd\.pth .* in .*torch/hub/checkpoints"):
        zoo.create_model("resnet18", pretrained=True)
    result = run_zoo("info", "timm/resnet18", "--weights", "--json")
    assert json.loads(result.stdout)[0]["hf_hub_id"] == "timm/resnet18.a1_in1k"
    result = run_zoo("train", "timm/resnet18", "--pretrained", "--data", "fashion-mnist-sample", "--epochs", "1",
                     cwd=caches)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.safetensors of https://huggingface.co/timm/resnet18.a1_in1k" in result.stderr
    assert str(caches / "hub") in result.stderr and not (caches / "runs").exists()


def test_hub_weights_load_exactly_and_a_corrupt_cache_file_is_refused(caches):
    state = timm_state("resnet18")
    blob = hub_cache(caches / "hub", "timm/resnet18.a1_in1k", state)
    model = zoo.create_model("timm/resnet18", pretrained=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert model.zoo_pretrained["weights"] == "timm/resnet18.a1_in1k" and model.zoo_pretrained["notes"] == []
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the SHA-256 of weights timm/resnet18.a1_in1k"):
        zoo.create_model("timm/resnet18", pretrained=True)
    assert blob.exists()  # left for the user to delete


def test_timm_se_resnet_weights_are_zoo_se_resnet_weights(caches):
    """timm's seresnet50 and zoo's se-resnet50 have one state dict: its weights give timm's outputs."""
    torch.manual_seed(0)
    reference = timm.create_model("seresnet50").eval()
    hub_cache(caches / "hub", "timm/seresnet50.a1_in1k", reference.state_dict())
    model = zoo.create_model("se-resnet50", pretrained="a1_in1k").eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


class UrlWeightsPlugin:
    """Weights whose file is in torch.hub's cache, as torchvision's are (whose hash prefixes a test
    cannot forge): the same code path, with a file the test made."""

    @staticmethod
    @hookimpl
    def weights():
        return [Weights(f"{arch}.test", url_weights, "a torch.hub file", arch=arch, default=True)
                for arch in ("resnet18", "vgg11")]


URLS: dict[str, str] = {}


def url_weights() -> dict:
    return {"url": URLS["current"], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2], "input_size": 224}


def torch_hub_file(caches, model: str, state: dict[str, torch.Tensor]):
    """``state`` saved as torch.save does in torch.hub's cache, named with its hash prefix as torchvision's are."""
    folder = caches / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / "staging"
    torch.save(state, staging)
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    path = staging.rename(folder / f"{model}-{prefix}.pth")
    URLS["current"] = f"https://example.invalid/models/{path.name}"
    return path


@pytest.fixture
def test_registry():
    return fresh_registry({"test": UrlWeightsPlugin()}, installed=("resnet", "vgg", "se"))


def test_torch_hub_file_loads_and_a_wrapper_keeps_its_new_blocks(caches, test_registry):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    path = torch_hub_file(caches, "resnet18", reference.state_dict())
    model = zoo.create_model("se-resnet18", registry=test_registry, num_classes=10, in_chans=1, pretrained=True)
    notes = model.zoo_pretrained["notes"]
    assert notes[0] == "new classifier fc for 10 classes (the weights have 1000)"
    assert notes[1] == "first convolution conv1 adapted from 3 to 1 input channels"
    assert notes[2].startswith("32 tensors the wrappers add (layer1.0.se.fc1.bias, ...)")
    own = model.state_dict()
    assert torch.equal(own["layer4.1.conv2.weight"], reference.state_dict()["layer4.1.conv2.weight"])
    assert torch.equal(own["conv1.weight"], reference.conv1.weight.sum(1, keepdim=True))
    assert torch.allclose(torch.sigmoid(own["layer1.0.se.fc2.bias"]), torch.tensor(0.95), atol=0.01)  # near identity
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the SHA-256"):
        zoo.create_model("resnet18", registry=test_registry, pretrained=True)


def test_weights_of_another_network_are_refused_in_one_line(caches, test_registry):
    torch_hub_file(caches, "vgg11", torchvision.models.resnet18().state_dict())
    with pytest.raises(UserError, match="weights vgg11.test do not fit this model: it has no"):
        zoo.create_model("vgg11", registry=test_registry, pretrained=True)
    with pytest.raises(UserError, match="weights resnet18.test do not fit this model: it has no"):
        zoo.create_model("vgg11", registry=test_registry, pretrained="resnet18.test")


def test_built_in_weights_conform(caches):
    registry = zoo.default_registry()
    checks = assert_conforms(registry, "torchvision")
    assert len(checks) == 16 and {c.detail for c in checks} == {"described; the file is not cached here"}
    assert_conforms(registry, "timm", names=["timm/resnet18.a1_in1k", "se-resnet50.a1_in1k"])


# ----------------------------------------------------------------------------- training from weights
def test_zoo_train_starts_from_pretrained_weights_and_freezes_the_body(caches):
    state = timm_state("resnet18")
    hub_cache(caches / "hub", "timm/resnet18.a1_in1k", state)
    result = run_zoo("train", "timm/resnet18", "--pretrained", "--data", "fashion-mnist-sample", "--epochs", "1",
                     "--freeze-epochs", "1", "--limit-train", "128", "--limit-test", "64", "--batch-size", "32",
                     "--out", "tuned.safetensors", cwd=caches)
    assert result.returncode == 0, result.stderr
    assert ("starting from timm/resnet18.a1_in1k; new classifier fc for 10 classes (the weights have 1000); first "
            "convolution conv1 adapted from 3 to 1 input channels") in result.stderr
    tuned = load_file(caches / "tuned.safetensors")
    assert torch.equal(tuned["layer3.0.conv1.weight"], state["layer3.0.conv1.weight"])  # frozen: unchanged
    assert torch.equal(tuned["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(tuned["layer2.1.bn2.weight"], state["layer2.1.bn2.weight"])
    assert tuned["fc.weight"].shape == (10, 512)
    meta = read_metadata(caches / "tuned.safetensors")
    assert meta["pretrained"] == "timm/resnet18.a1_in1k"
    assert meta["mean"] == pytest.approx([sum(timm.data.IMAGENET_DEFAULT_MEAN) / 3])  # the weights', for grey images
    config = json.loads(next((caches / "runs").glob("*/config.json")).read_text())
    assert config["pretrained"] == "default" and config["freeze_epochs"] == 1


def test_fine_tuning_options_are_checked_before_anything_runs(tmp_path):
    for args, message in ((["--pretrained", "--init", "x.safetensors"], "not both"),
                          (["--freeze-epochs", "1"], "give pretrained weights or a weights file"),
                          (["--pretrained", "--freeze-epochs", "2"], "freeze epochs must be in 0..1"),
                          (["--init", "missing.safetensors"], "weights file missing.safetensors does not exist")):
        result = run_zoo("train", "resnet20", "--data", "fashion-mnist-sample", "--epochs", "1", *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_fine_tuning_from_earlier_weights_beats_training_from_scratch(tmp_path, real_fashion_mnist):
    """ImageNet-shape resnet18 on real Fashion-MNIST: one epoch from weights trained here on other
    images reaches a higher accuracy than one epoch from scratch."""
    common = dict(model="resnet18", model_options={"shape": "imagenet"}, data="datasets:fashion-mnist", augs=[],
                  epochs=1, batch_size=50, test_limit=1000, opt="optim:adam", warmup=0)
    zoo.train(zoo.RunConfig(**common, lr=2e-3, train_limit=4000, seed=1), run_dir=tmp_path / "pre",
              weights=tmp_path / "pre.safetensors")
    # A fine-tuning rate for both (2e-3 would undo most of what the weights learnt: 77 % -> about 40 %).
    scratch = zoo.train(zoo.RunConfig(**common, lr=5e-4, train_limit=500, seed=2), run_dir=tmp_path / "scratch",
                        weights=tmp_path / "scratch.safetensors")
    tuned = zoo.train(zoo.RunConfig(**common, lr=5e-4, train_limit=500, seed=2, init=str(tmp_path / "pre.safetensors")),
                      run_dir=tmp_path / "tuned", weights=tmp_path / "tuned.safetensors")
    assert tuned["test_accuracy"] > scratch["test_accuracy"] + 0.3, (tuned, scratch)  # about 0.76 vs 0.22


def test_imagenet_weights_keep_their_imagenet_stem_on_small_images(caches):
    """zoo's resnet18 takes a CIFAR stem below 64 px; from ImageNet weights it is built as they were
    trained (224 px), and still runs on CIFAR's 32 px images."""
    state = timm_state("resnet18")
    hub_cache(caches / "hub", "timm/resnet18.a1_in1k", state)
    cifar = caches / "data"
    from conftest import write_cifar10

    write_cifar10(cifar)
    summary = zoo.train(zoo.RunConfig(model="resnet18", pretrained="timm/resnet18.a1_in1k", data_dir=str(cifar),
                                      epochs=1, batch_size=20, augs=[]), run_dir=caches / "run",
                        weights=caches / "w.safetensors")
    assert math.isfinite(summary["test_loss"])  # a 224-px stem shrinks 32 px to one pixel, and still trains
    meta = read_metadata(caches / "w.safetensors")
    assert meta["options"]["input_size"] == 224 and meta["input_size"] == 32
    assert zoo.load_model(caches / "w.safetensors").conv1.kernel_size == (7, 7)


def declares_pretrained(num_classes: int = 10, in_chans: int = 3, input_size: int = 32, pretrained: bool = False):
    return zoo.testing.plain_convnet(num_classes, in_chans, input_size)


class DeclaresPretrainedPlugin:
    @staticmethod
    @hookimpl
    def architectures():
        return [zoo.Architecture("naive", declares_pretrained, "declares pretrained, marks nothing unsafe")]


def test_a_weights_file_never_sets_pretrained_whatever_a_factory_declares(tmp_path):
    registry = fresh_registry({"naive": DeclaresPretrainedPlugin()})
    model = zoo.create_model("naive", registry=registry)
    model.zoo_config["options"]["pretrained"] = True
    zoo.save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(UserError, match="sets option 'pretrained' .* which a file may not set"):
        zoo.load_model(tmp_path / "w.safetensors", registry=registry)


def test_pretrained_weights_set_the_image_size_and_crop_a_dataset_takes_unless_given(caches):
    def printed(*args):
        result = run_zoo("train", "resnet50", "--pretrained", "--print-config", *args, cwd=caches)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["data_options"]

    assert printed("--data", "imagefolder") == {"image_size": 224, "crop_pct": 224 / 232}  # torchvision's 232 -> 224
    assert printed("--data", "imagefolder", "--data-set", "image_size=128") == {"image_size": 128,
                                                                               "crop_pct": 224 / 232}
    assert printed("--data", "cifar10") == {}  # CIFAR is 32 px: the model adapts


def test_a_download_goes_to_the_cache_and_is_checked_against_its_hash(caches, test_registry, server, monkeypatch):
    """Downloads from a local server, as from download.pytorch.org: into torch.hub's cache, then checked."""
    monkeypatch.delenv("ZOO_OFFLINE")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    made = torch_hub_file(caches, "resnet18", reference.state_dict())
    served = made.rename(server.folder / made.name)
    URLS["current"] = server.url + served.name
    model = zoo.create_model("resnet18", registry=test_registry, pretrained=True)
    assert server.requests == ["/" + served.name] and (caches / "torch" / "hub" / "checkpoints" / served.name).exists()
    assert torch.equal(model.state_dict()["fc.weight"], reference.fc.weight)
    (caches / "torch" / "hub" / "checkpoints" / served.name).unlink()
    data = bytearray(served.read_bytes())  # the server now sends other bytes under the same name
    data[len(data) // 2] ^= 1
    served.write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the SHA-256 of weights resnet18.test.*nothing was kept"):
        zoo.create_model("resnet18", registry=test_registry, pretrained=True)
    assert not list((caches / "torch" / "hub" / "checkpoints").iterdir())


def test_without_a_network_the_cli_says_so_at_once_in_one_line(tmp_path):
    """No ZOO_OFFLINE: zoo tries the network, which this test's host name makes unreachable."""
    result = run_zoo("info", "timm/resnet18", "--set", "pretrained=True", cwd=tmp_path, timeout=60,
                     env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "https://no-such-host.invalid"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "no-such-host.invalid cannot be reached" in result.stderr and "Retrying" not in result.stderr


def test_a_weights_description_records_the_architecture_options_they_were_trained_with(tmp_path):
    """Width-0.25 weights once did not load: the model was built at full width."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    narrow = zoo.create_model("resnet20", num_classes=10, width=0.25)
    save_file(narrow.state_dict(), tmp_path / "narrow.safetensors")

    class NarrowWeights:
        @staticmethod
        @hookimpl
        def weights():
            return [Weights("resnet20.narrow", lambda: {"file": str(tmp_path / "narrow.safetensors"), "num_classes": 10,
                                                        "input_size": 32, "options": {"width": 0.25}},
                            "a quarter-width ResNet-20", arch="resnet20"),
                    Weights("resnet20.fetching", lambda: {"file": str(tmp_path / "narrow.safetensors"),
                                                          "options": {"no_such_option": 1}},
                            "options the architecture does not take", arch="resnet20")]

    registry = fresh_registry({"narrow": NarrowWeights()}, installed=("resnet",))
    model = zoo.create_model("resnet20", registry=registry, pretrained="narrow", num_classes=10)
    assert model.zoo_config["options"]["width"] == 0.25
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), narrow.state_dict().values()))
    with pytest.raises(UserError, match="weights resnet20.fetching.*no_such_option"):
        zoo.create_model("resnet20", registry=registry, pretrained="fetching")
