"""Readers for the original dataset files. Everything is decoded into uint8 tensors."""
from __future__ import annotations

import gzip
import math
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo import (IMAGE_SUFFIXES, ImageData, ImageFiles, UserError, channel_stats, download, file_md5, memory_budget,
                 regular_file)

CIFAR = {
    "cifar10": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
        meta=("batches.meta", b"label_names"), labels=b"labels",
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python", train=["train"], test=["test"],
        meta=("meta", b"fine_label_names"), labels=b"fine_labels",
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}

FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {  # name -> MD5 of the published gz file
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
FASHION_STATS = ((0.2860,), (0.3530,))
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
SAMPLE = Path(__file__).parent / "sample"


class RefusedPickle(pickle.UnpicklingError):
    """The file asks for something a CIFAR batch never contains: possibly code to run."""


class _BatchUnpickler(pickle.Unpickler):
    """Admits only what the CIFAR batch files contain: dicts, lists, bytes and numpy arrays.

    ``_codecs.encode`` is how Python 3 writes bytes at protocol 2 (a re-saved batch); it only encodes text.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise RefusedPickle(f"refusing to load {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
            return core.multiarray._reconstruct
        return getattr(np, name)


def read_cifar_batch(path: Path) -> dict:
    """One CIFAR python batch, read without running any code it might carry."""
    try:
        with open(regular_file(path, "CIFAR batch"), "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except RefusedPickle as exc:
        raise UserError(f"{path} is not a CIFAR batch ({exc}); it was not loaded") from exc
    except Exception as exc:
        raise UserError(f"{path} is truncated or corrupt ({type(exc).__name__}); delete it and download again") from exc
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a CIFAR batch (it holds a {type(batch).__name__})")
    return batch


def _cifar(name: str, root: Path, download_missing: bool) -> ImageData:
    info = CIFAR[name]
    folder = root / info["folder"]
    archive = root / Path(info["url"]).name
    where = (f"put {archive.name} or its '{info['folder']}' folder in {root} (or set --data-dir), or "
             f"train on the embedded sample with --data fashion-mnist-sample")
    if not folder.is_dir() and (download_missing or archive.is_file()):
        if not download_missing and file_md5(archive) != info["md5"]:
            raise UserError(f"{archive} is corrupt (its MD5 is not {info['md5']}); delete it and download it again")
        try:
            download(info["url"], archive, info["md5"])  # at once when the archive is here already
        except UserError as exc:
            raise UserError(f"{name} is not in {root} and {exc}; {where}") from exc
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    missing = [f for f in info["train"] + info["test"] + [info["meta"][0]] if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{name} not found (missing {', '.join(missing)} in {folder}): {where}")

    def split(files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for file in files:
            batch = read_cifar_batch(folder / file)
            try:
                data = batch[b"data"]
                if not isinstance(data, np.ndarray) or data.dtype != np.uint8:  # a cast would wrap or round
                    raise ValueError(f"data of type {getattr(data, 'dtype', type(data).__name__)}, not uint8")
                data = data.reshape(-1, 3, 32, 32)
                label = np.asarray(batch[info["labels"]], dtype=np.int64)
            except (KeyError, ValueError, TypeError, OverflowError) as exc:
                raise UserError(f"{folder / file} is not a complete CIFAR batch ({exc})") from exc
            if len(data) != len(label):
                raise UserError(f"{folder / file} has {len(data)} images but {len(label)} labels")
            images.append(data)
            labels.append(label)
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

    meta = read_cifar_batch(folder / info["meta"][0])
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(info["meta"][1], [])]
    train, test = split(info["train"]), split(info["test"])
    return ImageData(name, *train, *test, classes, info["mean"], info["std"])


def cifar10(root: Path, download: bool = True) -> ImageData:
    return _cifar("cifar10", root, download)


def cifar100(root: Path, download: bool = True) -> ImageData:
    return _cifar("cifar100", root, download)


IDX_MAX_IMAGES, IDX_MAX_SIDE = 10_000_000, 1024  # bounds read from the header before the data
IDX_MAX_BYTES = 4 << 30  # EMNIST, the largest idx dataset, is 0.7 GB


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip or raw): uint8 images (N, H, W) or labels (N,). The header's sizes are checked
    before the data is read, and no more than they announce is decompressed (a gzip bomb stops there)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(regular_file(path, "idx"), "rb") as f:
            magic, count = struct.unpack(">II", f.read(8))
            if magic == 2049:
                dims: tuple[int, ...] = (count,)
            elif magic == 2051:
                dims = (count, *struct.unpack(">II", f.read(8)))
            else:
                raise ValueError(f"magic number {magic}")
            size = math.prod(dims)
            if count > IDX_MAX_IMAGES or any(side > IDX_MAX_SIDE for side in dims[1:]) or size > IDX_MAX_BYTES:
                raise ValueError(f"a header announcing shape {dims}, beyond any image dataset")
            chunks, left = [], size + 1  # read as it comes: memory follows the data, not what the header claims
            while left > 0 and (chunk := f.read(min(left, 16 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
            raw = b"".join(chunks)
        array = np.frombuffer(raw, np.uint8)
        if array.size != size:
            raise ValueError(f"{'more' if array.size > size else array.size} bytes of data for shape {dims}")
    except (OSError, EOFError, struct.error, ValueError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path} is not a valid idx file ({exc}); it may be truncated") from exc
    return array.reshape(dims)


def _idx_dataset(name: str, folder: Path) -> ImageData:
    def split(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte")).copy())
        labels = torch.from_numpy(read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64))
        # 28x28 -> 32x32 (as LeNet padded MNIST) so five 2x2 pools of a CIFAR-shape VGG fit.
        return F.pad(images.unsqueeze(1), (2, 2, 2, 2)), labels

    return ImageData(name, *split("train"), *split("t10k"), FASHION_CLASSES, *FASHION_STATS, padded_from=28)


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise UserError(f"{folder / stem}.gz is missing")


def fashion_mnist(root: Path, download: bool = True) -> ImageData:
    """From ``root/fashion-mnist``, else Debian's ``dataset-fashion-mnist``, else downloaded."""
    return _fashion_mnist(root, download_missing=download)


def _fashion_mnist(root: Path, download_missing: bool) -> ImageData:
    folder = root / "fashion-mnist"
    have = lambda f: all((f / name).is_file() for name in FASHION_FILES)  # noqa: E731
    where = (f"put its four idx .gz files in {folder} (or set --data-dir), or install Debian's dataset-fashion-mnist, "
             f"or train on the embedded sample of 5,000 of its images with --data fashion-mnist-sample")
    if not have(folder) and have(DEBIAN_FASHION):
        folder = DEBIAN_FASHION
    elif not have(folder):
        if not download_missing:
            raise UserError(f"fashion-mnist not found: {where}")
        for name, md5 in FASHION_FILES.items():
            if not (folder / name).is_file() or file_md5(folder / name) != md5:
                try:
                    download(FASHION_URL + name, folder / name, md5)
                except UserError as exc:
                    raise UserError(f"fashion-mnist is not in {folder} and {exc}; {where}") from exc
    return _idx_dataset("fashion-mnist", folder)


def fashion_mnist_sample(root: Path | None = None, download: bool = False) -> ImageData:
    """The 5,000 + 1,000 real images shipped in the package; needs no network and no files."""
    return _idx_dataset("fashion-mnist-sample", SAMPLE)


# Decoding processes: more than any machine's cores could use, and a bound on what a weights file's
# recorded data options can make zoo eval start.
MAX_WORKERS = 64


def image_folder(root: Path, download: bool = False, image_size: int = 32, stream: bool | None = None,
                 budget_gb: float = 0.0, workers: int = 0, crop_pct: float = 0.875, val_fraction: float = 0.0):
    """``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``val/``, or ``val_fraction`` of each
    training class held out), at ``image_size``. Decoded into memory when that fits ``budget_gb``
    (default: a quarter of this machine's memory, shared by its processes), else streamed from the files (``stream`` forces
    either): ``workers`` processes decode each batch, with a random resized crop for training and a
    centre crop of ``crop_pct`` for testing."""
    _check_decoding("imagefolder", image_size, crop_pct, workers)
    if not 0 <= val_fraction < 1 or budget_gb < 0:
        raise UserError("imagefolder: val_fraction must be in [0, 1), budget_gb >= 0")
    test_dir = _test_folder(root)
    if not (root / "train").is_dir() or (test_dir is None and not val_fraction):
        raise UserError(f"imagefolder needs {root}/train/<class>/ and {root}/test/<class>/ (or val/, or "
                        f"--data-set val_fraction=0.1); set the folder with --data-dir")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"{root / 'train'} has no class folders")
    train = _image_files(root / "train", classes)
    if test_dir is None:
        held = _spread(len(train[1]), round(len(train[1]) * val_fraction))
        test = ([train[0][i] for i in held], train[1][held])
        kept = sorted(set(range(len(train[0]))) - set(held.tolist()))
        train = ([train[0][i] for i in kept], train[1][kept])
    else:
        unknown = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and d.name not in classes)
        if unknown:  # their images would be dropped and the accuracy measured without them
            raise UserError(f"class folder(s) {', '.join(unknown[:5])} in {test_dir} are not in {root / 'train'}")
        test = _image_files(test_dir, classes)
    empty = [cls for label, cls in enumerate(classes) if not (train[1] == label).any()]
    if empty:  # a class the model could never learn, and an output it would never use
        raise UserError(f"class folder(s) {', '.join(empty)} in {root / 'train'} hold no images; add some or remove them")
    decoded = (len(train[0]) + len(test[0])) * 3 * image_size ** 2
    if stream or (stream is None and decoded > memory_budget(budget_gb)):
        return ImageFiles("imagefolder", *train, *test, classes, image_size=image_size, crop_pct=crop_pct,
                          workers=workers)
    train_images, test_images = _decoded(train[0], image_size), _decoded(test[0], image_size)
    if train_images.shape[1] != test_images.shape[1]:  # one split in colour, the other gray
        train_images, test_images = (t.expand(-1, 3, -1, -1).contiguous() for t in (train_images, test_images))
    mean, std = channel_stats(train_images)
    return ImageData("imagefolder", train_images, train[1], test_images, test[1], classes, mean, std)


def _check_decoding(dataset: str, image_size: int, crop_pct: float, workers: int) -> None:
    if not 8 <= image_size <= 4096 or not 0.05 <= crop_pct <= 1 or not 0 <= workers <= MAX_WORKERS:
        raise UserError(f"{dataset}: image_size must be in 8..4096, crop_pct in 0.05..1, workers in 0..{MAX_WORKERS}")


def _test_folder(root: Path) -> Path | None:
    return next((root / name for name in ("test", "val") if (root / name).is_dir()), None)


def _spread(total: int, count: int) -> torch.Tensor:
    """``count`` evenly spaced indices of ``total`` files listed class by class: each class gives its
    share, the same every time."""
    return torch.tensor(sorted({int(i * total / count) for i in range(count)}), dtype=torch.long)


def _image_files(folder: Path, classes: list[str]) -> tuple[list[str], torch.Tensor]:
    files, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((folder / cls).iterdir()) if (folder / cls).is_dir() else []:
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(file))
                labels.append(label)
    if not files:
        raise UserError(f"{folder} has no images in class folders {', '.join(classes)}")
    return files, torch.tensor(labels)


def _decoded(files: list[str], image_size: int) -> torch.Tensor:
    """Every image resized to ``image_size``, as one uint8 (N, C, H, W) tensor filled in place (a list
    of arrays stacked would hold the data twice); grey if all are grey."""
    from PIL import Image, UnidentifiedImageError

    from zoo import open_image

    out = torch.empty(len(files), 3, image_size, image_size, dtype=torch.uint8)
    grey = True
    for i, file in enumerate(files):
        try:
            with open_image(Path(file)) as img:
                img = img.convert("L" if img.mode in ("1", "L", "I;16") else "RGB")
                img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
                grey = grey and img.mode == "L"
                array = np.asarray(img, dtype=np.uint8).reshape(image_size, image_size, -1)
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"{file} is not a readable image ({exc})") from exc
        out[i] = torch.from_numpy(array.copy()).permute(2, 0, 1)  # a grey image fills all three channels
    return out[:, :1].contiguous() if grey else out


MAX_LABEL_BYTES = 64


def webdataset(root: Path, download: bool = False, image_size: int = 224, workers: int = 0,
               crop_pct: float = 0.875) -> ImageFiles:
    """WebDataset tar shards, streamed: ``root/train/*.tar`` and ``root/test/*.tar`` (or ``val/``), each
    sample a ``<key>.jpg`` (or .png, .webp, ...) with its class number in ``<key>.cls``; class names
    from ``root/classes.txt`` (one per line) when it is there. Members are read where they lie in the
    shards, never extracted."""
    _check_decoding("webdataset", image_size, crop_pct, workers)
    test_dir = _test_folder(root)
    shards = {split: sorted(folder.glob("*.tar")) if folder and folder.is_dir() else []
              for split, folder in (("train", root / "train"), ("test", test_dir))}
    if not shards["train"] or not shards["test"]:
        raise UserError(f"webdataset needs tar shards in {root}/train/ and {root}/test/ (or val/); set the folder "
                        "with --data-dir")
    train, test = _shard_samples(shards["train"]), _shard_samples(shards["test"])
    names_file, count = root / "classes.txt", int(max(train[1].max(), test[1].max())) + 1
    classes = [str(i) for i in range(count)]
    if names_file.exists():
        if regular_file(names_file, "class names").stat().st_size > 10 << 20:
            raise UserError(f"{names_file} is too large to be class names")
        classes = [line.strip() for line in names_file.read_text(errors="replace").splitlines() if line.strip()]
        if len(classes) < count:
            raise UserError(f"{names_file} names {len(classes)} classes; the shards use {count}")
    return ImageFiles("webdataset", *train, *test, classes, image_size=image_size, crop_pct=crop_pct,
                      workers=workers)


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header whose extended headers (PAX, GNU long names) are refused past 1 MB: tarfile would
    read (and allocate) whatever size one announces before looking at it."""

    MAX_EXTENDED_BYTES = 1 << 20

    def _proc_member(self, tarfile_):
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                         tarfile.SOLARIS_XHDTYPE) and not 0 <= self.size <= self.MAX_EXTENDED_BYTES:
            raise tarfile.HeaderError(f"an extended header announcing {self.size} bytes")
        return super()._proc_member(tarfile_)


def _shard_samples(shards: list[Path]) -> tuple[list[tuple[str, int, int, str]], torch.Tensor]:
    """Every sample of the shards: where its image lies (shard, offset, size, member) and its label."""
    files, labels = [], []
    for shard in shards:
        images, classes = {}, {}
        try:
            # uncompressed: members are seekable; headers bounded before tarfile reads what they announce
            with tarfile.open(regular_file(shard, "shard"), "r:", tarinfo=_BoundedTarInfo) as tar:
                for member in tar:
                    key, _, suffix = member.name.rpartition(".")
                    if not member.isfile():
                        continue
                    if "." + suffix.lower() in IMAGE_SUFFIXES:
                        images[key] = (str(shard), member.offset_data, member.size, member.name)
                    elif suffix == "cls":
                        if member.size > MAX_LABEL_BYTES:
                            raise UserError(f"{shard}: {member.name} is no class number")
                        classes[key] = tar.extractfile(member).read().decode("ascii", "replace").strip()
        except (tarfile.TarError, OSError, ValueError, UnicodeError, EOFError) as exc:
            raise UserError(f"{shard} is not a readable tar shard ({str(exc)[:120]})") from exc
        for key in sorted(images.keys() & classes.keys()):
            if not classes[key].isdigit() or int(classes[key]) > 100_000:
                raise UserError(f"{shard}: {key}.cls holds {classes[key][:20]!r}, not a class number")
            files.append(images[key])
            labels.append(int(classes[key]))
    if not files:
        raise UserError(f"{shards[0].parent} has no samples with both an image and a .cls")
    return files, torch.tensor(labels)
