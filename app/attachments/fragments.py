"""Fragmented MP4, as MediaRecorder writes audio/mp4 (Chromium, Safari): read into the sample tables of a plain file.

Such a file's moov declares the track and its defaults (mvex/trex) and holds no samples; then come fragments, each
a moof (a track fragment header, tfhd, and runs of samples, trun) followed by the mdat holding those samples. Only
the fields that place and time the samples are read (sizes, durations, offsets, from each run or the defaults of
tfhd and trex); sample flags, composition offsets, tfdt, sidx, mfra, styp, emsg, bytes appended to a box and
anything else are left behind. Each run becomes one chunk of the plain file (`mp4` writes it). A run's bytes must
lie in the mdat that follows its moof, after the run before it: no byte is used twice, so the output is never
larger than the input's audio and its tables.

Memory: the tables are arrays of 32-bit values, and a file holds at most one sample per `_FILE_BYTES_PER_SAMPLE`
bytes (recorders write 16 and more: a size and a duration in the run, the audio, a moof a second), so a run that
declares millions of samples of a default size cannot make tables many times the file's size.
"""

from __future__ import annotations

import itertools
import operator
import struct
from array import array
from dataclasses import dataclass, field

from app.attachments._common import MAX_SECONDS, Unclean
from app.attachments.boxes import boxes, children, u32s

# tfhd flags
_BASE_OFFSET, _DESCRIPTION, _DURATION, _SIZE, _FLAGS = 0x1, 0x2, 0x8, 0x10, 0x20
_EMPTY, _BASE_IS_MOOF = 0x10000, 0x20000
# trun flags: a data offset, the first sample's flags, then each sample's duration, size, flags, composition offset
_DATA_OFFSET, _FIRST_FLAGS = 0x1, 0x4
_PER_SAMPLE = (0x100, 0x200, 0x400, 0x800)
_FILE_BYTES_PER_SAMPLE = 12


@dataclass
class Samples:
    """The sample tables of a plain file: (count, delta) pairs, (first chunk, samples per chunk, 1) triples, each
    sample's size, and each chunk's offset and length in the original file; the durations' sum."""

    stts: array[int] = field(default_factory=lambda: array("I"))
    stsc: array[int] = field(default_factory=lambda: array("I"))
    sizes: array[int] = field(default_factory=lambda: array("I"))
    offsets: array[int] = field(default_factory=lambda: array("I"))
    lengths: array[int] = field(default_factory=lambda: array("I"))
    duration: int = 0


def read(data: bytes, mvex: tuple[int, int], track: int, others: set[int], timescale: int) -> Samples:
    """The samples of track `track` in every fragment; fragments of the `others` (tracks the moov declares) are
    left behind, and a fragment of a track it does not declare is refused."""
    reader = _Reader(data, track, others, _defaults(data, mvex, track), MAX_SECONDS * timescale)
    waiting = -1  # the first chunk of the fragment whose mdat is still to come
    box_start = 0
    for kind, start, end in boxes(data, 0, len(data)):
        if kind == b"moof":
            if waiting >= 0:
                raise Unclean("a fragment without its media data")
            waiting = len(reader.out.offsets)
            reader.fragment(box_start, start, end)
        elif kind == b"mdat" and waiting >= 0:
            offsets, lengths = reader.out.offsets, reader.out.lengths
            if len(offsets) > waiting and (offsets[waiting] < start or offsets[-1] + lengths[-1] > end):
                raise Unclean("samples outside their fragment's media data")
            waiting = -1
        box_start = end
    if waiting >= 0:
        raise Unclean("a fragment without its media data")
    if not reader.out.sizes:
        raise Unclean("no samples")
    return reader.out


def _defaults(data: bytes, mvex: tuple[int, int], track: int) -> tuple[int, int]:
    """The track's default sample duration and size (its trex box)."""
    for kind, start, end in boxes(data, *mvex):
        if kind == b"trex" and end - start >= 24 and int.from_bytes(data[start + 4 : start + 8], "big") == track:
            if int.from_bytes(data[start + 8 : start + 12], "big") != 1:
                raise Unclean("not the one sample description")
            duration, size = struct.unpack_from(">II", data, start + 12)
            return duration, size
    raise Unclean("no fragment defaults for the track")


class _Reader:
    def __init__(self, data: bytes, track: int, others: set[int], defaults: tuple[int, int], longest: int) -> None:
        self.data, self.track, self.others, self.defaults, self.longest = data, track, others, defaults, longest
        self.most = len(data) // _FILE_BYTES_PER_SAMPLE
        self.out = Samples()
        self.floor = 0  # where the next run's bytes may start: after the moof, after the run before

    def fragment(self, moof: int, start: int, end: int) -> None:
        """The runs of one moof's track fragments (its mfhd and any other box left behind)."""
        self.floor = end
        previous: int | None = moof  # the implicit base of a track fragment: the moof, then where the last ended
        for kind, payload, stop in boxes(self.data, start, end):
            if kind == b"traf":
                previous = self._track_fragment(moof, previous, payload, stop)

    def _track_fragment(self, moof: int, previous: int | None, start: int, end: int) -> int | None:
        data = self.data
        tfhd = children(data, start, end).get(b"tfhd")
        if tfhd is None or tfhd[1] - tfhd[0] < 8:
            raise Unclean("a track fragment without its header")
        flags = int.from_bytes(data[tfhd[0] + 1 : tfhd[0] + 4], "big")
        track = int.from_bytes(data[tfhd[0] + 4 : tfhd[0] + 8], "big")
        if track != self.track:
            if track not in self.others:
                raise Unclean("a fragment of an undeclared track")
            return None
        if flags & _EMPTY or (flags & _BASE_OFFSET and flags & _BASE_IS_MOOF):
            raise Unclean("an empty fragment, or two bases")
        fields = [_BASE_OFFSET, _DESCRIPTION, _DURATION, _SIZE, _FLAGS]
        widths = [8 if bit == _BASE_OFFSET else 4 for bit in fields if flags & bit]
        if tfhd[1] - tfhd[0] < 8 + sum(widths):
            raise Unclean("short track fragment header")
        values, pos = {}, tfhd[0] + 8
        for bit, width in zip((bit for bit in fields if flags & bit), widths, strict=True):
            values[bit], pos = int.from_bytes(data[pos : pos + width], "big"), pos + width
        if values.get(_DESCRIPTION, 1) != 1:
            raise Unclean("not the one sample description")
        base = values.get(_BASE_OFFSET, moof if flags & _BASE_IS_MOOF else previous)
        if base is None:
            raise Unclean("a fragment placed after another track's")
        defaults = (values.get(_DURATION, self.defaults[0]), values.get(_SIZE, self.defaults[1]))
        for kind, payload, stop in boxes(data, start, end):
            if kind == b"trun":
                base = self._run(base, defaults, payload, stop)
        return base

    def _run(self, position: int, defaults: tuple[int, int], start: int, end: int) -> int:
        """One run of samples: added to the tables as a chunk; where the next run starts by default."""
        data, out = self.data, self.out
        if end - start < 8:
            raise Unclean("short track run")
        flags = int.from_bytes(data[start + 1 : start + 4], "big")
        count = int.from_bytes(data[start + 4 : start + 8], "big")
        pos = start + 8
        if flags & _DATA_OFFSET:
            offset = int.from_bytes(data[pos : pos + 4], "big", signed=True)
            if offset < 0 or pos + 4 > end:
                raise Unclean("a run before its base")
            position, pos = position + offset, pos + 4
        pos += 4 if flags & _FIRST_FLAGS else 0
        if not count:
            return position
        if len(out.sizes) + count > self.most:
            raise Unclean("more samples than the file holds")
        present = [bit for bit in _PER_SAMPLE if flags & bit]
        table = u32s(data, pos, count * len(present), end)
        durations = table[present.index(0x100) :: len(present)] if 0x100 in present else defaults[0]
        sizes = table[present.index(0x200) :: len(present)] if 0x200 in present else array("I", [defaults[1]]) * count
        del table
        length = sum(sizes)
        if position < self.floor or position + length > len(data):
            raise Unclean("a run outside the file, or over another")
        self.floor = position + length
        out.duration += count * durations if isinstance(durations, int) else sum(durations)
        if out.duration > self.longest:
            raise Unclean("too long")
        _add_durations(out.stts, durations, count)
        if out.sizes:
            out.sizes.extend(sizes)
        else:  # the one run of most fragments: not copied
            out.sizes = sizes
        out.offsets.append(position)
        out.lengths.append(length)
        if not out.stsc or out.stsc[-2] != count:
            out.stsc.extend((len(out.offsets), count, 1))
        return position + length


def _add_durations(stts: array[int], durations: array[int] | int, count: int) -> None:
    """The run's durations appended to the (count, delta) pairs, equal neighbours merged; in C, not per sample."""
    if isinstance(durations, int):
        starts, deltas = array("I", [0]), array("I", [durations])
    else:  # where a duration differs from the one before it (recorders: only the last sample of a fragment)
        changed = map(operator.ne, itertools.islice(durations, 1, None), durations)
        changes = itertools.compress(itertools.count(1), changed)
        starts = array("I", itertools.chain((0,), changes))
        deltas = array("I", map(durations.__getitem__, starts))
    counts = array("I", map(operator.sub, itertools.chain(itertools.islice(starts, 1, None), (count,)), starts))
    if stts and stts[-1] == deltas[0]:
        stts[-2] += counts[0]
        counts, deltas = counts[1:], deltas[1:]
    pairs = array("I", bytes(8 * len(counts)))
    pairs[0::2], pairs[1::2] = counts, deltas
    stts.extend(pairs)
