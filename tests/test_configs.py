"""app/attachments/configs.py: codec configurations written back from their fields, nothing after them."""

from __future__ import annotations

import struct

import pytest

from app.attachments import configs
from app.attachments._common import Unclean
from tests import hostile, media

MARKER = hostile.MARKER


def esds_of(data: bytes) -> bytes:
    pos = data.find(b"esds") - 4
    return data[pos + 8 : pos + int.from_bytes(data[pos : pos + 4], "big")]


def test_an_aac_configuration_keeps_its_fields_and_loses_what_follows() -> None:
    lc = bytes([0x12, 0x10])  # AAC LC, 44.1 kHz, stereo
    assert configs.audio_specific_config(lc) == lc
    assert configs.audio_specific_config(lc + MARKER) == lc
    he = bytes([0x2B, 0x92, 0x08, 0x00])  # HE-AAC (SBR), explicit: 22.05 kHz core, 44.1 kHz output
    assert configs.audio_specific_config(he + MARKER) == he
    with pytest.raises(Unclean):
        configs.audio_specific_config(bytes([0x10, 0x00]))  # AAC LC with channel configuration 0: a PCE follows


def test_an_esds_keeps_the_decoder_configuration_only() -> None:
    original = esds_of(media.m4a())
    rebuilt = configs.esds(original)
    assert configs.esds(rebuilt) == rebuilt
    # An ES descriptor with a URL and another descriptor after the configuration: both gone.
    es = configs._descriptor(original, 4, len(original))
    body = original[es[1] + 3 : es[2]]
    url = b"\x00\x01\x40" + bytes([len(MARKER)]) + MARKER
    smuggling = bytes(4) + configs._write_descriptor(3, url, body, configs._write_descriptor(9, MARKER))
    assert configs.esds(smuggling) == rebuilt and MARKER not in rebuilt


def test_an_amr_configuration_loses_its_vendor() -> None:
    assert configs.damr(b"FFMP\x00\x81\xff\x00\x01" + MARKER) == b"\0\0\0\0\x00\x81\xff\x00\x01"


def test_opus_headers_are_written_from_their_fields() -> None:
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)
    assert configs.opus(head + MARKER, ogg=True) == head
    mapped = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 1) + b"\x01\x01\x00\x01"
    assert configs.opus(mapped + MARKER, ogg=True) == mapped
    dops = struct.pack(">BBHIhB", 0, 1, 312, 48000, 0, 0)
    assert configs.opus(dops + MARKER, ogg=False) == dops


def test_a_sample_entry_keeps_its_codec_configuration_and_no_other_child() -> None:
    entry = hostile.aac_sample_entry()
    stsd = bytes(4) + struct.pack(">I", 1) + entry
    rebuilt = configs.sample_entry(stsd)
    assert rebuilt.startswith(struct.pack(">I", len(rebuilt)) + b"mp4a") and b"esds" in rebuilt
    grown = entry[:36] + hostile.box(b"udta", hostile.box(b"\xa9xyz", MARKER)) + entry[36:]  # before the esds
    smuggling = bytes(4) + struct.pack(">I", 1) + struct.pack(">I", len(grown)) + grown[4:]
    assert configs.sample_entry(smuggling) == rebuilt
    with pytest.raises(Unclean):
        configs.sample_entry(stsd.replace(b"mp4a", b"alac"))
