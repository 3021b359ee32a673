"""app/attachments/webm.py: WebM rebuilt from its parsed values; the codec configuration written from its fields."""

from __future__ import annotations

from app.attachments import ogg, webm
from tests import media
from tests.media import leaked


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
