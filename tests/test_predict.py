"""zoo predict on what people have: folders, patterns, many images in batches, a broken file among them."""
from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

import zoo
from zoo import UserError, iter_predictions

from conftest import run_zoo

CLASSES = ["red", "green", "blue"]


@pytest.fixture
def photos(tmp_path):
    """Weights of a small untrained network, and a folder tree of 5 images, a broken one and a note."""
    model = zoo.create_model("resnet20", num_classes=3, width=0.25)
    zoo.save_weights(model, tmp_path / "w.safetensors", classes=CLASSES, num_classes=3, in_chans=3, input_size=32,
                     mean=[0.5] * 3, std=[0.25] * 3, dataset="imagefolder")
    for i, name in enumerate(["a/1.png", "a/2.jpg", "b/c/3.png", "4.png", "b/5.webp"]):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 30), (40 * i, 200 - 30 * i, 90)).save(tmp_path / "photos" / name)
    (tmp_path / "photos" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "photos" / "notes.txt").write_text("not an image: not even tried")
    return tmp_path


def test_a_folder_is_searched_and_a_broken_image_is_skipped_and_counted(photos):
    result = run_zoo("predict", "w.safetensors", "photos", "--format", "jsonl", "--top-k", "2", cwd=photos)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in lines] == [f"photos/{n}" for n in ("4.png", "a/1.png", "a/2.jpg", "b/5.webp",
                                                                    "b/c/3.png")]
    assert all(len(r["top"]) == 2 and r["top"][0]["class"] in CLASSES for r in lines)
    assert "skipped photos/b/broken.png is not an image zoo can read" in result.stderr
    assert "5 images predicted, 1 unreadable skipped" in result.stderr


def test_patterns_csv_and_batches_give_the_same_answers(photos):
    one_batch = run_zoo("predict", "w.safetensors", "photos/**/*.png", "--format", "csv", cwd=photos)
    assert one_batch.returncode == 0, one_batch.stderr
    rows = list(csv.DictReader(io.StringIO(one_batch.stdout)))
    assert [r["image"] for r in rows][::3] == ["photos/4.png", "photos/a/1.png", "photos/b/c/3.png"]  # broken skipped
    assert [r["rank"] for r in rows] == ["1", "2", "3"] * 3
    small = run_zoo("predict", "w.safetensors", "photos/**/*.png", "--format", "csv", "--batch-size", "1",
                    cwd=photos)
    for a, b in zip(rows, csv.DictReader(io.StringIO(small.stdout))):
        assert (a["image"], a["class"]) == (b["image"], b["class"])
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=1e-5)


def test_the_python_api_yields_errors_in_place(photos):
    results = list(iter_predictions(photos / "w.safetensors", [photos / "photos" / "4.png", photos / "missing.png"],
                                    top_k=1, batch_size=8))
    assert results[0]["top"][0]["class"] in CLASSES and "does not exist" in results[1]["error"]
    with pytest.raises(UserError, match="`top_k` and `batch_size` must be positive"):
        list(iter_predictions(photos / "w.safetensors", [photos / "photos"], batch_size=0))
    nothing = run_zoo("predict", "w.safetensors", "photos/b/broken.png", cwd=photos)
    assert nothing.returncode == 2 and "no image could be read: photos/b/broken.png is not an image" in nothing.stderr
