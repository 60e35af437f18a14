"""Starting a model from trained weights: a pretrained tag (``resnet50.tv2_in1k``) found in the caches
or downloaded and checked against its hash, or any zoo weights file; fitted to the model being built
(a new classifier for another class count, a first convolution for other input channels, wrappers'
new blocks left at their initialisation), every change said."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..registry.factories import call_factory, check_file_options
from ..base.errors import UserError, described
from ..registry.catalog import Registry, default_registry, natural_key
from ..registry.specs import Weights
from ..base.files import CorruptDownload, file_digest, regular_file
from ..base.typed import conforms, spelled
from ..base.files import download as checked_download  # `download` is a flag here
from .weights import load_model, read_metadata

OFFLINE_ENVS = ("ZOO_OFFLINE", "HF_HUB_OFFLINE")  # "1": use the caches only, never download
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a Hub repository, in order
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's convention: name-<sha256 prefix>.pth
_SHA256 = re.compile(r"^[a-f0-9]{64}$")
FOREIGN_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".h5", ".onnx", ".pt2")  # weights, but not a tag


# ----------------------------------------------------------------------------- finding weights
def weights_for(model: str, registry: Registry | None = None) -> list[Weights]:
    """The weights registered for ``model`` itself, default first."""
    registry = registry or default_registry()
    found = [w for w in registry.items("weights") if w.arch == model]
    return sorted(found, key=lambda w: (not w.default, natural_key(w.name)))  # type: ignore[misc]


@dataclass(frozen=True)
class RegisteredWeights:
    """Weights a plugin registers, by ``tag`` (``tv2_in1k``) or full name (``resnet50.tv2_in1k``,
    ``timm/resnet50.a1_in1k``); no tag: the model's default ones."""

    tag: str | None = None


@dataclass(frozen=True)
class WeightsFile:
    """A zoo weights file, such as an earlier run's."""

    path: Path


def starting_weights(pretrained: Any) -> RegisteredWeights | WeightsFile | None:
    """What ``create_model``'s ``pretrained`` names, read once at that door: nothing (None, False), the
    default registered weights (True, ``"default"``), a zoo weights file (a path, or text ending in
    ``.safetensors``) or registered weights by tag (any other text)."""
    if pretrained is None or pretrained is False or isinstance(pretrained, (RegisteredWeights, WeightsFile)):
        return pretrained or None
    if pretrained is True or pretrained in ("", "default", "true", "True"):
        return RegisteredWeights()
    if isinstance(pretrained, os.PathLike) or isinstance(pretrained, str) and pretrained.endswith(".safetensors"):
        return WeightsFile(Path(pretrained))
    if isinstance(pretrained, str) and Path(pretrained).suffix in FOREIGN_SUFFIXES:
        raise UserError(f"pretrained {pretrained!r} is a {Path(pretrained).suffix} file: zoo starts from zoo weights "
                        "files (.safetensors) or registered weights by tag; see docs/pretrained.md to register it")
    if isinstance(pretrained, str):
        return RegisteredWeights(pretrained)
    raise UserError(f"pretrained must be true, a weights tag or a zoo weights file, got {pretrained!r}")


def find_weights(model: str, tag: str | None = None, registry: Registry | None = None) -> Weights:
    """The weights ``tag`` names for ``model`` (:class:`RegisteredWeights`); no tag: the default ones
    (the model's own, else its architecture's under the wrappers)."""
    registry = registry or default_registry()
    wrappers, arch = registry.resolve_model(model)
    candidates = [model] + ([arch.name] if wrappers else [])
    if tag is None:
        for name in candidates:
            found = weights_for(name, registry)
            if found and (found[0].default or name == candidates[-1]):
                return found[0]
        raise UserError(f"no pretrained weights for {model!r}; see `zoo list --kind weights`")
    full = registry.find("weights", tag) if "." in tag else None
    if full is not None:  # any weights by their full name: whether they fit the model is checked as they load
        return full  # type: ignore[return-value]
    for name in candidates:
        spec = registry.find("weights", f"{name}.{tag}")
        if spec is not None:
            return spec  # type: ignore[return-value]
    tags = [w.name for name in candidates for w in weights_for(name, registry)]
    raise UserError(f"no weights {tag!r} for {model!r}" + (f"; it has {', '.join(tags)}" if tags else
                                                           "; see `zoo list --kind weights`"))


@dataclass(frozen=True)
class WeightsDescription:
    """What a weights plugin's factory says of its weights (a dict, docs/pretrained.md), checked once:
    where the file is (``url``, ``hf_hub_id`` or ``file``) and how the weights were trained."""

    name: str  # the weights' full name and the architecture they fit, from their spec
    arch: str
    url: str | None = None
    sha256: str | None = None
    hf_hub_id: str | None = None
    hf_filename: str | None = None
    file: str | None = None
    dataset: str | None = None
    classes: list[str] | None = None
    num_classes: int | None = None
    input_size: int | None = None
    resize_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    license: str | None = None
    accuracy: float | None = None
    classifier: str | None = None  # module names, where zoo would find others
    first_conv: str | None = None
    recipe: str | None = None
    origin: str | None = None
    options: dict[str, Any] | None = None  # the architecture's options they were trained with (width, layout)

    @classmethod
    def checked(cls, spec: Weights, description: Any) -> "WeightsDescription":
        """The record of what ``spec``'s factory returned; a plugin error naming the field otherwise."""
        if not isinstance(description, dict):
            raise spec.failure("its factory did not return a description (a dict)",
                               TypeError(type(description).__name__))
        hints = typing.get_type_hints(cls)
        for key, value in description.items():
            if key in ("name", "arch") or key not in hints:
                raise spec.failure(f"description field {key!r}", TypeError("unknown"))
            if not conforms(value, hints[key]):
                raise spec.failure(f"description field {key!r}",
                                   TypeError(f"must be {spelled(hints[key])}, got {value!r}"))
        if not any(description.get(k) for k in ("url", "hf_hub_id", "file")):
            raise spec.failure("its description names no file", ValueError("give a url, hf_hub_id or file"))
        return cls(name=spec.name, arch=spec.arch, **description)

    def given(self) -> dict[str, Any]:
        """The fields the plugin gave, with the weights' name and architecture: ``zoo list --json``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


def describe(spec: Weights) -> WeightsDescription:
    """What the plugin says about ``spec``'s weights: where the file is and how they were trained."""
    return WeightsDescription.checked(spec, call_factory(spec))


# ----------------------------------------------------------------------------- files: caches, downloads, hashes
def offline() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in OFFLINE_ENVS)


def weights_file(description: WeightsDescription, download: bool = True) -> Path:
    """The local file of the described weights, from the caches or downloaded (with progress) into
    them, checked against its SHA-256: a mismatch is an error, never a silent load. Nothing is
    downloaded without ``download``, or when ZOO_OFFLINE (or HF_HUB_OFFLINE) is set."""
    if description.file:
        path = Path(description.file).expanduser()
        if not os.path.lexists(path):
            raise UserError(f"weights {description.name}: file {path} does not exist")
        _check_hash(path, description.sha256, description.name)
        return path
    if description.hf_hub_id:
        return _hub_file(description, download and not offline())
    return _url_file(description, download and not offline())


def _url_file(description: WeightsDescription, download: bool) -> Path:
    url, name = description.url or "", description.name
    file_name = Path(urlparse(url).path).name
    expected = description.sha256 or (_HASH_IN_NAME.search(file_name) or [None, None])[1]
    if not expected:
        raise UserError(f"weights {name}: {url} comes with no SHA-256 to check it against; refused")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / file_name
    if not os.path.lexists(path):  # whatever is there (a FIFO, a folder, a link) is checked, never replaced
        where = f"put {file_name} (from {url}) in {folder}/, or point TORCH_HOME at a cache that has it"
        if not download:
            raise UserError(f"weights {name} are not in the cache and downloads are off; {where}")
        try:  # checked before it is moved into the cache: a bad download never lands there
            return checked_download(url, path, sha256=expected)
        except CorruptDownload as exc:
            raise UserError(f"{url} does not match the SHA-256 of weights {name} ({expected}...): a corrupt download "
                            "or other weights; nothing was kept") from exc
        except UserError as exc:  # no network, an HTTP error, a full disk
            raise UserError(f"weights {name}: {exc}; {where}") from exc
    _check_hash(path, expected, name)
    return path


def _hub_file(description: WeightsDescription, download: bool) -> Path:
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    repo, name, cache = description.hf_hub_id or "", description.name, hub_cache()
    files = [description.hf_filename] if description.hf_filename else list(HUB_FILES)
    for file_name in files:
        cached = try_to_load_from_cache(repo, file_name, cache_dir=cache)
        if isinstance(cached, str):
            return _checked_hub_blob(Path(cached), description)
    where = (f"put {files[0]} of https://huggingface.co/{repo} in the Hub cache {cache} (`hf download {repo} "
             f"{files[0]}` where there is a network, then copy the cache), or set HF_HUB_CACHE")
    if not download:
        raise UserError(f"weights {name} are not in the cache and downloads are off; {where}")
    _reachable(constants.ENDPOINT, name, where)
    errors = []
    for file_name in files:
        try:
            return _checked_hub_blob(Path(hf_hub_download(repo, file_name, cache_dir=cache)), description)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the Hub raises its own errors for a missing file or no network
            errors.append(described(exc))
    raise UserError(f"weights {name}: cannot download them from the Hub ({'; '.join(errors)}); {where}")


def _reachable(endpoint: str, name: str, where: str) -> None:
    """One quick connection to the Hub before downloading: without a network the Hub's client retries
    each file for most of a minute, printing as it goes."""
    import socket

    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as exc:
        raise UserError(f"weights {name} are not in the cache and {host} cannot be reached ({exc}); {where}") from exc


def hub_cache() -> str:
    """The Hugging Face Hub cache as the environment names it now (the library reads it once, at import)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def _checked_hub_blob(path: Path, description: WeightsDescription) -> Path:
    # The Hub cache stores a large file as blobs/<its SHA-256>, linked from snapshots/<revision>/<name>.
    blob = Path(os.path.realpath(path)).name
    expected = description.sha256 or (blob if _SHA256.match(blob) else None)
    if not expected:
        raise UserError(f"weights {description.name}: {path} has no SHA-256 in the Hub cache to check it against")
    _check_hash(path, expected, description.name)
    return path


MAX_WEIGHTS_BYTES = 8 << 30  # timm's largest CNNs are under 4 GB


def _check_hash(path: Path, expected: str | None, name: str) -> None:
    """A cached weights file is a regular file of a plausible size, not sparse (a download never is),
    with the expected SHA-256: anything else found in a cache is refused, never read to its end."""
    try:
        info = regular_file(path, f"weights {name}").stat()
    except UserError as error:
        raise UserError(f"{error}; delete it to download the weights again") from None
    blocks = getattr(info, "st_blocks", info.st_size // 512)  # Windows has no block count
    if info.st_size > MAX_WEIGHTS_BYTES or blocks * 512 < info.st_size // 8:
        raise UserError(f"{path} is {'sparse' if info.st_size <= MAX_WEIGHTS_BYTES else 'larger than any weights'}, "
                        f"not a download of weights {name}; delete it to download them again")
    if not expected:
        return
    if not file_digest(path).startswith(expected.lower()):
        raise UserError(f"{path} does not match the SHA-256 of weights {name} ({expected}...): it is corrupt or "
                        "other weights; delete it to download it again")


def read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """Tensors of a checked weights file: safetensors, or a pickle read with ``weights_only`` (torch's
    restricted unpickler: tensors and plain containers, nothing it names is imported or run)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever a corrupt file raises, one line
        raise UserError(f"{path}: cannot read weights {name} ({type(exc).__name__}); delete it to download it "
                        "again") from exc
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"{path}: weights {name} are not a table of tensors")
    return state


# ----------------------------------------------------------------------------- starting a model from weights
def trained_preprocessing(model_name: str, source: RegisteredWeights | WeightsFile,
                          registry: Registry | None = None) -> dict:
    """The ``image_size`` the weights ``source`` names were trained at, and the ``crop_pct`` of their
    evaluation's centre crop, where known: what a dataset that takes them should use by default."""
    if isinstance(source, WeightsFile):
        meta = read_metadata(source.path)
        found = {"image_size": meta.input_size, "crop_pct": meta.crop_pct}
    else:
        description = describe(find_weights(model_name, source.tag, registry))
        size, resize = description.input_size, description.resize_size
        found = {"image_size": size, "crop_pct": description.crop_pct or (size / resize if size and resize else None)}
    return {key: value for key, value in found.items() if value}


def trained_options(model_name: str, source: RegisteredWeights, registry: Registry | None = None) -> dict[str, Any]:
    """The architecture options registered weights were trained with (a width-0.25 ResNet's ``width``),
    checked as a file's options are: names the architecture declares, plain values, nothing that fetches."""
    registry = registry or default_registry()
    spec = find_weights(model_name, source.tag, registry)
    options = describe(spec).options or {}
    if options:
        arch = registry.get("arch", spec.arch)
        check_file_options(arch, arch.load(), options, source=f"weights {spec.name}")
    return dict(options)


def trained_size(model_name: str, source: RegisteredWeights | WeightsFile,
                 registry: Registry | None = None) -> int | None:
    """The input size the weights were trained at: a model is built for it (an ImageNet ResNet keeps
    its ImageNet stem on CIFAR's 32 px images), and adapts to the data's size."""
    return trained_preprocessing(model_name, source, registry).get("image_size")


def start_from(model: nn.Module, model_name: str, source: RegisteredWeights | WeightsFile,
               registry: Registry | None = None, build_base=None) -> dict[str, Any]:
    """Load into ``model`` (built as ``model_name``) the weights ``source`` names: registered ones, or
    a zoo weights file (an earlier run's). Weights of the architecture under the wrappers leave the
    wrappers' blocks new; ``build_base()`` builds that architecture (on the meta device here, to tell its
    tensors from the wrappers'). Returns what a run records: the weights' name, what was changed, and the normalisation and size they were trained at."""
    registry = registry or default_registry()
    wrappers, arch = registry.resolve_model(model_name)
    if isinstance(source, WeightsFile):
        trained = load_model(source.path, registry=registry)
        meta = trained.zoo_meta
        state, origin = trained.state_dict(), meta.model
        info = {"weights": str(source.path), "mean": meta.mean, "std": meta.std, "input_size": meta.input_size}
        classifier = first_conv = ""
    else:
        spec = find_weights(model_name, source.tag, registry)
        description = describe(spec)
        path = weights_file(description)
        state, origin = read_state_dict(path, spec.name), spec.arch
        info = {"weights": spec.name, "file": str(path), **{k: getattr(description, k) for k in (
            "mean", "std", "input_size", "license", "dataset", "origin")}}
        classifier, first_conv = description.classifier or "", description.first_conv or ""
    new_keys: set[str] = set()
    if wrappers and origin == arch.name and build_base is not None:
        with torch.device("meta"):
            new_keys = set(model.state_dict()) - set(build_base().state_dict())
    info["notes"] = fit_state_dict(model, state, f"weights {info['weights']}", classifier, first_conv, new_keys)
    info["classifier"] = classifier or classifier_name(model)
    return info


# ----------------------------------------------------------------------------- fitting weights to a model
def classifier_name(model: nn.Module, num_classes: int | None = None) -> str:
    """The classifier: what timm's ``get_classifier()`` returns where the model has it, else the last
    linear layer (or 1x1 convolution) with ``num_classes`` outputs."""
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        named = next((name for name, module in model.named_modules() if module is head), "")
        if named:
            return named
    found = ""
    for name, module in model.named_modules():
        outputs = (module.out_features if isinstance(module, nn.Linear) else
                   module.out_channels if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) else None)
        if outputs is not None and (num_classes is None or outputs == num_classes):
            found = name
    return found


def _first_conv(model: nn.Module) -> str:
    return next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), "")


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str, classifier: str = "",
                   first_conv: str = "", new_keys: set[str] = frozenset()) -> list[str]:
    """Load ``state`` into ``model``: a classifier of another class count is left new, a first
    convolution for other input channels adapted (summed over the colours for one channel, as timm
    does), ``new_keys`` (what wrappers add) may be absent. Returns what was changed, in sentences."""
    own, notes, left_new = model.state_dict(), [], set(new_keys)
    state = dict(state)
    head = classifier or classifier_name(model)
    head_keys = [k for k in (f"{head}.weight", f"{head}.bias") if k in state and k in own]
    if head and any(state[k].shape != own[k].shape for k in head_keys):
        notes.append(f"new classifier {head} for {own[head_keys[0]].shape[0]} classes (the weights have "
                     f"{state[head_keys[0]].shape[0]})")
        for key in head_keys:
            del state[key]
        left_new.update(head_keys)
    key = f"{first_conv or _first_conv(model)}.weight"
    if key in state and key in own and state[key].dim() == 4 and state[key].shape[1] != own[key].shape[1] \
            and state[key].shape[0] == own[key].shape[0]:
        notes.append(f"first convolution {key[:-len('.weight')]} adapted from {state[key].shape[1]} to "
                     f"{own[key].shape[1]} input channels")
        state[key] = _adapt_channels(state[key], own[key].shape[1])
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise UserError(f"{source} do not fit this model: it has no {unexpected[0]}"
                        + (f" (and {len(unexpected) - 1} more tensors)" if len(unexpected) > 1 else ""))
    missing = sorted(set(own) - set(state) - left_new - {k for k in own if k.endswith("num_batches_tracked")})
    if missing:
        raise UserError(f"{source} do not fit this model: they lack {missing[0]}"
                        + (f" (and {len(missing) - 1} more tensors)" if len(missing) > 1 else ""))
    wrong = next((k for k in state if state[k].shape != own[k].shape), None)
    if wrong:
        raise UserError(f"{source} do not fit this model: {wrong} is {list(state[wrong].shape)} in the weights, "
                        f"{list(own[wrong].shape)} in the model")
    model.load_state_dict(state, strict=False)
    fresh = sorted(set(new_keys) - set(state))
    if fresh:
        notes.append(f"{len(fresh)} tensors the wrappers add ({fresh[0]}, ...) start from their initialisation")
    return notes


def _adapt_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A first convolution's kernel for ``channels`` inputs that answers a grey (or repeated) image as
    the original answers its colour one: summed for one channel, else cycled and rescaled."""
    if channels == 1:
        return weight.sum(1, keepdim=True)
    repeats = math.ceil(channels / weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (weight.shape[1] / channels)


def body_parameters(model: torch.nn.Module, classifier: str) -> list[torch.nn.Parameter]:
    """The parameters outside the classifier: frozen, their gradients are dropped before each step (the
    optimizer then skips them: no update, no momentum, no weight decay)."""
    head = {id(p) for p in model.get_submodule(classifier).parameters()}
    return [p for p in model.parameters() if id(p) not in head]


def trained_stats(started_from: dict[str, Any], channels: int) -> tuple[list[float], list[float]]:
    """The mean and std weights were trained with, for ``channels``-channel images (averaged for grey
    images fed to colour weights, whose first convolution was summed over the colours)."""
    mean, std = list(started_from["mean"]), list(started_from["std"])
    if len(mean) != channels:
        mean, std = [sum(mean) / len(mean)] * channels, [sum(std) / len(std)] * channels
    return mean, std
