"""Exported files (.pt2, .onnx) are untrusted like weights files: nothing in one runs, reads, writes or
allocates without bound, and each refusal is one line, exit 2. The crafted files below are real
exports changed as an attacker would change them."""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

import zoo
from zoo import UserError

from conftest import run_zoo

FIELDS = dict(classes=[f"c{i}" for i in range(10)], num_classes=10, in_chans=3, input_size=32, mean=[0.5] * 3,
              std=[0.25] * 3, dataset="cifar10")


class Marker:
    """A pickle that, once loaded, creates ``path``: the proof that a file ran code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    model = zoo.create_model("resnet", num_classes=10, layers=[1, 1, 1], base_channels=4)
    weights = zoo.save_weights(model, folder / "w.safetensors", **FIELDS)
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "red.png")
    zoo.export_weights(weights, "pt2", dynamic_batch=True)
    return folder


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def repack(source: Path, target: Path, change) -> Path:
    """A copy of the archive ``source`` with ``change(members)`` applied (a dict of name to bytes)."""
    contents = members(source)
    change(contents)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for name, data in contents.items():
            out.writestr(name, data)
    return target


def edit_json(contents: dict[str, bytes], name: str, change) -> None:
    key = f"archive/{name}"
    document = json.loads(contents[key])
    change(document)
    contents[key] = json.dumps(document).encode()


def predict(path: Path, folder: Path):
    return zoo.predict(path, [folder / "red.png"])


def test_a_zoo_export_still_predicts_after_the_checks(exported):
    assert predict(exported / "w.pt2", exported)[0]["top"][0]["class"].startswith("c")


def pickled_weight(marker):
    def change(contents):
        edit_json(contents, "data/weights/model_weights_config.json",
                  lambda d: next(iter(d["config"].values())).update(use_pickle=True))
        first = json.loads(contents["archive/data/weights/model_weights_config.json"])
        name = next(iter(first["config"].values()))["path_name"]
        contents[f"archive/data/weights/{name}"] = pickle.dumps(Marker(marker))
    return change


def pickled_sample_inputs(marker):
    def change(contents):
        contents["archive/data/sample_inputs/model.pt"] = pickle.dumps(Marker(marker))
    return change


def shape_expression(marker):
    def change(contents):
        def edit(document):
            values = document["graph_module"]["graph"]["tensor_values"]
            sizes = next(iter(values.values()))["sizes"]
            sizes[0] = {"as_expr": {"expr_str": f"__import__('builtins').open({str(marker)!r}, 'w') and 1",
                                    "hint": {"as_int": 1}}}
        edit_json(contents, "models/model.json", edit)
    return change


def guard_code(marker):
    def change(contents):
        edit_json(contents, "models/model.json",
                  lambda d: d.update(guards_code=[f"open({str(marker)!r}, 'w') is None"]))
    return change


def operator(target):
    def make(marker):
        def change(contents):
            edit_json(contents, "models/model.json",
                      lambda d: d["graph_module"]["graph"]["nodes"][0].update(target=target))
        return change
    return make


def extra_member(marker):
    def change(contents):
        contents["archive/data/aotinductor/model/model.so"] = b"\x7fELF"
    return change


@pytest.mark.parametrize("attack", [pickled_weight, pickled_sample_inputs, shape_expression, guard_code,
                                    operator("torch.hub.download_url_to_file"), operator("builtins.exec"),
                                    operator("torch.ops.aten.from_file.default"), extra_member],
                         ids=["pickled_weight", "pickled_sample_inputs", "shape_expression", "guard_code",
                              "torch_function", "builtin", "aten_from_file", "extra_member"])
def test_a_crafted_pt2_runs_nothing(exported, tmp_path, attack):
    marker = tmp_path / "ran"
    crafted = repack(exported / "w.pt2", tmp_path / "crafted.pt2", attack(marker))
    try:
        predict(crafted, exported)  # the sample inputs are never read: the rest of that file is a good export
    except UserError as error:
        assert "\n" not in str(error)
    assert not marker.exists()


def test_a_graph_that_would_allocate_without_bound_is_refused_before_it_runs(exported, tmp_path):
    class Blowup(torch.nn.Module):
        def forward(self, x):
            return x.repeat(1, 1, 2, 2).mean((2, 3)).repeat(1, 4)[:, :10] * 0

    program = torch.export.export(Blowup(), (torch.randn(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    buffer = io.BytesIO()
    carried = json.dumps({"model": "resnet", **FIELDS})
    torch.export.save(program, buffer, extra_files={"zoo": carried})
    (tmp_path / "honest.pt2").write_bytes(buffer.getvalue())
    assert len(predict(tmp_path / "honest.pt2", exported)[0]["top"]) == 3

    def bigger(document):  # the graph asks for 2^16 x 2^16 copies; its declared shapes say 2 x 2
        node = next(n for n in document["graph_module"]["graph"]["nodes"] if "repeat" in n["target"])
        node["inputs"][1]["arg"] = {"as_ints": [1, 1, 1 << 16, 1 << 16]}

    crafted = repack(tmp_path / "honest.pt2", tmp_path / "crafted.pt2",
                     lambda c: edit_json(c, "models/model.json", bigger))
    with pytest.raises(UserError, match="would make a tensor of"):
        predict(crafted, exported)


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
@pytest.mark.parametrize("content", ["text", "empty", "truncated", "sparse", "huge"])
def test_a_broken_export_is_one_line(exported, tmp_path, suffix, content):
    if suffix == ".onnx":
        pytest.importorskip("onnxruntime")
        zoo.export_weights(exported / "w.safetensors", "onnx", out=tmp_path / "good.onnx", dynamic_batch=True)
        good = (tmp_path / "good.onnx").read_bytes()
    else:
        good = (exported / "w.pt2").read_bytes()
    path = tmp_path / f"bad{suffix}"
    if content == "text":
        path.write_text("print('hello')\n")
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        path.write_bytes(good[:len(good) // 2])
    else:  # a sparse file: all zeros, read in no time, or past the size zoo reads at all
        sparse(path, 200 << 20 if content == "sparse" else 3 << 30)
    with pytest.raises(UserError) as error:
        predict(path, exported)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_the_cli_refuses_a_crafted_pt2_in_one_line(exported, tmp_path):
    marker = tmp_path / "ran"
    crafted = repack(exported / "w.pt2", tmp_path / "crafted.pt2", pickled_weight(marker))
    result = run_zoo("predict", str(crafted), str(exported / "red.png"), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "pickled" in result.stderr, result.stderr
    assert not marker.exists()


def onnx_model(nodes, initializers=(), output_shape=(None, 10)):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(output_shape))
    graph = helper.make_graph(nodes, "crafted", [images], [logits], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.metadata_props.add(key="zoo", value=json.dumps({"model": "resnet", **FIELDS}))
    return onnx, model


def test_onnx_external_data_outside_the_file_is_never_read(exported, tmp_path):
    onnx, model = onnx_model([])
    from onnx import TensorProto, helper

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 40)
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value=str(secret))
    model.graph.initializer.append(weight)
    model.graph.node.extend([helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
                             helper.make_node("Add", ["m", "w"], ["logits"])])
    onnx.save(model, tmp_path / "crafted.onnx")
    with pytest.raises(UserError, match="external data"):
        predict(tmp_path / "crafted.onnx", exported)


@pytest.mark.parametrize("attack", ["constant_of_shape", "custom_domain", "shape_from_data"])
def test_an_onnx_graph_that_could_allocate_without_bound_or_run_foreign_operators_is_refused(exported, tmp_path,
                                                                                               attack):
    onnx, model = onnx_model([])
    from onnx import TensorProto, helper

    if attack == "constant_of_shape":
        shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1 << 20, 1 << 20])
        model.graph.node.extend([helper.make_node("Constant", [], ["s"], value=shape),
                                 helper.make_node("ConstantOfShape", ["s"], ["big"]),
                                 helper.make_node("ReduceMean", ["big"], ["logits"], keepdims=0)])
    elif attack == "custom_domain":
        model.graph.node.append(helper.make_node("Anything", ["images"], ["logits"], domain="com.example"))
        model.opset_import.append(helper.make_opsetid("com.example", 1))
    else:  # a shape read from the input's values: nothing bounds it before it runs
        model.graph.node.extend([helper.make_node("Cast", ["images"], ["i"], to=TensorProto.INT64),
                                 helper.make_node("ReduceMax", ["i"], ["n"], keepdims=0),
                                 helper.make_node("Reshape", ["n", "one"], ["s"]),
                                 helper.make_node("ConstantOfShape", ["s"], ["big"]),
                                 helper.make_node("ReduceMean", ["big"], ["logits"], keepdims=0)])
        model.graph.initializer.append(helper.make_tensor("one", TensorProto.INT64, [1], [1]))
    onnx.save(model, tmp_path / "crafted.onnx")
    with pytest.raises(UserError) as error:
        predict(tmp_path / "crafted.onnx", exported)
    assert "\n" not in str(error.value)


def test_onnx_leaves_nothing_beside_the_export_and_nothing_in_home(exported, tmp_path):
    pytest.importorskip("onnxruntime")
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    weights = out / "w.safetensors"
    weights.write_bytes((exported / "w.safetensors").read_bytes())
    (out / "red.png").write_bytes((exported / "red.png").read_bytes())
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    assert run_zoo("export", str(weights), "--format", "onnx", env=env, cwd=out).returncode == 0
    fixed = run_zoo("export", str(weights), "--format", "onnx", "--batch-size", "2", "--out", str(out / "fixed.onnx"),
                    env=env, cwd=out)
    assert fixed.returncode == 0, fixed.stderr
    assert sorted(os.listdir(out)) == ["fixed.onnx", "red.png", "w.onnx", "w.safetensors"]
    result = run_zoo("predict", str(out / "w.onnx"), str(out / "red.png"), env=env, cwd=out)
    assert result.returncode == 0, result.stderr
    one = run_zoo("predict", str(out / "fixed.onnx"), str(out / "red.png"), env=env, cwd=out)  # padded to 2
    assert one.returncode == 0 and one.stdout.split(":")[1] == result.stdout.split(":")[1], one.stderr
    assert list(home.rglob("*")) == []


def test_a_fixed_batch_that_would_allocate_without_bound_is_refused_before_zoo_predict_builds_it(tmp_path):
    from zoo.io.metadata import WeightsMetadata

    fields = {"model": "resnet20", "in_chans": 3, "input_size": 2048}
    assert WeightsMetadata.checked({**fields, "batch_size": 16}, tmp_path / "x.onnx").batch_size == 16
    with pytest.raises(UserError, match="batch_size.*at most 268,435,456 values") as refused:
        WeightsMetadata.checked({**fields, "batch_size": 4096}, tmp_path / "x.onnx")  # 51 GB of inputs
    assert "\n" not in str(refused.value)
