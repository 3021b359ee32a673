"""WebM (Matroska) voice notes: a whitelist re-muxer that writes every kept element from its parsed value.

The EBML header is written anew; the segment's timestamp scale and duration, the Opus or Vorbis audio tracks' fields
(numbers, floats, the codec configuration rebuilt by `configs`) and the clusters' timestamps and blocks are kept.
Tags, attachments, chapters, cues, seek heads, bytes after a codec configuration and every element not on the
lists below are left behind; the after-cleaning check cleans the output again and requires the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from app.attachments import configs
from app.attachments._common import MAX_SECONDS, Unclean, settled
from app.attachments.ogg import empty_comment

_EBML, _SEGMENT, _INFO, _TRACKS, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675
_DOCTYPE, _TIMESCALE, _DURATION = 0x4282, 0x2AD7B1, 0x4489
_TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE, _CODEC_ID, _AUDIO_SETTINGS = 0xAE, 0xD7, 0x83, 0x86, 0xE1
_CONTENT_ENCODINGS, _CODEC_PRIVATE = 0x6D80, 0x63A2
_TRACK_UINTS = (0x56AA, 0x56BB, 0x23E383, 0x9C)  # codec delay, seek pre-roll, default duration, lacing
_AUDIO_FLOATS, _AUDIO_UINTS = (0xB5, 0x78B5), (0x9F, 0x6264)  # sampling frequencies; channels, bit depth
_CLUSTER_CHILDREN = {0xE7, 0xA3, 0xA0, 0xA7, 0xAB, 0x5854, 0xEC, 0xBF}
_SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK, _CLUSTER_TIME = 0xA3, 0xA0, 0xA1, 0xE7
_GROUP_KEEP = {0xA1, 0x9B, 0xFB, 0x75A2}  # block, duration, reference, discard padding
_GROUP_INTS = {0x9B: False, 0xFB: True, 0x75A2: True}  # (signed)
_WEBM_CODECS = {b"A_OPUS", b"A_VORBIS"}
# Blocks in a recording of the longest length accepted, at one a 20 ms frame (a recorder writes that many, or
# fewer when it laces frames): past that, a file of tiny blocks is refused before its walk costs seconds of CPU.
MAX_BLOCKS = MAX_SECONDS * 50


def _vint(data: bytes, pos: int, *, marker: bool) -> tuple[int, int, bool]:
    """(value, length, all ones) of the EBML variable-length integer at `pos`."""
    if pos >= len(data) or data[pos] == 0:
        raise Unclean("bad EBML number")
    first = data[pos]
    if first & 0x80:  # one byte, as most IDs and sizes inside a cluster are
        return (first if marker else first & 0x7F), 1, first == 0xFF
    length = 9 - first.bit_length()
    if pos + length > len(data):
        raise Unclean("truncated EBML number")
    value = int.from_bytes(data[pos : pos + length], "big")
    payload = value & ((1 << (7 * length)) - 1)
    return (value if marker else payload), length, payload == (1 << (7 * length)) - 1


def _elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, payload start, payload end) of each EBML element; unknown sizes only for Segment and Cluster."""
    pos = start
    while pos < end:
        element, id_length, _ = _vint(data, pos, marker=True)
        size, size_length, unknown = _vint(data, pos + id_length, marker=False)
        payload = pos + id_length + size_length
        if unknown and element == _SEGMENT:
            stop = end
        elif unknown and element == _CLUSTER:
            stop = _cluster_end(data, payload, end)
        elif unknown or payload + size > end:
            raise Unclean("bad EBML element size")
        else:
            stop = payload + size
        yield element, payload, stop
        pos = stop


def _cluster_end(data: bytes, pos: int, end: int) -> int:
    """A Cluster of unknown size (as recorders write them) ends where an element that is not its child starts."""
    while pos < end:
        element, id_length, _ = _vint(data, pos, marker=True)
        if element not in _CLUSTER_CHILDREN:
            return pos
        size, size_length, unknown = _vint(data, pos + id_length, marker=False)
        pos += id_length + size_length + size
        if unknown or pos > end:
            raise Unclean("bad EBML element size")
    return end


def _head(element: int, size: int) -> bytes:
    """An element's ID and its size, in the fewest bytes."""
    length = next(n for n in range(1, 9) if size < (1 << (7 * n)) - 1)
    return element.to_bytes((element.bit_length() + 7) // 8, "big") + ((1 << (7 * length)) | size).to_bytes(
        length, "big"
    )


def _ebml(element: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return _head(element, len(body)) + body


def _ebml_uint(element: int, value: int) -> bytes:
    return _ebml(element, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _ebml_int(element: int, value: int) -> bytes:
    return _ebml(element, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _number(data: bytes, start: int, end: int, *, signed: bool = False) -> int:
    if end - start > 8:
        raise Unclean("EBML number too long")
    return int.from_bytes(data[start:end], "big", signed=signed)


def _float(element: int, data: bytes, start: int, end: int) -> bytes:
    """A float element written back from its value, at its width (4 or 8 bytes)."""
    if end - start not in (0, 4, 8):
        raise Unclean("bad EBML float")
    form = ">f" if end - start == 4 else ">d"
    value = struct.unpack(form, data[start:end])[0] if end > start else 0.0
    return _ebml(element, struct.pack(form, value))


def doctype(data: bytes) -> bytes | None:
    try:
        for element, start, end in _elements(data, 0, len(data)):
            if element != _EBML:
                return None
            return next((data[s:e].rstrip(b"\0") for i, s, e in _elements(data, start, end) if i == _DOCTYPE), None)
    except Unclean:
        return None
    return None


def clean_webm(data: bytes) -> bytes:
    """The audio of a WebM file, rebuilt, proven to hold only its parsed values and audio blocks."""
    return settled(_rebuild, data)


def _rebuild(data: bytes) -> bytes:
    # Everything after the first Segment (a second one, trailing bytes) is left behind.
    segment = next(((start, end) for element, start, end in _elements(data, 0, len(data)) if element == _SEGMENT), None)
    if segment is None:
        raise Unclean("no segment")
    info: list[bytes] = []
    tracks: dict[int, bytes] = {}
    clusters = bytearray()  # one buffer, written as the clusters are read: no object per block or element
    blocks = 0
    for element, start, end in _elements(data, *segment):
        if element == _INFO:
            for i, s, e in _elements(data, start, end):
                if i == _TIMESCALE:
                    info.append(_ebml_uint(i, _number(data, s, e)))
                elif i == _DURATION:
                    info.append(_float(i, data, s, e))
        elif element == _TRACKS and not clusters:
            for entry, s, e in _elements(data, start, end):
                track = _webm_track(data, s, e) if entry == _TRACK_ENTRY else None
                if track is not None:
                    tracks[track[0]] = track[1]
        elif element == _CLUSTER and tracks:  # a recorder writes the tracks first; blocks before them are dropped
            blocks += _webm_cluster(data, start, end, set(tracks), clusters)
            if blocks > MAX_BLOCKS:
                raise Unclean("more blocks than a recording of the longest length holds")
    # SeekHead, Cues (their offsets would be wrong), Tags, Attachments, Chapters, Void, CRC-32: dropped.
    if not tracks or not blocks:
        raise Unclean("no audio")
    header = _ebml(
        _EBML,
        _ebml_uint(0x4286, 1), _ebml_uint(0x42F7, 1), _ebml_uint(0x42F2, 4), _ebml_uint(0x42F3, 8),
        _ebml(_DOCTYPE, b"webm"), _ebml_uint(0x4287, 4), _ebml_uint(0x4285, 2),
    )  # fmt: skip
    info_element = _ebml(_INFO, *info, _ebml(0x4D80, b"tipbox"), _ebml(0x5741, b"tipbox"))
    head = info_element + _ebml(_TRACKS, *tracks.values())
    out = bytearray(header + _head(_SEGMENT, len(head) + len(clusters)) + head)
    out += clusters
    del clusters
    return bytes(out)


def _webm_track(data: bytes, start: int, end: int) -> tuple[int, bytes] | None:
    """(number, rebuilt TrackEntry) for an Opus or Vorbis audio track; None for other tracks."""
    values = {element: (s, e) for element, s, e in _elements(data, start, end)}

    def uint(element: int) -> int:
        return int.from_bytes(data[slice(*values.get(element, (0, 0)))], "big")

    if uint(_TRACK_TYPE) != 2:
        return None  # video, subtitles...: dropped, and their blocks with them
    number = uint(_TRACK_NUMBER)
    codec = data[slice(*values.get(_CODEC_ID, (0, 0)))].rstrip(b"\0")
    if codec not in _WEBM_CODECS or _CONTENT_ENCODINGS in values or not number:
        raise Unclean("audio track that cannot be kept")
    settings = {element: (s, e) for element, s, e in _elements(data, *values.get(_AUDIO_SETTINGS, (start, start)))}
    audio = [_float(i, data, *settings[i]) for i in _AUDIO_FLOATS if i in settings]
    audio += [_ebml_uint(i, _number(data, *settings[i])) for i in _AUDIO_UINTS if i in settings]
    entry = [_ebml_uint(_TRACK_NUMBER, number), _ebml_uint(0x73C5, number), _ebml_uint(_TRACK_TYPE, 2)]
    entry.append(_ebml(_CODEC_ID, codec))
    if _CODEC_PRIVATE in values:
        private = data[slice(*values[_CODEC_PRIVATE])]
        rebuilt = configs.opus(private, ogg=True) if codec == b"A_OPUS" else vorbis_private(private)
        entry.append(_ebml(_CODEC_PRIVATE, rebuilt))
    entry += [_ebml_uint(i, _number(data, *values[i])) for i in _TRACK_UINTS if i in values]
    entry.append(_ebml(_AUDIO_SETTINGS, *audio))
    return number, _ebml(_TRACK_ENTRY, *entry)


def vorbis_private(private: bytes) -> bytes:
    """Vorbis CodecPrivate (three Xiph-laced headers) with its comment header replaced by an empty one."""
    if private[:1] != b"\x02":
        raise Unclean("not three Vorbis headers")
    sizes, pos = [], 1
    for _ in range(2):
        size = 0
        while pos < len(private) and private[pos] == 255:
            size, pos = size + 255, pos + 1
        if pos >= len(private):
            raise Unclean("truncated Vorbis headers")
        sizes.append(size + private[pos])
        pos += 1
    ident = configs.vorbis_identification(private[pos : pos + sizes[0]])
    setup = private[pos + sizes[0] + sizes[1] :]
    if not setup.startswith(b"\x05vorbis"):
        raise Unclean("unexpected Vorbis headers")
    comment = empty_comment(b"\x03vorbis")
    lacing = b"".join(b"\xff" * (len(part) // 255) + bytes([len(part) % 255]) for part in (ident, comment))
    return b"\x02" + lacing + ident + comment + setup


def _int(element: int, data: bytes, start: int, end: int) -> bytes:
    signed = _GROUP_INTS[element]
    value = _number(data, start, end, signed=signed)
    return _ebml_int(element, value) if signed else _ebml_uint(element, value)


def _webm_cluster(data: bytes, start: int, end: int, tracks: set[int], out: bytearray) -> int:
    """Write a Cluster with its timestamp and the blocks of `tracks` only to `out` (nothing when it has none of
    those); the number of blocks written."""
    children = bytearray()
    blocks = 0
    for element, s, e in _elements(data, start, end):
        if element == _CLUSTER_TIME:
            children += _ebml_uint(element, _number(data, s, e))
        elif element == _SIMPLE_BLOCK and _vint(data, s, marker=False)[0] in tracks:
            children += _head(element, e - s)
            children += memoryview(data)[s:e]
            blocks += 1
        elif element == _BLOCK_GROUP:
            group = [(i, gs, ge) for i, gs, ge in _elements(data, s, e) if i in _GROUP_KEEP]
            block = [gs for i, gs, _ in group if i == _BLOCK]
            if len(block) == 1 and _vint(data, block[0], marker=False)[0] in tracks:
                kept = (_ebml(i, data[gs:ge]) if i == _BLOCK else _int(i, data, gs, ge) for i, gs, ge in group)
                children += _ebml(_BLOCK_GROUP, *kept)
                blocks += 1
        # Position, PrevSize, SilentTracks, Void, CRC-32 and block additions: dropped.
    if blocks:
        out += _head(_CLUSTER, len(children))
        out += children
    return blocks
