"""app/attachments/mp3.py: MP3 and AMR leave as their audio frames only."""

from __future__ import annotations

import pytest

from app import attachments
from app.attachments import mp3, sniff
from app.attachments._common import Unclean
from tests import media
from tests.media import refusal


def test_a_long_chain_of_id3_tags_is_refused_without_walking_it() -> None:
    # 10 000 empty ID3v2 headers before real MPEG frames: no recorder writes that; walking it costs CPU per tag.
    chain = b"ID3\x04\0\0\0\0\0\0" * 10_000
    audio = media.mp3()
    assert sniff(chain + audio) is None
    assert refusal(chain + audio).reason == attachments.NOT_ACCEPTED
    first = mp3.first_frame(audio)
    assert first is not None
    after = first + mp3._mp3_frame(audio, first)
    with pytest.raises(Unclean):
        mp3.clean_mp3(audio[:after] + chain + audio[after:])  # the same chain between frames
    assert sniff(b"ID3\x04\0\0\0\0\0\0" * 3 + audio) == "mp3"  # a few tags are fine
