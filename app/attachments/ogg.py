"""Ogg Opus and Ogg Vorbis voice notes: the headers rebuilt, the audio pages renumbered, one fixed stream serial.

The identification header is written from its parsed fields (`configs`), the comment header replaced by an empty
one; Vorbis's setup header (codebooks) is copied as a packet. Audio pages keep their packets and granule positions.
mutagen could drop the comments, but it keeps the first page, the stream's serial number and the page layout as
they came, and the after-cleaning check needs this reader anyway: it stays.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from app.attachments import configs
from app.attachments._common import MAX_SECONDS, Unclean, checked, settled

_OGG_HEADERS = {b"OpusHead": (b"OpusTags", 2), b"\x01vorbis": (b"\x03vorbis", 3)}
_OGG_SERIAL = 0x74697062  # one fixed stream serial number for every file, so no two files can be linked by it
_BITSWAP = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))
# Pages in a recording of the longest length accepted, at one page a 20 ms packet (recorders write one a second):
# past that, a file of tiny pages is refused before its walk costs seconds of CPU.
_MAX_PAGES = MAX_SECONDS * 50


@dataclass(frozen=True, slots=True)
class Page:
    """One Ogg page of the stream: its header flags, granule position, lacing values and body."""

    flags: int
    granule: int
    lacing: bytes
    body: bytes


def read_pages(data: bytes) -> Iterator[Page]:
    """The pages of a single logical stream, one at a time; anything after the last whole page is left behind."""
    serial = None
    pos = 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        version, flags, granule, page_serial, _, _, segments = struct.unpack_from("<BBqIIIB", data, pos + 4)
        lacing = data[pos + 27 : pos + 27 + segments]
        end = pos + 27 + segments + sum(lacing)
        if version != 0 or len(lacing) < segments or end > len(data):
            return
        if serial is None:
            serial = page_serial
        elif page_serial != serial or flags & 0x02:
            raise Unclean("more than one logical stream")
        yield Page(flags, granule, lacing, data[pos + 27 + segments : end])
        pos = end
        if flags & 0x04:
            return  # end of stream


def stream_codec(data: bytes) -> bytes | None:
    """The identification header's magic ("OpusHead" or "\\x01vorbis") of an Ogg file, if it is one of those."""
    segments = data[26] if len(data) > 27 else 0
    first = data[27 + segments : 27 + segments + 8]
    return next((magic for magic in _OGG_HEADERS if first.startswith(magic)), None)


def _ogg_page(flags: int, granule: int, sequence: int, lacing: bytes, body: bytes) -> bytes:
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, _OGG_SERIAL, sequence, 0, len(lacing))
    page = header + lacing + body
    crc = ~zlib.crc32(page.translate(_BITSWAP), -1) & 0xFFFFFFFF  # Ogg's CRC is zlib's, bit-reversed
    return page[:22] + crc.to_bytes(4, "big").translate(_BITSWAP) + page[26:]


def _ogg_paginate(packets: list[bytes], sequence: int, flags: int = 0) -> list[bytes]:
    """Header packets laid out on fresh pages (granule 0), as many as they need."""
    segments: list[tuple[int, bytes, bool]] = []  # (lacing value, data, ends a packet)
    for packet in packets:
        whole, rest = divmod(len(packet), 255)
        segments += [(255, packet[i * 255 : (i + 1) * 255], False) for i in range(whole)]
        segments.append((rest, packet[whole * 255 :], True))
    pages: list[bytes] = []
    continued = False
    for i in range(0, len(segments), 255):
        chunk = segments[i : i + 255]
        ends = any(ends for _, _, ends in chunk)
        lacing = bytes(value for value, _, _ in chunk)
        body = b"".join(part for _, part, _ in chunk)
        first = flags if not pages else 0
        pages.append(
            _ogg_page(first | (0x01 if continued else 0), 0 if ends else -1, sequence + len(pages), lacing, body)
        )
        continued = not chunk[-1][2]
    return pages


def clean_ogg(data: bytes) -> bytes:
    """The stream rebuilt, proven to hold only its headers' fields and its audio pages, read back by mutagen."""
    return checked(settled(_rebuild, data), "opus" if stream_codec(data) == b"OpusHead" else "vorbis")


def _rebuild(data: bytes) -> bytes:
    codec = stream_codec(data)
    pages = read_pages(data)
    first = next(pages, None)
    # The identification header must sit alone on the first page, as both specifications require.
    if codec is None or first is None or not first.flags & 0x02 or len(first.lacing) != 1:
        raise Unclean("not an Opus or Vorbis stream")
    comment_magic, header_count = _OGG_HEADERS[codec]
    headers, audio = read_headers(pages, header_count - 1)
    if not headers[0].startswith(comment_magic):
        raise Unclean("no comment header")
    opus = codec == b"OpusHead"
    identification = configs.opus(first.body, ogg=True) if opus else configs.vorbis_identification(first.body)
    out = bytearray(b"".join(_ogg_paginate([identification], 0, flags=0x02)))
    header_pages = _ogg_paginate([empty_comment(comment_magic), *headers[1:]], 1)
    out += b"".join(header_pages)
    sequence = 1 + len(header_pages)
    for page in itertools.chain((audio,), pages):
        out += _ogg_page(page.flags & 0x05, page.granule, sequence, page.lacing, page.body)
        sequence += 1
        if sequence > _MAX_PAGES:
            raise Unclean("longer than a recording may be")
    return bytes(out)


def empty_comment(magic: bytes) -> bytes:
    """An Opus or Vorbis comment header with no comments, and "tipbox" as the vendor."""
    vendor = b"tipbox"
    comment = magic + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    return comment + b"\x01" if magic == b"\x03vorbis" else comment  # Vorbis ends it with a framing bit


def read_headers(pages: Iterator[Page], count: int) -> tuple[list[bytes], Page]:
    """The `count` header packets after the first page, and the first audio page."""
    packets: list[bytes] = []
    packet = bytearray()
    for page in pages:
        if bool(page.flags & 0x01) != bool(packet):
            raise Unclean("broken packet continuation")
        offset = 0
        for i, value in enumerate(page.lacing):
            packet += page.body[offset : offset + value]
            offset += value
            if value < 255:
                packets.append(bytes(packet))
                packet = bytearray()
                if len(packets) == count:
                    # Audio must start on a fresh page: the last header ends its page.
                    audio = next(pages, None)
                    if i != len(page.lacing) - 1 or audio is None or audio.flags & 0x01:
                        raise Unclean("headers and audio share a page, or no audio")
                    return packets, audio
    raise Unclean("incomplete headers")
