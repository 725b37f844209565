"""Metrics without code, from TensorBoard: scalars of a run's event files become series.

`metrics.tensorboard_dir: runs` (relative to the working directory) — every scalar summary in
the event files under that folder (`events.out.tfevents.*`, any depth) becomes a point of the
series named by its tag (`train/loss`), at the event's step and wall time. Both scalar forms
writers use are read: `simple_value` (torch.utils.tensorboard, tensorboardX, TF1) and a scalar
tensor marked by the `scalars` plugin (TF2's `tf.summary.scalar`). Images, histograms and text
are skipped; a tag that is not a valid metric name (core/metrics/schemas.py) or a value that is
not finite is dropped.

An event file is a TFRecord stream: `length (u64) | masked crc32c of length | data | masked
crc32c of data`. `records` reads whole records only and says how many bytes it consumed, so a
file still being written is read incrementally (the cursor in `event_file_cursors` moves by
whole records) and a half-written record at the end waits for the next pass. The records'
contents are decoded with TensorBoard's own protobuf definitions and CRC (the `tensorboard`
package, an optional extra: `pip install 'trainport-server[tensorboard]'`), imported on first
use so a worker without it only refuses runs that ask for it.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, NamedTuple

from core.metrics.schemas import METRIC_NAME_PATTERN

EVENT_FILE_GLOB = "events.out.tfevents.*"
HEADER_BYTES = 12  # length and its CRC
FOOTER_BYTES = 4  # the data's CRC
MAX_RECORD_BYTES = 64 << 20  # larger records (huge images) are skipped, never read whole
_NAME = re.compile(METRIC_NAME_PATTERN)
_DT_FLOAT, _DT_DOUBLE, _DT_HALF = 1, 2, 19
_SCALAR_FORMATS = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_HALF: "<e"}


class CorruptEventFile(ValueError):
    """A record's checksum is wrong: the file is not a readable TFRecord stream from here."""


class ScalarPoint(NamedTuple):
    name: str
    step: int
    value: float
    time: float


class Records(NamedTuple):
    """Whole records read from a block, the bytes they took (skipped records included), and
    the size of a record that the block holds only the start of (0 when none)."""

    data: list[bytes]
    consumed: int
    wanted: int


class TensorBoardMissing(RuntimeError):
    """The optional `tensorboard` package is not installed where the worker runs."""


@cache
def _tensorboard() -> tuple[Any, Callable[[bytes], int]]:
    """TensorBoard's Event message and masked CRC32C, imported once and only when needed."""
    try:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    except ImportError as missing:
        raise TensorBoardMissing(
            "metrics.tensorboard_dir needs the `tensorboard` package on the workers "
            "(pip install 'trainport-server[tensorboard]')"
        ) from missing
    return event_pb2.Event, masked_crc32c


def records(data: bytes, check: bool = True) -> Records:
    """The whole TFRecord records at the start of `data` (see the module docstring)."""
    crc = _tensorboard()[1] if check else None
    found: list[bytes] = []
    position = 0
    while position + HEADER_BYTES <= len(data):
        header = data[position : position + 8]
        (length,) = struct.unpack("<Q", header)
        if crc is not None and crc(header) != struct.unpack_from("<I", data, position + 8)[0]:
            raise CorruptEventFile(f"bad length checksum at byte {position}")
        end = position + HEADER_BYTES + length + FOOTER_BYTES
        if length > MAX_RECORD_BYTES:
            if end > len(data):
                return Records(found, position, 0)  # skipped once the file holds all of it
            position = end
            continue
        if end > len(data):
            return Records(found, position, end - position)
        body = data[position + HEADER_BYTES : end - FOOTER_BYTES]
        if crc is not None and crc(body) != struct.unpack_from("<I", data, end - 4)[0]:
            raise CorruptEventFile(f"bad data checksum in the record at byte {position}")
        found.append(body)
        position = end
    return Records(found, position, 0)


def scalars(record: bytes) -> Iterator[ScalarPoint]:
    """The scalar summaries of one event record."""
    event_type = _tensorboard()[0]
    event = event_type.FromString(record)
    if event.WhichOneof("what") != "summary" or event.step < 0:
        return
    for value in event.summary.value:
        number = _number(value)
        if number is not None and math.isfinite(number) and _valid_name(value.tag):
            yield ScalarPoint(value.tag, int(event.step), number, float(event.wall_time))


def _number(value: Any) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind != "tensor" or value.metadata.plugin_data.plugin_name != "scalars":
        return None
    tensor = value.tensor
    if tensor.tensor_shape.dim:  # a scalar has no dimensions
        return None
    for values in (tensor.float_val, tensor.double_val):
        if len(values) == 1:
            return float(values[0])
    layout = _SCALAR_FORMATS.get(tensor.dtype)
    if layout and len(tensor.tensor_content) == struct.calcsize(layout):
        return float(struct.unpack(layout, tensor.tensor_content)[0])
    return None


def _valid_name(tag: str) -> bool:
    return 0 < len(tag) <= 64 and _NAME.fullmatch(tag) is not None


def available() -> bool:
    """Whether this process can read event files."""
    try:
        _tensorboard()
    except TensorBoardMissing:
        return False
    return True
