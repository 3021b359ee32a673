"""app/attachments/mp3.py: MP3 and AMR leave as their audio frames only."""

from __future__ import annotations

import pytest

from app import attachments
from app.attachments import mp3, sniff
from app.attachments._common import Unclean
from tests import media
from tests.cleaning import refusal


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


def test_the_frames_are_all_the_output_holds() -> None:
    for make, clean in ((media.mp3, mp3.clean_mp3), (media.amr, mp3.clean_amr)):
        cleaned = clean(make())
        assert clean(cleaned) == cleaned  # cleaning it again changes nothing: no byte outside a frame
        assert media.decoded_seconds(cleaned) == pytest.approx(1.0, abs=0.1)


def test_a_recording_of_tiny_frames_longer_than_three_hours_is_refused_without_walking_it_all() -> None:
    no_data = b"#!AMR\n" + b"\x7c" * 600_000  # 600 000 empty 20 ms frames: 3 h 20 min
    with pytest.raises(Unclean, match="longer"):
        mp3.clean_amr(no_data)
    assert mp3.clean_amr(no_data[:500_000]) == no_data[:500_000]  # 2 h 47 min of them is a recording
    tiny = (bytes([0xFF, 0xF3, 0x14, 0xC4]) + bytes(20)) * 460_000  # 24-byte frames of 24 ms: 3 h 4 min
    assert refusal(tiny).reason == attachments.VOICE_UNREADABLE
