"""Exported files are untrusted like weights files. torch.export.load unpickles weights marked
``use_pickle`` and its sample inputs, evaluates shape expressions with sympy (``eval``), compiles the
archive's ``guards_code`` into Python, and calls any ``torch.*`` attribute a node names; onnxruntime
reads external data from any path and allocates what a ConstantOfShape asks. So an archive is
checked member by member, and re-packed with only what zoo's exports hold, before either runtime
sees it; and every tensor a graph would make is sized (without memory) before it runs."""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from zoo import UserError, parse_json, regular_file

MAX_FILE_BYTES = 2 << 30  # VGG19 at ImageNet size is 0.55 GB; protobuf (ONNX) cannot exceed 2 GB
MAX_MEMBERS = 100_000
MAX_NODES = 100_000
MAX_ELEMENTS = 1 << 28  # per tensor and per image: VGG's largest map at 224 px is 3.2 M

# What torch.export.save writes for one program named "model", under one folder; nothing else is read.
_PT2_MEMBER = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                         r"|models/model\.json|data/weights/model_weights_config\.json|data/weights/weight_\d+"
                         r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
                         r"|data/sample_inputs/model\.pt|extra/zoo)")
_SAMPLE_INPUTS = "data/sample_inputs/model.pt"  # a pickle: replaced by nothing, which torch reads as {}
_OPERATOR = re.compile(r"torch\.ops\.aten\.\w+\.\w+|_operator\.getitem")
_REFUSED_OPERATORS = {"from_file"}  # reads a file named in the graph
# A shape expression, once its symbols are removed, must be plain integer arithmetic: sympy
# evaluates it with eval, so no names, no attributes, no power.
_SYMBOL = re.compile(r"Symbol\('[a-z]+\d+'(, (positive|integer)=True)*\)|\b[a-z]+\d+\b")
_ARITHMETIC = re.compile(r"[\d\s+\-*()]*")


def _size_check(path: Path, what: str) -> Path:
    path = regular_file(path, what)
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path} is empty; it is not an exported model")
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path} is larger than an exported model zoo reads ({MAX_FILE_BYTES >> 30} GB)")
    return path


def checked_pt2(path: Path) -> io.BytesIO:
    """The archive at ``path`` re-packed with only the members torch.export.save writes for one model,
    each checked: no pickled weight or constant, no sample inputs, no guard code, no subgraph or custom
    object, only ATen operators, shape expressions of integers and symbols, bounded sizes and counts."""
    path = _size_check(path, "exported model")
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a .pt2 archive, or it is truncated ({type(exc).__name__})") from None
    with archive:
        if not infos or len(infos) > MAX_MEMBERS:
            raise UserError(f"{path} holds {len(infos)} members, which no exported model of zoo's does")
        prefix = infos[0].filename.partition("/")[0] + "/"
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename.removeprefix(prefix)
            if not info.filename.startswith(prefix) or not _PT2_MEMBER.fullmatch(name) or name in members:
                raise UserError(f"{path} holds {_shown(info.filename)}, which zoo does not read from an export")
            if info.compress_type != zipfile.ZIP_STORED:  # torch stores; a compressed member could be a bomb
                raise UserError(f"{path} holds a compressed member ({_shown(info.filename)}); torch.export "
                                "writes none")
            members[name] = info
        total = sum(info.file_size for info in infos)
        if total > MAX_FILE_BYTES:
            raise UserError(f"{path} claims {total >> 20} MB of members, more than an exported model zoo reads")
        for needed in ("models/model.json", "data/weights/model_weights_config.json", "extra/zoo"):
            if needed not in members:
                raise UserError(f"{path} has no {needed}; it was not written by zoo export")
        try:
            contents = {name: b"" if name == _SAMPLE_INPUTS else archive.read(info) for name, info in members.items()}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise UserError(f"{path} is truncated or corrupt ({type(exc).__name__})") from None
    for name in ("models/model.json", "data/weights/model_weights_config.json",
                 "data/constants/model_constants_config.json"):
        if name in contents:
            _check_program_json(_json(contents[name], path, name), path, name, contents)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_STORED) as out:
        for name, data in contents.items():
            out.writestr(prefix + name, data)
    packed.seek(0)
    return packed


def _json(data: bytes, path: Path, name: str) -> Any:
    return parse_json(data, f"{name} in {path}")


def _check_program_json(document: Any, path: Path, name: str, contents: dict[str, bytes]) -> None:
    def refuse(why: str) -> UserError:
        return UserError(f"{path}: {name} {why}; zoo does not load such an export")

    nodes = 0
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
            continue
        if not isinstance(value, dict):
            continue
        for key, item in value.items():
            if key == "use_pickle" and item is not False:
                raise refuse("marks a tensor as pickled")
            if key == "path_name" and name != "models/model.json":
                folder = name.rpartition("/")[0]
                if not isinstance(item, str) or f"{folder}/{item}" not in contents:
                    raise refuse(f"names a member it does not hold ({_shown(str(item))})")
            if key == "guards_code" and item != []:
                raise refuse("carries guard code, which torch would compile and run")
            if key in ("as_graph", "as_custom_obj", "custom_obj_values") and item:
                raise refuse(f"holds {key.removeprefix('as_').replace('_', ' ')}s")
            if key == "expr_str":
                _check_expression(item, refuse)
            if key == "target" and isinstance(item, str):
                nodes += 1
                operator = item.split(".")[3] if item.startswith("torch.ops.aten.") else ""
                if not _OPERATOR.fullmatch(item) or operator in _REFUSED_OPERATORS:
                    raise refuse(f"calls {_shown(item)}, which is not an ATen operator zoo allows")
            if key == "sizes" and isinstance(item, list):
                elements = 1
                for size in item:
                    if isinstance(size, dict) and "as_int" in size:
                        if type(size["as_int"]) is not int or not 0 <= size["as_int"] <= MAX_ELEMENTS:
                            raise refuse("declares a tensor size out of bounds")
                        elements *= size["as_int"]
                if elements > MAX_ELEMENTS:
                    raise refuse(f"declares a tensor of {elements:.3g} elements")
            stack.append(item)
    if nodes > MAX_NODES:
        raise refuse(f"has {nodes} nodes")


def _check_expression(expression: Any, refuse) -> None:
    if not isinstance(expression, str) or len(expression) > 256 or "**" in expression or \
            not _ARITHMETIC.fullmatch(_SYMBOL.sub("0", expression)):
        raise refuse(f"holds the shape expression {_shown(str(expression))}, which is not integer arithmetic")


def _shown(text: str) -> str:
    return repr(text[:80])


def bounded_run(module, what: str):
    """``module`` as a function that first sizes every tensor its graph would make for the input's
    shape, with fake tensors (no memory), and refuses one of more than MAX_ELEMENTS per image."""
    import torch
    import torch.utils._pytree as pytree
    from torch._subclasses.fake_tensor import FakeTensorMode

    checked: set[tuple[int, ...]] = set()

    class Sizing(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            for tensor in pytree.tree_leaves(result):
                if isinstance(tensor, torch.Tensor) and tensor.numel() > MAX_ELEMENTS * self.batch:
                    raise UserError(f"{what} would make a tensor of {tuple(tensor.shape)} in {node.name}; "
                                    "zoo does not run such an export")
            return result

    def run(x):
        shape = tuple(x.shape)
        if shape not in checked:
            mode = FakeTensorMode(allow_non_fake_inputs=True)
            sizing = Sizing(module)
            sizing.batch = max(1, shape[0])
            with mode:
                sizing.run(mode.from_tensor(x))
            checked.add(shape)
        return module(x)

    return run


def checked_onnx(path: Path):
    """The ONNX model at ``path``, parsed and checked before onnxruntime sees it: every tensor inside
    the file (no external data), only the standard operator set, and a shape known and bounded for
    every value the graph computes, the batch excepted."""
    import onnx
    from google.protobuf.message import DecodeError

    path = _size_check(path, "exported model")
    with open(path, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise UserError(f"{path} is not an ONNX model, or it is truncated ({type(exc).__name__})") from None
    graph = model.graph
    if not graph.node or len(graph.input) != 1 or len(graph.node) > MAX_NODES:
        raise UserError(f"{path} is not an image classifier zoo exported (one input, a graph of nodes)")
    if model.functions or any(node.domain not in ("", "ai.onnx") for node in graph.node):
        raise UserError(f"{path} uses operators outside ONNX's standard set; zoo does not run such an export")
    if any(op.domain not in ("", "ai.onnx") for op in model.opset_import):
        raise UserError(f"{path} imports an operator set other than ONNX's")

    def tensors():
        yield from graph.initializer
        for sparse in graph.sparse_initializer:  # its values and indices are tensors, each could be external
            yield from (sparse.values, sparse.indices)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.g.ByteSize() or attribute.graphs:
                    raise UserError(f"{path} holds subgraphs ({node.op_type}); zoo does not run such an export")
                yield from ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)

    for tensor in tensors():
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise UserError(f"{path} keeps tensors in other files (external data); zoo reads only what the "
                            "file holds")
    batch = graph.input[0].type.tensor_type.shape.dim[0] if graph.input[0].type.tensor_type.shape.dim else None
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
        raise UserError(f"{path}: ONNX cannot infer the shapes of its graph, so zoo cannot bound what it "
                        f"allocates ({str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''})") from None
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    computed = {out for node in graph.node for out in node.output if out}
    if computed - {v.name for v in values}:
        raise UserError(f"{path}: ONNX cannot tell the shape of {len(computed - {v.name for v in values})} values "
                        "of its graph, so zoo cannot bound what it allocates")
    for value in values:
        elements = 1
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                elements *= dim.dim_value
            elif not (batch is not None and dim.HasField("dim_param") and dim.dim_param == batch.dim_param):
                raise UserError(f"{path}: the shape of {_shown(value.name)} depends on more than the batch, so "
                                "zoo cannot bound what it allocates")
        if elements > MAX_ELEMENTS:
            raise UserError(f"{path} would make a tensor of {elements:.3g} elements ({_shown(value.name)}); zoo "
                            "does not run such an export")
    return model, data

