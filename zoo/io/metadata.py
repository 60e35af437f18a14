"""The metadata of a zoo weights file, as one record: its fields, their types and their bounds are
declared once here, checked on reading (the file is untrusted) and written with a format version.

Format 1 is every file written before the version was recorded: the same fields, so it reads as 2.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import UserError
from ..base.typed import conforms

FORMAT = 2
MAX_INPUT_SIZE = 2048  # pixels a side: a VGG's first map is then 1 GB per image; larger is no classic CNN's input
MAX_CLASSES = 100_000
MAX_BATCH = 65_536
MAX_BATCH_VALUES = 1 << 28  # an export's fixed batch of inputs, as floats (1 GiB): what zoo predict must allocate


def fixed_batch_fits(batch_size: int, channels: int, size: int) -> bool:
    """Whether a fixed batch of images is one zoo predict may build for an exported file."""
    return 1 <= batch_size <= MAX_BATCH and batch_size * channels * size * size <= MAX_BATCH_VALUES


def _field(default: Any, must: str) -> Any:
    """A field with what its value must be, in the words a refusal uses."""
    return dataclasses.field(default_factory=default, metadata={"must": must}) if callable(default) else \
        dataclasses.field(default=default, metadata={"must": must})


@dataclass(frozen=True)
class WeightsMetadata(Mapping):
    """What a weights file says of itself. ``model`` and its ``options`` rebuild the network; the data
    fields say what it was trained on (spelt as timm spells them: ``in_chans``, ``input_size``). A
    file may hold more (``zoo.save_weights(**info)``): that is kept in ``extra``, read by no one in zoo.

    zoo reads the fields as attributes (a field the file lacks has its default). ``model.zoo_meta[key]``
    reads the file's table as it was written, as before the record existed: it is a read-only mapping."""

    model: str = _field("", "a model name")
    format: int = _field(FORMAT, f"a whole number in 1..{FORMAT}")
    architecture: str = _field("", "text")
    wrappers: list[str] = _field(list, "a list of names")
    plugins: dict[str, str] = _field(dict, "a table")
    options: dict[str, Any] = _field(dict, "a table")
    in_chans: int | None = _field(None, "a whole number in 1..64")
    input_size: int | None = _field(None, f"a whole number in 1..{MAX_INPUT_SIZE}")
    num_classes: int | None = _field(None, f"a whole number in 1..{MAX_CLASSES}")
    padded_from: int | None = _field(None, "a whole number in 1..{input_size}")
    classes: list[str] | None = _field(None, "a list of class names")
    mean: list[float] | None = _field(None, "one number per channel")
    std: list[float] | None = _field(None, "one number per channel, each positive")
    crop_pct: float | None = _field(None, "a number in 0.05..1")  # None: the whole image
    batch_size: int | None = _field(None, f"a whole number in 1..{MAX_BATCH}, its images at most "
                                          f"{MAX_BATCH_VALUES:,} values")  # an export's fixed batch; None: any
    dataset: str | None = _field(None, "text")
    data_dir: str | None = _field(None, "text")  # where the run's data was: said in errors, never read by zoo
    data_options: dict[str, Any] = _field(dict, "a table")
    trainer: dict[str, Any] = _field(dict, "a table with a name and options")
    metrics: dict[str, float] = _field(dict, "a table of numbers")
    pretrained: str = _field("", "the name of the weights the run started from")
    parameters: int | None = _field(None, "a whole number in 0..10**12")
    provenance: dict[str, Any] = _field(dict, "a table")
    zoo_version: str = _field("", "text")
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    written: tuple[str, ...] = dataclasses.field(default=(), repr=False, compare=False)  # the fields the file has

    @classmethod
    def checked(cls, document: Any, path: Path) -> "WeightsMetadata":
        """The record of ``document``, a file's parsed metadata, refused with one line naming the field
        unless every field zoo reads is of its type and within its bounds."""
        if isinstance(document, dict) and "history" in document:  # what a run writes as it goes
            raise UserError(f"{path} is a run's checkpoint, for zoo train --resume; use the weights file the run "
                            "writes when it ends")
        if not isinstance(document, dict):
            raise UserError(f"{path}: its metadata must be a table")
        hints = typing.get_type_hints(cls)
        declared = _file_fields()
        for f in declared:
            if (f.name == "model" or f.name in document) and not conforms(document.get(f.name), hints[f.name]):
                raise _refusal(path, f)
        names = {f.name for f in declared}
        record = cls(**{name: document[name] for name in names if name in document},
                     extra={k: v for k, v in document.items() if k not in names},
                     written=tuple(k for k in document if k in names))
        wrong = record.out_of_bounds()
        if wrong:
            raise _refusal(path, next(f for f in declared if f.name == wrong), record)
        return record

    def document(self) -> dict[str, Any]:
        """The JSON table a file holds: the fields it was given, and the extra ones, in their order."""
        return {**{name: getattr(self, name) for name in self.written}, **self.extra}

    def __getitem__(self, key: str) -> Any:
        if key in self.written:
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter((*self.written, *self.extra))

    def __len__(self) -> int:
        return len(self.written) + len(self.extra)

    def out_of_bounds(self) -> str | None:
        """The first field whose value is of its type but outside what any real weights hold."""
        bounds = {"format": (1, FORMAT), "in_chans": (1, 64), "input_size": (1, MAX_INPUT_SIZE),
                  "num_classes": (1, MAX_CLASSES), "padded_from": (1, self.input_size or MAX_INPUT_SIZE),
                  "parameters": (0, 10**12)}
        for name, (low, high) in bounds.items():
            if getattr(self, name) is not None and not low <= getattr(self, name) <= high:
                return name
        channels = self.in_chans or len(self.mean or self.std or ())
        checks = {
            "model": 0 < len(self.model) <= 256,
            "classes": self.classes is None or 0 < len(self.classes) <= MAX_CLASSES and all(
                len(c) <= 1000 for c in self.classes),
            "num_classes": self.classes is None or (self.num_classes or len(self.classes)) == len(self.classes),
            "mean": self.mean is None or len(self.mean) == channels and all(-1e6 <= v <= 1e6 for v in self.mean),
            "std": self.std is None or len(self.std) == channels and all(1e-12 <= v <= 1e6 for v in self.std),
            "crop_pct": self.crop_pct is None or 0.05 <= self.crop_pct <= 1,
            "pretrained": len(self.pretrained) <= 4096,
            "data_dir": self.data_dir is None or len(self.data_dir) <= 4096,
            "batch_size": self.batch_size is None or fixed_batch_fits(self.batch_size, self.in_chans or 3,
                                                                      self.input_size or 224),
            "provenance": conforms(self.provenance.get("versions", {}), dict[str, Any]),
            "trainer": conforms(self.trainer.get("name", ""), str) and conforms(self.trainer.get("options", {}), dict),
        }
        return next((name for name, ok in checks.items() if not ok), None)


def _file_fields() -> list[dataclasses.Field]:
    """The fields a file's table may hold (``extra`` and ``written`` are the record's own)."""
    return [f for f in dataclasses.fields(WeightsMetadata) if "must" in f.metadata]


def _refusal(path: Path, f: dataclasses.Field, record: WeightsMetadata | None = None) -> UserError:
    must = f.metadata["must"].replace("{input_size}", str(record.input_size if record and record.input_size
                                                             else MAX_INPUT_SIZE))
    if f.name == "num_classes" and record is not None and record.classes is not None and record.num_classes and \
            1 <= record.num_classes <= MAX_CLASSES:
        must = f"the number of classes ({len(record.classes)})"
    return UserError(f"{path}: metadata field {f.name!r} must be {must}")
