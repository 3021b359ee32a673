"""Ogg Opus and Ogg Vorbis voice notes: the comment header replaced by an empty one, the pages renumbered."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from app.attachments._common import Unclean, checked

_OGG_HEADERS = {b"OpusHead": (b"OpusTags", 2), b"\x01vorbis": (b"\x03vorbis", 3)}
_OGG_SERIAL = 0x74697062  # one fixed stream serial number for every file, so no two files can be linked by it
_BITSWAP = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


@dataclass(frozen=True, slots=True)
class Page:
    """One Ogg page of the stream: its header flags, granule position, lacing values and body."""

    flags: int
    granule: int
    lacing: bytes
    body: bytes


def read_pages(data: bytes) -> list[Page]:
    """The pages of a single logical stream; anything after the last whole page is left behind."""
    pages: list[Page] = []
    serial = None
    pos = 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        version, flags, granule, page_serial, _, _, segments = struct.unpack_from("<BBqIIIB", data, pos + 4)
        lacing = data[pos + 27 : pos + 27 + segments]
        end = pos + 27 + segments + sum(lacing)
        if version != 0 or len(lacing) < segments or end > len(data):
            break
        if serial is None:
            serial = page_serial
        elif page_serial != serial or flags & 0x02:
            raise Unclean("more than one logical stream")
        pages.append(Page(flags, granule, lacing, data[pos + 27 + segments : end]))
        pos = end
        if flags & 0x04:
            break  # end of stream
    return pages


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


def _ogg_paginate(packets: list[bytes], sequence: int) -> list[bytes]:
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
        pages.append(_ogg_page(0x01 if continued else 0, 0 if ends else -1, sequence + len(pages), lacing, body))
        continued = not chunk[-1][2]
    return pages


def clean_ogg(data: bytes) -> bytes:
    codec = stream_codec(data)
    pages = read_pages(data)
    # The identification header must sit alone on the first page, as both specifications require.
    if codec is None or not pages or not pages[0].flags & 0x02 or len(pages[0].lacing) != 1:
        raise Unclean("not an Opus or Vorbis stream")
    comment_magic, header_count = _OGG_HEADERS[codec]
    headers, first_audio = read_headers(pages, header_count - 1)
    if not headers[0].startswith(comment_magic):
        raise Unclean("no comment header")
    comment = empty_comment(comment_magic)
    out = [_ogg_page(0x02, 0, 0, pages[0].lacing, pages[0].body)]
    out += _ogg_paginate([comment, *headers[1:]], 1)
    for n, page in enumerate(pages[first_audio:], start=len(out)):
        out.append(_ogg_page(page.flags & 0x05, page.granule, n, page.lacing, page.body))
    return checked(b"".join(out), "opus" if codec == b"OpusHead" else "vorbis")


def empty_comment(magic: bytes) -> bytes:
    """An Opus or Vorbis comment header with no comments, and "tipbox" as the vendor."""
    vendor = b"tipbox"
    comment = magic + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    return comment + b"\x01" if magic == b"\x03vorbis" else comment  # Vorbis ends it with a framing bit


def read_headers(pages: list[Page], count: int) -> tuple[list[bytes], int]:
    """The `count` header packets after the first page, and the index of the first audio page."""
    packets: list[bytes] = []
    packet = b""
    for n, page in enumerate(pages[1:], start=1):
        if bool(page.flags & 0x01) != bool(packet):
            raise Unclean("broken packet continuation")
        offset = 0
        for i, value in enumerate(page.lacing):
            packet += page.body[offset : offset + value]
            offset += value
            if value < 255:
                packets.append(packet)
                packet = b""
                if len(packets) == count:
                    # Audio must start on a fresh page: the last header ends its page.
                    if i != len(page.lacing) - 1 or n + 1 >= len(pages) or pages[n + 1].flags & 0x01:
                        raise Unclean("headers and audio share a page, or no audio")
                    return packets, n + 1
    raise Unclean("incomplete headers")
