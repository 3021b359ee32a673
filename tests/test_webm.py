"""app/attachments/webm.py: WebM rebuilt from its parsed values; the codec configuration written from its fields."""

from __future__ import annotations

import pytest

from app.attachments import ogg, webm
from app.attachments._common import Unclean
from tests import hostile, media
from tests.cleaning import clean_one, leaked


def test_the_vorbis_comment_inside_webm_codec_private_is_replaced() -> None:
    # FFmpeg leaves that comment empty; a phone may not. The Ogg fixture's headers carry tags: lace them as WebM does.
    pages = ogg.read_pages(media.ogg_vorbis())
    ident = next(pages).body
    (comment, setup), _ = ogg.read_headers(pages, 2)
    assert media.TAG_TITLE.encode() in comment
    private = b"\x02" + bytes([len(ident)]) + b"\xff" * (len(comment) // 255) + bytes([len(comment) % 255])
    cleaned = webm.vorbis_private(private + ident + comment + setup)
    assert leaked(cleaned) == []
    assert cleaned.startswith(b"\x02" + bytes([len(ident)])) and ident in cleaned and cleaned.endswith(setup)


def test_bytes_after_the_opus_codec_private_never_reach_the_output() -> None:
    segment, tracks, entry, private = 0x18538067, 0x1654AE6B, 0xAE, 0x63A2
    smuggling = hostile.webm_grown(media.webm(), [segment, tracks, entry, private], hostile.MARKER)
    assert hostile.MARKER in smuggling
    cleaned = clean_one(smuggling).data
    assert hostile.MARKER not in cleaned and leaked(cleaned) == []
    assert media.decoded_seconds(cleaned) == pytest.approx(1.0, abs=0.1)
    assert webm.clean_webm(cleaned) == cleaned  # every byte a parsed value or a block


def test_bytes_after_the_vorbis_identification_header_never_reach_the_output() -> None:
    pages = ogg.read_pages(media.ogg_vorbis())
    ident = next(pages).body
    (comment, setup), _ = ogg.read_headers(pages, 2)
    smuggled = ident + hostile.MARKER
    private = b"\x02" + bytes([len(smuggled)]) + b"\xff" * (len(comment) // 255) + bytes([len(comment) % 255])
    cleaned = webm.vorbis_private(private + smuggled + comment + setup)
    assert hostile.MARKER not in cleaned and cleaned.endswith(setup)


def test_a_cluster_of_more_blocks_than_three_hours_hold_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert webm.MAX_BLOCKS == 3 * 3600 * 50  # one a 20 ms frame; lowered here so the walk is short
    monkeypatch.setattr(webm, "MAX_BLOCKS", 2000)
    data = media.webm()
    segment = data.find(b"\x18\x53\x80\x67")
    data = data[: segment + 4] + b"\x01" + b"\xff" * 7 + data[segment + 12 :]  # a segment of unknown size
    cluster = data.find(b"\x1f\x43\xb6\x75")
    head = data[:cluster] + b"\x1f\x43\xb6\x75\x01" + b"\xff" * 7 + b"\xe7\x81\x00"
    block = b"\xa3\x85\x81\x00\x00\x80\xf8"  # a SimpleBlock of one byte for track 1
    assert len(webm.clean_webm(head + block * 1000)) > 7000
    with pytest.raises(Unclean, match="more blocks"):
        webm.clean_webm(head + block * 2001)
