"""Downloads and archives, served by a real HTTP server on localhost."""
from __future__ import annotations

import hashlib
import shutil
import tarfile

import pytest

import zoo
from zoo.base.files import download, file_md5
from zoo.base.errors import UserError

from conftest import write_cifar10


def test_download_checks_the_md5_and_leaves_no_partial_file(server, tmp_path):
    folder, url = server
    payload = bytes(range(256)) * 12_000  # several chunks
    (folder / "a.bin").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    dest = tmp_path / "data" / "a.bin"
    with pytest.raises(UserError, match="download of .*a.bin is corrupt"):
        download(url + "a.bin", dest, "0" * 32)
    with pytest.raises(UserError, match="cannot download .*missing.bin"):
        download(url + "missing.bin", dest, md5)
    assert not dest.parent.exists()  # the folder the failed download made is gone, with no partial file
    assert download(url + "a.bin", dest, md5) == dest and dest.read_bytes() == payload
    (folder / "a.bin").unlink()  # a file already in place with the right MD5 needs no network
    assert download(url + "a.bin", dest, md5) == dest


def test_cifar10_is_downloaded_or_taken_from_an_archive_put_there_by_hand(server, tmp_path, monkeypatch):
    from zoo_datasets.loaders import CIFAR

    folder, url = server
    source = write_cifar10(tmp_path / "source")
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setitem(CIFAR, "cifar10", {**CIFAR["cifar10"], "url": url + archive.name, "md5": file_md5(archive)})
    load = zoo.default_registry().get("data", "cifar10").load()
    assert load(root=tmp_path / "downloaded", download=True).train_images.shape == (100, 3, 32, 32)

    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    shutil.copy(archive, by_hand)
    archive.unlink()  # no server copy: the archive in the data folder is used, downloads off or not
    assert len(load(root=by_hand, download=False).test_images) == 20

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / archive.name).write_bytes(b"not a tar.gz")
    with pytest.raises(UserError, match="cifar-10-python.tar.gz is corrupt .*delete it and download it again"):
        load(root=corrupt, download=False)


def test_fashion_mnist_is_downloaded_when_missing(server, tmp_path, monkeypatch):
    import gzip

    from zoo_datasets import loaders

    folder, url = server
    sample = loaders.SAMPLE
    for name in loaders.FASHION_FILES:  # the embedded sample's files, served as the published ones
        shutil.copy(sample / name, folder / name)
    monkeypatch.setattr(loaders, "FASHION_URL", url)
    monkeypatch.setattr(loaders, "DEBIAN_FASHION", tmp_path / "no-debian")
    monkeypatch.setattr(loaders, "FASHION_FILES", {n: file_md5(folder / n) for n in loaders.FASHION_FILES})
    data = loaders.fashion_mnist(tmp_path / "data")
    assert data.name == "fashion-mnist" and len(data.train_images) == 5000
    assert sorted(p.name for p in (tmp_path / "data" / "fashion-mnist").iterdir()) == sorted(loaders.FASHION_FILES)
    assert len(gzip.open(tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read()) == 1008


def test_a_failed_download_leaves_no_folders(server, tmp_path, monkeypatch):
    from zoo_datasets import loaders

    folder, url = server
    monkeypatch.setattr(loaders, "FASHION_URL", url)
    monkeypatch.setattr(loaders, "DEBIAN_FASHION", tmp_path / "no-debian")
    with pytest.raises(UserError, match="cannot download") as failed:
        loaders.fashion_mnist(tmp_path / "data" / "deep")
    assert not (tmp_path / "data").exists()
    # and says every way forward: a folder, Debian's package, the embedded sample
    assert all(way in str(failed.value) for way in (f"idx .gz files in {tmp_path / 'data' / 'deep' / 'fashion-mnist'}",
                                                    "dataset-fashion-mnist", "--data fashion-mnist-sample"))


def test_an_idx_gzip_bomb_stops_at_the_size_its_header_announces(tmp_path):
    import gzip

    from zoo_datasets.loaders import read_idx

    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb") as f:
        f.write((2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        f.write(b"\0" * (100 << 20))  # 100 MB of zeros where 7,840 bytes belong
    with pytest.raises(UserError, match="more bytes of data for shape"):
        read_idx(bomb)
    huge = tmp_path / "huge"
    huge.write_bytes((2051).to_bytes(4, "big") + (10**9).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    with pytest.raises(UserError, match="beyond any image dataset"):
        read_idx(huge)


def test_limits_take_a_seeded_class_balanced_subset():
    import torch

    from zoo.data.images import ImageData

    labels = torch.arange(3).repeat_interleave(100)  # sorted by class, as an image folder is
    images = torch.zeros(300, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(300) % 256, torch.arange(300) // 256  # the index
    data = ImageData("sorted", images, labels, images, labels, ["a", "b", "c"], [0.5], [0.25])
    small = data.subset(30, 7, seed=1)
    assert torch.bincount(small.train_labels).tolist() == [10, 10, 10]
    assert sorted(torch.bincount(small.test_labels).tolist()) == [2, 2, 3]
    assert torch.equal(data.subset(30, seed=1).train_labels, small.train_labels)  # seeded
    again = data.subset(30, seed=2)
    assert len(again.train_labels) == 30 and not torch.equal(again.train_images, small.train_images)
    assert len(data.subset(None, None).train_labels) == 300
