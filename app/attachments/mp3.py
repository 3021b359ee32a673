"""MP3 and AMR voice notes: the audio frames copied one by one, nothing else (no ID3, APE or Lyrics3 tags)."""

from __future__ import annotations

from app.attachments._common import MAX_SECONDS, Unclean, checked, settled

_MP3_KBPS = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 layer III
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2 and 2.5 layer III
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
# A recorder writes one ID3v2 tag, two at most. Walking a hostile chain of empty ones costs CPU on the event loop
# (sniffing runs there): past MAX_ID3_TAGS tags, or a first frame past MAX_ID3_BYTES, the file is not accepted.
MAX_ID3_TAGS = 4
MAX_ID3_BYTES = 1024 * 1024
# Frames in a recording of the longest length accepted (a frame lasts at least 24 ms in MP3, 20 ms in AMR): past
# that, a file of tiny frames is refused before its walk costs seconds of CPU.
_MAX_MP3_FRAMES, _MAX_AMR_FRAMES = MAX_SECONDS * 1000 // 24, MAX_SECONDS * 50


def _id3v2_end(data: bytes, pos: int) -> int:
    """Where the ID3v2 tag at `pos` ends (its size is a 28-bit "syncsafe" integer)."""
    if len(data) < pos + 10 or any(byte & 0x80 for byte in data[pos + 6 : pos + 10]):
        raise Unclean("bad ID3v2 tag")
    size = 0
    for byte in data[pos + 6 : pos + 10]:
        size = size << 7 | byte
    return pos + 10 + size + (10 if data[pos + 5] & 0x10 else 0)


def _mp3_frame(data: bytes, pos: int, signature: bytes | None = None) -> int:
    """The length of the MPEG layer III frame at `pos`, or 0 if there is none (or it does not match `signature`)."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return 0
    version, layer = data[pos + 1] >> 3 & 3, data[pos + 1] >> 1 & 3
    bitrate, rate = data[pos + 2] >> 4, data[pos + 2] >> 2 & 3
    if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
        return 0
    if signature is not None and (data[pos + 1] & 0xFE, data[pos + 2] & 0x0C) != (signature[0], signature[1]):
        return 0
    kbps = _MP3_KBPS[3 if version == 3 else 2][bitrate]
    slot = 144 if version == 3 else 72
    return slot * kbps * 1000 // _MP3_RATES[version][rate] + (data[pos + 2] >> 1 & 1)


def first_frame(data: bytes) -> int | None:
    """Where the first of two consecutive MPEG layer III frames starts, after any ID3v2 tags."""
    pos = tags = 0
    try:
        while data[pos : pos + 3] == b"ID3":
            tags += 1
            pos = _id3v2_end(data, pos)
            if tags > MAX_ID3_TAGS or pos > MAX_ID3_BYTES:
                return None
    except Unclean:
        return None
    for start in range(pos, min(pos + 4096, len(data) - 3)):
        length = _mp3_frame(data, start)
        if length and (start + length == len(data) or _mp3_frame(data, start + length, _signature(data, start))):
            return start
    return None


def _signature(data: bytes, pos: int) -> bytes:
    return bytes((data[pos + 1] & 0xFE, data[pos + 2] & 0x0C))


def clean_mp3(data: bytes) -> bytes:
    """The MPEG audio frames, proven to be all the output holds, read back by mutagen."""
    return checked(settled(_mp3_frames, data), "mp3")


def _mp3_frames(data: bytes) -> bytes:
    start = first_frame(data)
    if start is None:
        raise Unclean("no MPEG audio frames")
    signature = _signature(data, start)
    view = memoryview(data)
    frames = bytearray()  # one buffer, not one object per frame: a frame may be 24 bytes
    pos = start
    tags = count = 0
    while True:
        length = _mp3_frame(data, pos, signature)
        if length and pos + length <= len(data):
            count += 1
            if count > _MAX_MP3_FRAMES:
                raise Unclean("longer than a recording may be")
            frames += view[pos : pos + length] if frames else _without_encoder_tag(data[pos : pos + length])
            pos += length
        elif data[pos : pos + 3] == b"ID3" and pos + 10 <= len(data):
            tags += 1
            if tags > MAX_ID3_TAGS:
                raise Unclean("too many ID3v2 tags")
            pos = _id3v2_end(data, pos)  # a tag between frames is skipped; audio may follow it
        else:
            break  # ID3v1, APE, Lyrics3 or anything else after the last frame is left behind
    return bytes(frames)


def _without_encoder_tag(frame: bytes) -> bytes:
    """The first frame with the LAME extension of a Xing/Info header (the encoder's name and settings) zeroed.

    The Xing fields themselves (frame and byte counts, seek table) stay: players need them for VBR files.
    """
    mono = frame[3] >> 6 == 3
    side_info = (17 if mono else 32) if frame[1] >> 3 & 3 == 3 else (9 if mono else 17)
    pos = 4 + side_info + (0 if frame[1] & 1 else 2)
    if frame[pos : pos + 4] not in (b"Xing", b"Info") or len(frame) < pos + 8:
        return frame
    flags = int.from_bytes(frame[pos + 4 : pos + 8], "big")
    end = pos + 8 + 4 * (flags & 1) + 4 * (flags >> 1 & 1) + 100 * (flags >> 2 & 1) + 4 * (flags >> 3 & 1)
    return frame[:end] + bytes(max(0, len(frame) - end))


_AMR = {
    b"#!AMR\n": (13, 14, 16, 18, 20, 21, 27, 32, 6, 0, 0, 0, 0, 0, 0, 1),  # bytes per frame type; 0: invalid
    b"#!AMR-WB\n": (18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 0, 0, 0, 0, 1, 1),
}


def clean_amr(data: bytes) -> bytes:
    """The AMR frames after the magic line, proven to be all the output holds."""
    return settled(_amr_frames, data)


def _amr_frames(data: bytes) -> bytes:
    magic = b"#!AMR\n" if data.startswith(b"#!AMR\n") else b"#!AMR-WB\n"
    if not data.startswith(magic):
        raise Unclean("not AMR")
    sizes = _AMR[magic]
    pos = len(magic)
    for _ in range(_MAX_AMR_FRAMES):
        header = data[pos] if pos < len(data) else 0x83
        size = sizes[header >> 3 & 0x0F]
        if header & 0x83 or not size or pos + size > len(data):
            break  # anything after the last whole frame is left behind
        pos += size
    else:
        raise Unclean("longer than a recording may be")
    if pos == len(magic):
        raise Unclean("no AMR frames")
    return data[:pos]  # the frames follow one another: one slice, however many there are
