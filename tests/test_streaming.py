"""Data larger than memory: image folders streamed from their files, decoded in worker processes,
at any size; the same results through eval, predict, resume and several processes."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.io.weights import read_metadata
from zoo import ImageData, ImageFiles, RunConfig, train
from zoo.data.streaming import Decoder, centre_crop, random_resized_crop

from conftest import StopAtEpoch, run_zoo

LEARNABLE = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (30, 60, 220)}


def jpeg_folder(root, train: int = 8, test: int = 3, size=(40, 30)):
    """Small JPEGs of three colours, with noise, in train/<class>/ and val/<class>/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", test)):
        for cls, colour in LEARNABLE.items():
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg")
    return root


def folder_data(root, **options):
    return zoo.default_registry().get("data", "imagefolder").load()(root=root, **options)


def test_crops_are_torchvisions_and_drawn_from_the_seed():
    for seed in range(200):
        left, top, right, bottom = random_resized_crop((500, 375), random.Random(seed))
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        area = (right - left) * (bottom - top) / (500 * 375)
        assert 0.07 <= area <= 1.01 and 3 / 4 - 0.02 <= (right - left) / (bottom - top) <= 4 / 3 + 0.02
    assert random_resized_crop((500, 375), random.Random(7)) == random_resized_crop((500, 375), random.Random(7))
    assert centre_crop((400, 300), 0.875) == (68.75, 18.75, 331.25, 281.25)


def test_the_memory_budget_decides_the_path(tmp_path):
    root = jpeg_folder(tmp_path / "pics")
    in_memory = folder_data(root, image_size=24)
    streamed = folder_data(root, image_size=24, budget_gb=1e-6)
    assert isinstance(in_memory, ImageData) and isinstance(streamed, ImageFiles)
    assert isinstance(folder_data(root, image_size=24, stream=True), ImageFiles)
    assert isinstance(folder_data(root, image_size=24, budget_gb=1e-6, stream=False), ImageData)
    assert streamed.channels == 3 and len(streamed.train_files) == 24 and streamed.input_size == 24
    assert streamed.mean == pytest.approx(in_memory.mean, abs=0.03)  # estimated from a sample
    (images, labels), = streamed.train_batches([[0, 9, 23]], seed=0, epoch=0, device="cpu")
    assert images.shape == (3, 3, 24, 24) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 2]
    again, = streamed.train_batches([[0, 9, 23]], seed=0, epoch=0, device="cpu")
    other, = streamed.train_batches([[0, 9, 23]], seed=0, epoch=1, device="cpu")
    assert torch.equal(images, again[0]) and not torch.equal(images, other[0])
    held_out = folder_data(tmp_path / "pics", image_size=24, val_fraction=0.25, stream=True)
    assert len(held_out.test_files) == 9 and len(held_out.train_files) == 24  # val/ is there: it is the test set
    (tmp_path / "pics" / "val").rename(tmp_path / "val")
    held_out = folder_data(tmp_path / "pics", image_size=24, val_fraction=0.25, stream=True)
    assert len(held_out.test_files) == 6 and sorted(held_out.test_labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert not set(held_out.test_files) & set(held_out.train_files) and len(held_out.train_files) == 18


def test_a_streamed_folder_trains_and_eval_and_predict_see_what_training_saw(tmp_path):
    jpeg_folder(tmp_path / "pics")
    result = run_zoo("train", "resnet20", "--set", "width=0.25", "--data", "imagefolder", "--data-dir", "pics",
                     "--data-set", "image_size=36", "--data-set", "budget_gb=0.000001", "--epochs", "2",
                     "--batch-size", "8", "--out", "w.safetensors", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert 0 <= summary["data_wait_share"] <= 1
    meta = read_metadata(tmp_path / "w.safetensors")
    assert meta["data_options"] == {"image_size": 36, "budget_gb": 1e-06} and meta["crop_pct"] == 0.875
    assert meta["input_size"] == 36
    config = json.loads(next((tmp_path / "runs").glob("*/config.json")).read_text())
    assert config["data_options"] == {"image_size": 36, "budget_gb": 1e-06}
    evaluated = run_zoo("eval", "w.safetensors", "--data-dir", "pics", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == summary["test_accuracy"]
    predicted = run_zoo("predict", "w.safetensors", "pics/val/red/0.jpg", "--json", cwd=tmp_path)
    assert predicted.returncode == 0 and json.loads(predicted.stdout)[0]["top"][0]["class"] in LEARNABLE
    # predict decodes an image as the streamed evaluation does: its answer is the model's on that input
    image, _ = Decoder([str(tmp_path / "pics/val/red/0.jpg")], torch.zeros(1, dtype=torch.long), 36, 3, 0.875,
                        None)[0]
    model = zoo.load_model(tmp_path / "w.safetensors")
    with torch.no_grad():
        expected = model(zoo.Normalize(meta["mean"], meta["std"])(image[None])).softmax(1).max().item()
    assert json.loads(predicted.stdout)[0]["top"][0]["probability"] == pytest.approx(expected, rel=1e-4)


def test_a_bad_data_option_or_an_unreadable_streamed_image_is_one_line(tmp_path):
    jpeg_folder(tmp_path / "pics")
    bad = run_zoo("train", "resnet20", "--data", "imagefolder", "--data-dir", "pics", "--data-set", "size=36",
                  cwd=tmp_path)
    assert bad.returncode == 2 and "has no option 'size'" in bad.stderr and "image_size" in bad.stderr
    (tmp_path / "pics" / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    broken = run_zoo("train", "resnet20", "--data", "imagefolder", "--data-dir", "pics", "--data-set", "stream=true",
                     "--epochs", "1", "--batch-size", "8", cwd=tmp_path)
    assert broken.returncode == 2 and "broken.jpg is not a readable image" in broken.stderr
    assert "Traceback" not in broken.stderr


def _streamed_config(root, **changes):
    return RunConfig(model="resnet20", model_options={"width": 0.25}, data="datasets:imagefolder", data_dir=str(root),
                     data_options={"image_size": 32, "stream": True, "workers": 1}, epochs=3, batch_size=8,
                     augs=["augment:hflip"], **changes)


def test_a_streamed_run_resumes_at_the_exact_sample(tmp_path):
    root = jpeg_folder(tmp_path / "pics")
    train(_streamed_config(root), run_dir=tmp_path / "full", weights=tmp_path / "full.safetensors")
    with pytest.raises(KeyboardInterrupt):
        train(_streamed_config(root), run_dir=tmp_path / "cut", weights=tmp_path / "cut.safetensors",
              reporter=StopAtEpoch(1))
    train(None, resume=tmp_path / "cut")
    full, cut = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "cut.safetensors")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_two_processes_stream_their_own_parts_and_match_one_in_fp64(tmp_path):
    """Each rank decodes only its share of every batch; the crops depend on the image, not the rank,
    so two processes compute what one does."""
    jpeg_folder(tmp_path / "pics", train=8)

    def run(out, *extra):
        result = run_zoo("train", "resnet20", "--set", "width=0.25", "--data", "imagefolder", "--data-dir", "pics",
                         "--data-set", "stream=true", "--data-set", "workers=1", "--epochs", "1", "--batch-size", "8",
                         "--trainer", "fp64", "--sync-bn", "--aug", "none", "--out", f"{out}.safetensors",
                         "--run-dir", out, *extra, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        return load_file(tmp_path / f"{out}.safetensors")

    one, two = run("one"), run("two", "--nproc", "2")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-6, atol=1e-8, msg=key)


def shards_of(folder, root, per_shard: int = 5):
    """The folder's images as WebDataset shards: <key>.jpg and <key>.cls, ``per_shard`` samples each."""
    import io
    import tarfile

    classes = sorted(p.name for p in (folder / "train").iterdir())
    for split in ("train", "val"):
        samples = [(f, classes.index(f.parent.name)) for f in sorted((folder / split).glob("*/*.jpg"))]
        (root / split).mkdir(parents=True)
        for start in range(0, len(samples), per_shard):
            with tarfile.open(root / split / f"shard-{start // per_shard:06d}.tar", "w") as tar:
                for i, (file, label) in enumerate(samples[start:start + per_shard]):
                    for suffix, data in ((".jpg", file.read_bytes()), (".cls", str(label).encode())):
                        member = tarfile.TarInfo(f"{split}{start + i:05d}{suffix}")
                        member.size = len(data)
                        tar.addfile(member, io.BytesIO(data))
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_webdataset_shards_stream_like_the_folder_they_came_from(tmp_path):
    folder = jpeg_folder(tmp_path / "pics")
    shards = shards_of(folder, tmp_path / "shards")
    from_shards = zoo.default_registry().get("data", "webdataset").load()(root=shards, image_size=24)
    from_folder = folder_data(folder, image_size=24, stream=True)
    assert from_shards.classes == from_folder.classes and len(from_shards.train_files) == 24
    assert torch.equal(from_shards.train_labels, from_folder.train_labels)
    plan = [[0, 5, 17, 23]]
    (a, la), = from_shards.train_batches(plan, seed=0, epoch=0, device="cpu")
    (b, lb), = from_folder.train_batches(plan, seed=0, epoch=0, device="cpu")
    assert torch.equal(a, b) and torch.equal(la, lb)  # the same bytes, the same crops
    result = run_zoo("train", "resnet20", "--set", "width=0.25", "--data", "webdataset", "--data-dir", "shards",
                     "--data-set", "image_size=32", "--epochs", "1", "--batch-size", "8", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(shards / "train" / "shard-000000.tar", "r+b") as f:  # a label that is no number
        data = f.read()
        f.seek(data.index(b"0\0", data.index(b"train00000.cls") + 512))
        f.write(b"x")
    broken = run_zoo("train", "resnet20", "--data", "webdataset", "--data-dir", "shards", cwd=tmp_path)
    assert broken.returncode == 2 and "train00000.cls holds 'x', not a class number" in broken.stderr


def test_a_weights_file_cannot_make_zoo_eval_start_unbounded_workers(tmp_path):
    jpeg_folder(tmp_path / "pics")
    model = zoo.create_model("resnet20", num_classes=3, width=0.25)
    zoo.save_weights(model, tmp_path / "w.safetensors", classes=sorted(LEARNABLE), num_classes=3, in_chans=3,
                     input_size=32, mean=[0.5] * 3, std=[0.25] * 3, dataset="imagefolder",
                     data_options={"stream": True, "workers": 100_000})
    result = run_zoo("eval", "w.safetensors", "--data-dir", "pics", "--batch-size", "1", cwd=tmp_path)
    assert result.returncode == 2 and "workers in 0..64" in result.stderr, result.stderr
