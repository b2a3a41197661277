"""Decompressing the records of a Kafka record batch (v2), with a bound on the output.

A v2 batch compresses everything after its 61-byte header as one block, with the codec
in attributes bits 0-2: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd. gzip comes from the
standard library; snappy (``pip install python-snappy``), lz4 (``pip install lz4``) and
zstd (``pip install zstandard``) are used when their packages are installed, else the
batch is refused with UnsupportedCompressionTypeError naming the package to install.

Framing, as Kafka's Java client writes it (and kafka-python, aiokafka, librdkafka read):
gzip is a gzip stream (possibly several members), snappy is xerial's framing (an 8-byte
magic, two int32 versions, then int32-length-prefixed raw snappy blocks) or one raw
snappy block, lz4 is the LZ4 frame format, zstd one zstd frame.

A small compressed block may expand enormously (a "zip bomb"), so every codec stops at
``limit`` output bytes and the batch is refused past it with MESSAGE_TOO_LARGE (the
labkit batch it would become is over message.max.bytes anyway). Pure: no
state; the codec modules are imported on first use.
"""

from __future__ import annotations

import importlib
import io
import struct
import zlib

from labkit.errors import (
    CorruptRecordError,
    MessageSizeTooLargeError,
    UnsupportedCompressionTypeError,
)

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
# codec -> (module to import, package to pip install)
_PACKAGES = {
    SNAPPY: ("snappy", "python-snappy"),
    LZ4: ("lz4.frame", "lz4"),
    ZSTD: ("zstandard", "zstandard"),
}
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16  # magic + int32 version + int32 compatible version
_BLOCK_LENGTH = struct.Struct(">i")


def decompress(codec: int, payload, limit: int) -> bytes:
    """The records of a batch compressed with ``codec``, at most ``limit`` bytes.

    Raises UnsupportedCompressionTypeError (unknown codec, or its package is missing),
    CorruptRecordError (the block does not decompress) and MessageSizeTooLargeError
    (it expands past ``limit``)."""
    if codec == GZIP:
        return _gunzip(payload, limit)
    if codec not in _PACKAGES:
        raise UnsupportedCompressionTypeError(
            f"compression codec {codec} is not one of Kafka's (0 none, 1 gzip, 2 snappy, "
            "3 lz4, 4 zstd)"
        )
    module = _codec_module(codec)
    try:
        if codec == SNAPPY:
            out = _unsnappy(module, bytes(payload), limit)
        elif codec == LZ4:
            out = module.LZ4FrameDecompressor().decompress(bytes(payload), max_length=limit + 1)
        else:
            reader = module.ZstdDecompressor().stream_reader(io.BytesIO(bytes(payload)))
            out = reader.read(limit + 1)
    except (CorruptRecordError, MessageSizeTooLargeError):
        raise
    except Exception as exc:  # noqa: BLE001 - each codec library raises its own error classes
        raise CorruptRecordError(
            f"the {CODEC_NAMES[codec]} block of a record batch does not decompress: {exc}"
        ) from None
    return _bounded(out, limit)


def _codec_module(codec: int):
    module_name, package = _PACKAGES[codec]
    try:
        return importlib.import_module(module_name)
    except ImportError:
        raise UnsupportedCompressionTypeError(
            f"this broker cannot read {CODEC_NAMES[codec]}-compressed batches: "
            f"pip install {package} where the broker runs (or produce with "
            "compression_type='gzip' or none)"
        ) from None


def _too_large(limit: int) -> MessageSizeTooLargeError:
    return MessageSizeTooLargeError(
        f"a compressed record batch expands past {limit} bytes, the broker's "
        "message.max.bytes: send smaller batches (batch_size) or raise message.max.bytes"
    )


def _bounded(out: bytes, limit: int) -> bytes:
    if len(out) > limit:
        raise _too_large(limit)
    return out


def _gunzip(payload, limit: int) -> bytes:
    parts = []
    size = 0
    data = bytes(payload)
    try:
        while data:
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            part = member.decompress(data, limit + 1 - size)
            size += len(part)
            parts.append(part)
            if size > limit:
                raise _too_large(limit)
            if not member.eof:
                raise CorruptRecordError("a gzip block of a record batch is truncated")
            data = member.unused_data
    except zlib.error as exc:
        raise CorruptRecordError(f"the gzip block of a record batch is corrupt: {exc}") from None
    return b"".join(parts)


def _unsnappy(module, data: bytes, limit: int) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return module.decompress(data)
    parts = []
    size = 0
    pos = _XERIAL_HEADER
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptRecordError("a snappy block length is truncated")
        (length,) = _BLOCK_LENGTH.unpack_from(data, pos)
        pos += 4
        if length < 0 or pos + length > len(data):
            raise CorruptRecordError(f"a snappy block claims {length} bytes past the batch")
        part = module.decompress(data[pos : pos + length])
        pos += length
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)
