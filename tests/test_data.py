"""Downloads and archives, served by a real HTTP server on localhost."""
from __future__ import annotations

import hashlib
import shutil
import tarfile

import pytest

import zoo
from zoo.data import download, file_md5
from zoo.errors import UserError

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
    assert list(dest.parent.iterdir()) == []
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
