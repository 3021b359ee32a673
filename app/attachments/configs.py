"""Codec configurations, parsed and written back from their fields: an MP4 audio sample entry and its esds (with
its AudioSpecificConfig), damr or dOps; Opus's OpusHead (Ogg and WebM) and the Vorbis identification header.

Each writer emits the fields the decoder needs at their defined lengths and nothing else, so bytes appended to a
configuration, or hidden in its optional parts (an ES descriptor's URL, an encoder's vendor code), never leave.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Callable

from app.attachments._common import Unclean
from app.attachments.boxes import box, boxes, children

_MPEG4_AUDIO, _MPEG2_AAC, _MP3 = {0x40}, {0x66, 0x67, 0x68}, {0x69, 0x6B}
_GENERAL_AUDIO = {1, 2, 3, 4, 6, 7}  # AAC main, LC, SSR, LTP; scalable; TwinVQ: GASpecificConfig
_SBR, _PS = 5, 29


class _Bits:
    """Reads big-endian bit fields."""

    def __init__(self, data: bytes) -> None:
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def read(self, count: int) -> int:
        if count > self.left:
            raise Unclean("truncated bit field")
        self.left -= count
        return self.value >> self.left & ((1 << count) - 1)

    def peek(self, count: int) -> int | None:
        return self.value >> (self.left - count) & ((1 << count) - 1) if count <= self.left else None


class _Writer:
    def __init__(self) -> None:
        self.value, self.count = 0, 0

    def write(self, value: int, count: int) -> None:
        self.value, self.count = self.value << count | value, self.count + count

    def copy(self, bits: _Bits, count: int) -> int:
        value = bits.read(count)
        self.write(value, count)
        return value

    def bytes(self) -> bytes:
        pad = -self.count % 8
        return (self.value << pad).to_bytes((self.count + pad) // 8, "big")


def audio_specific_config(asc: bytes) -> bytes:
    """An MPEG-4 AudioSpecificConfig for AAC, rebuilt from its fields (SBR and PS signalling kept)."""
    bits, out = _Bits(asc), _Writer()
    kind = _object_type(bits, out)
    if out.copy(bits, 4) == 15:  # sampling frequency index, or an explicit frequency
        out.copy(bits, 24)
    channels = out.copy(bits, 4)
    if kind in (_SBR, _PS):
        if out.copy(bits, 4) == 15:
            out.copy(bits, 24)
        kind = _object_type(bits, out)
    if kind not in _GENERAL_AUDIO or channels == 0:
        raise Unclean("audio configuration that cannot be rebuilt")
    out.copy(bits, 1)  # frame length
    if out.copy(bits, 1):  # depends on core coder
        out.copy(bits, 14)
    if out.copy(bits, 1):  # extension flag: not written by AAC encoders
        raise Unclean("audio configuration extension")
    if bits.peek(11) == 0x2B7 and bits.left >= 16:  # backward-compatible SBR/PS signalling
        out.copy(bits, 11)
        if out.copy(bits, 5) == _SBR and out.copy(bits, 1):
            if out.copy(bits, 4) == 15:
                out.copy(bits, 24)
            if bits.peek(11) == 0x548 and bits.left >= 12:
                out.copy(bits, 12)
    return out.bytes()  # anything after the parsed fields is left behind


def _object_type(bits: _Bits, out: _Writer) -> int:
    kind = out.copy(bits, 5)
    return 32 + out.copy(bits, 6) if kind == 31 else kind


def _descriptor(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, payload start, payload end) of the MPEG-4 descriptor at `pos`."""
    if pos + 2 > end:
        raise Unclean("truncated descriptor")
    tag, size, pos = data[pos], 0, pos + 1
    for _ in range(4):
        if pos >= end:
            raise Unclean("truncated descriptor")
        size, pos = size << 7 | data[pos] & 0x7F, pos + 1
        if not data[pos - 1] & 0x80:
            break
    if pos + size > end:
        raise Unclean("descriptor size out of range")
    return tag, pos, pos + size


def _write_descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size, length = len(body), bytearray([len(body) & 0x7F])
    while size > 0x7F:
        size >>= 7
        length.insert(0, 0x80 | size & 0x7F)
    return bytes([tag]) + bytes(length) + body


def esds(payload: bytes) -> bytes:
    """An esds box's payload: the ES descriptor with its decoder configuration only (no URL, no stream links)."""
    if len(payload) < 4 or payload[:4] != bytes(4):
        raise Unclean("bad esds")
    tag, start, end = _descriptor(payload, 4, len(payload))
    if tag != 3 or end - start < 3:
        raise Unclean("no ES descriptor")
    flags, pos = payload[start + 2], start + 3
    pos += 2 if flags & 0x80 else 0
    pos += 1 + payload[pos] if flags & 0x40 and pos < end else 0
    pos += 2 if flags & 0x20 else 0
    config: tuple[int, int] | None = None
    while pos < end:
        tag, child, pos = _descriptor(payload, pos, end)
        if tag == 4 and config is None:
            config = (child, pos)
    if config is None or config[1] - config[0] < 13:
        raise Unclean("no decoder configuration")
    start, end = config
    kind = payload[start]
    buffer_size = int.from_bytes(payload[start + 2 : start + 5], "big")
    max_rate, average_rate = struct.unpack_from(">II", payload, start + 5)
    fields = bytes([kind, 0x15]) + buffer_size.to_bytes(3, "big") + struct.pack(">II", max_rate, average_rate)
    if kind in _MP3:
        specific = b""
    elif kind in _MPEG4_AUDIO | _MPEG2_AAC:
        tag, asc_start, asc_end = _descriptor(payload, start + 13, end)
        if tag != 5:
            raise Unclean("no audio configuration")
        specific = _write_descriptor(5, audio_specific_config(payload[asc_start:asc_end]))
    else:
        raise Unclean("unknown audio object")
    decoder = _write_descriptor(4, fields, specific)
    return bytes(4) + _write_descriptor(3, b"\0\0\0", decoder, _write_descriptor(6, b"\x02"))


def damr(payload: bytes) -> bytes:
    """A damr box's payload (AMR in 3GP): the encoder's vendor code zeroed, the decoder's fields kept."""
    if len(payload) < 9:
        raise Unclean("bad damr")
    return bytes(4) + payload[4:9]


def opus(payload: bytes, *, ogg: bool) -> bytes:
    """An Opus configuration: OpusHead (Ogg, WebM; little-endian, with its magic) or dOps (MP4; big-endian)."""
    order, start = ("<", 8) if ogg else (">", 0)
    if (ogg and not payload.startswith(b"OpusHead")) or len(payload) < start + 11:
        raise Unclean("bad Opus header")
    version, channels, pre_skip, rate, gain, family = struct.unpack_from(order + "BBHIhB", payload, start)
    if version != (1 if ogg else 0) or not channels:
        raise Unclean("bad Opus header")
    mapping = b""
    if family:
        mapping = payload[start + 11 : start + 13 + channels]
        if len(mapping) != 2 + channels:
            raise Unclean("bad Opus channel mapping")
    fields = struct.pack(order + "BBHIhB", version, channels, pre_skip, rate, gain, family)
    return (b"OpusHead" if ogg else b"") + fields + mapping


def vorbis_identification(packet: bytes) -> bytes:
    """The Vorbis identification header (30 bytes), rebuilt from its fields."""
    if len(packet) < 30 or not packet.startswith(b"\x01vorbis"):
        raise Unclean("bad Vorbis header")
    version, channels, rate, maximum, nominal, minimum, blocks = struct.unpack_from("<IBIiiiB", packet, 7)
    if version or not channels or not rate or not packet[29] & 1:
        raise Unclean("bad Vorbis header")
    return b"\x01vorbis" + struct.pack("<IBIiiiB", 0, channels, rate, maximum, nominal, minimum, blocks) + b"\x01"


# Sample entry → its codec configuration box and the function that rebuilds its payload (None: it has none).
_CONFIGS: dict[bytes, tuple[bytes, Callable[[bytes], bytes]] | None] = {
    b"mp4a": (b"esds", esds),
    b"samr": (b"damr", damr),
    b"sawb": (b"damr", damr),
    b"Opus": (b"dOps", functools.partial(opus, ogg=False)),
    b".mp3": None, b"sowt": None, b"twos": None, b"ulaw": None, b"alaw": None,
}  # fmt: skip


def sample_entry(stsd: bytes) -> bytes:
    """An stsd payload's one audio sample entry, rebuilt: its audio fields and its codec configuration, no other
    child (a location box nested in it, say)."""
    if len(stsd) < 8 or int.from_bytes(stsd[4:8], "big") != 1:
        raise Unclean("not one sample description")
    entries = list(itertools.islice(boxes(stsd, 8, len(stsd)), 2))
    if len(entries) != 1 or entries[0][0] not in _CONFIGS or entries[0][2] - entries[0][1] < 28:
        raise Unclean("unknown audio codec")
    kind, start, end = entries[0]
    version = int.from_bytes(stsd[start + 8 : start + 10], "big")
    if version > 1:
        raise Unclean("unknown sample entry version")
    channels, bits = struct.unpack_from(">HH", stsd, start + 16)
    rate = int.from_bytes(stsd[start + 24 : start + 28], "big")
    fields = struct.pack(">6xH8xHH4xI", 1, channels, bits, rate)  # QuickTime's version 1 fields are not needed
    config = _CONFIGS[kind]
    if config is None:
        return box(kind, fields)
    child, rebuild = config
    found = children(stsd, start + 28 + (16 if version else 0), end).get(child)
    if found is None:
        raise Unclean("no codec configuration")
    return box(kind, fields, box(child, rebuild(stsd[slice(*found)])))
