"""The evidence service knows a file by its first bytes: what a phone or a
browser uploads is accepted whatever its name, anything else is refused with a
description a person understands."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from casemesh.platform.errors import InvalidArgument
from casemesh.platform.identity import Identity
from casemesh.platform.localized import field_words
from casemesh_evidence import sniff
from casemesh_evidence.application import EvidenceLocker, clean_file_name

ZOE = Identity("zoe", frozenset({"user"}))
MiB = 1 << 20


def iso_media(major: bytes, *compatible: bytes) -> bytes:
    """The start of an ISO media file (MP4, QuickTime, 3GP, HEIF): its ftyp box."""
    box = b"ftyp" + major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (len(box) + 4).to_bytes(4, "big") + box + b"\x00\x00\x00\x08free" + b"\x00" * 64


@pytest.mark.parametrize(
    ("head", "media_type"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"\xff\xd8\xff\xe1\x00\x18Exif\x00\x00", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\x82\x84webm", "video/webm"),
        # iPhone, and Android phones writing the generic HEIF brand first
        (iso_media(b"heic", b"mif1", b"heic"), "image/heic"),
        (iso_media(b"heix", b"mif1", b"heix"), "image/heic"),
        (iso_media(b"mif1", b"mif1", b"heic", b"miaf"), "image/heic"),
        (iso_media(b"msf1", b"msf1", b"hevc"), "image/heic"),
        (iso_media(b"avif", b"avif", b"mif1", b"miaf"), "image/avif"),
        (iso_media(b"mif1", b"avif", b"mif1"), "image/avif"),
        # cameras, screen recorders, older phones, streaming segments
        (iso_media(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4"),
        (iso_media(b"mp42", b"mp42", b"isom"), "video/mp4"),
        (iso_media(b"mp41", b"mp41", b"isom"), "video/mp4"),
        (iso_media(b"iso5", b"iso5", b"dash"), "video/mp4"),
        (iso_media(b"qt  ", b"qt  "), "video/quicktime"),
        (iso_media(b"3gp4", b"3gp4", b"isom"), "video/3gpp"),
        (iso_media(b"3g2a", b"3g2a"), "video/3gpp2"),
    ],
)
def test_what_phones_and_browsers_upload_is_known_by_its_bytes(
    head: bytes, media_type: str
) -> None:
    assert sniff.media_type(head) == media_type
    assert sniff.KIND[media_type] in ("image", "video", "pdf")


@pytest.mark.parametrize(
    ("head", "description"),
    [
        (b"MZ\x90\x00\x03\x00\x00\x00", "a Windows executable"),
        (b"\x7fELF\x02\x01\x01\x00", "a Linux executable"),
        (b"PK\x03\x04\x14\x00\x00\x00", "a ZIP archive"),
        (b"#!/bin/sh\nrm -rf /", "a script"),
        (b"<?php system($_GET['c']);", "a script"),
        (b"Rar!\x1a\x07\x01\x00" + b"\x00" * 32, "a RAR Archive"),
        (b"just some text, named photo.png", "not an image, video or PDF"),
    ],
)
def test_anything_else_is_refused_and_described(head: bytes, description: str) -> None:
    assert sniff.media_type(head) is None
    assert sniff.describe(head) == description


def test_an_iso_media_file_of_no_accepted_brand_is_refused() -> None:
    assert sniff.media_type(iso_media(b"mif1", b"mif1")) is None  # HEIF of no image kind
    assert sniff.media_type(iso_media(b"crx ", b"crx ")) is None  # a camera's raw photo


def riff(form: bytes, chunk: bytes) -> bytes:
    """The start of a RIFF container (WebP, WAV, AVI, an animated cursor)."""
    return b"RIFF\x24\x00\x00\x00" + form + chunk + b"\x00" * 32


def ebml(doc_type: bytes) -> bytes:
    """The EBML header of a Matroska file (WebM, MKV): versions, then DocType."""
    body = b"B\x86\x81\x01B\xf7\x81\x01B\x82" + bytes([0x80 | len(doc_type)]) + doc_type
    return b"\x1aE\xdf\xa3" + bytes([0x80 | len(body)]) + body + b"\x18S\x80g"


@pytest.mark.parametrize(
    ("head", "media_type"),
    [
        (b"GIF87a\x01\x00\x01\x00", "image/gif"),
        (b"\xff\xd8\xff\xdb\x00\x43\x00", "image/jpeg"),  # quantisation table first
        (riff(b"WEBP", b"VP8L"), "image/webp"),
        (riff(b"WEBP", b"VP8X"), "image/webp"),
        (ebml(b"webm"), "video/webm"),
        (ebml(b"matroska"), "video/webm"),  # screen recorders' MKV, as before
        (iso_media(b"M4V ", b"M4V ", b"M4A ", b"mp42", b"isom"), "video/mp4"),
        (iso_media(b"3gp5", b"3gp5", b"isom"), "video/3gpp"),
        (iso_media(b"3ge7", b"3ge7"), "video/3gpp"),
        # a box of 60 bytes, its size `\0\0\0<`, is no markup
        (
            iso_media(
                b"isom", *[b"isom", b"iso2", b"avc1", b"mp41"] * 2, b"iso6", b"dash", b"mp42"
            ),
            "video/mp4",
        ),
    ],
)
def test_each_accepted_type_is_known_by_its_own_signature(head: bytes, media_type: str) -> None:
    assert sniff.media_type(head) == media_type


@pytest.mark.parametrize(
    ("head", "description"),
    [
        # Any RIFF container is no WebP: audio, video, cursors, nothing.
        (riff(b"WAVE", b"fmt "), "a Waveform Audio File Format"),
        (riff(b"AVI ", b"LIST"), "an Audio Video Interleave"),
        (riff(b"ACON", b"LIST"), "an Animated cursor"),
        (b"RIFF" + b"\x00" * 64, None),
        # A QuickTime atom's name at byte 4 makes nothing a video.
        (b"MZ\x90\x00free" + b"\x00" * 64, "a Windows executable"),
        (b"PK\x03\x04free" + b"\x00" * 64, "a ZIP archive"),
        (b"<!--free--><html><script>fetch('/x')</script>", "an HTML or XML document"),
        (b"\xef\xbb\xbf  <svg onload=alert(1)>", "an HTML or XML document"),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x08mdat", None),
        (b"\x00\x00\x00\x08moov" + b"\x00" * 64, None),
        # Part of a signature, or its spelling in text, is not the signature.
        (b"\x89PNG, said the log line", None),
        (b"\\x89PNG\\r\\n as text", None),
        (b"\xff\xd8 and then text", None),
        (b"\\xff\\xd8\\xff as text", None),
        (b"%PDF is how a PDF starts", None),
        # ISO media files of brands no evidence is: audio, raw photos, other brands.
        (iso_media(b"M4A ", b"M4A ", b"mp42", b"isom"), None),
        (iso_media(b"M4B ", b"M4B ", b"mp42", b"isom"), None),
        (iso_media(b"crx ", b"crx ", b"isom"), None),
        (iso_media(b"JUNK", b"isom", b"mp42", b"avc1"), None),
        (ebml(b"mka\x00"), None),
    ],
)
def test_a_file_that_only_looks_like_an_accepted_type_is_refused(
    head: bytes, description: str | None
) -> None:
    assert sniff.media_type(head) is None
    described = sniff.describe(head)
    assert description is None or described == description
    # Never described as the type it was refused as.
    assert not any(
        word in described for word in ("PNG", "JPEG", "WebP", "QuickTime", "MPEG-4 video")
    )


@pytest.mark.parametrize(
    "name",
    [
        "invoice\u202egnp.exe",  # shows as invoiceexe.png
        "report\u2066.pdf",
        "bell\x07.png",
        "del\x7f.png",
        "c1\x85.png",
        "two\u2028lines.png",
        "x" * 256,
    ],
)
def test_a_file_name_that_would_show_other_than_it_is_is_refused(name: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        clean_file_name(name)
    assert [v.field for v in refused.value.violations] == ["metadata.file_name"]


def test_a_file_name_keeps_its_last_segment_and_its_emoji() -> None:
    assert clean_file_name("C:\\Users\\me\\截图 2026.png") == "截图 2026.png"
    assert (
        clean_file_name("../家\u200d人👨\u200d👩\u200d👧.jpg") == "家\u200d人👨\u200d👩\u200d👧.jpg"
    )


@pytest.mark.parametrize(
    ("declared", "agrees"),
    [
        ("image/jpeg", True),
        ("IMAGE/JPEG; name=a.jpg", True),
        ("image/jpg", True),
        ("image/pjpeg", True),
        ("application/octet-stream", True),  # says nothing of the type
        ("", True),
        ("image/png", False),
        ("application/pdf", False),
    ],
)
def test_a_declared_type_is_held_to_the_bytes_under_any_of_its_names(
    declared: str, agrees: bool
) -> None:
    assert sniff.declared_as(declared, "image/jpeg") is agrees


async def test_a_video_sent_as_a_picture_is_refused_at_its_first_bytes(tmp_path: Path) -> None:
    """Not once it has all come: a long video labelled image/png would hold
    its share of the upload budget, and keep the person waiting, for nothing."""
    locker = EvidenceLocker(
        pool=cast(Any, None),
        store=cast(Any, None),
        limits={"image": 20 << 20, "video": 500 << 20, "pdf": 20 << 20},
        incoming=tmp_path,
    )
    sent = []

    async def video() -> AsyncIterator[bytes]:
        sent.append(1)
        yield iso_media(b"isom", b"isom", b"avc1").ljust(1 << 20, b"\x00")
        for _ in range(299):  # 300 MiB in all, were it read
            sent.append(1)
            yield bytes(1 << 20)

    with pytest.raises(InvalidArgument) as refused:
        await locker.receive(ZOE, "clip.png", "image/png", video())
    assert [v.field for v in refused.value.violations] == ["metadata.declared_type"]
    assert len(sent) == 1
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))  # nothing of it kept


@pytest.mark.parametrize("declared", ["video/webm", "video/x-matroska", "video/matroska"])
def test_a_screen_recording_declared_as_matroska_is_taken(declared: str) -> None:
    """An .mkv, as the phone or browser names it: the bytes are known as WebM."""
    assert sniff.media_type(ebml(b"matroska")) == "video/webm"
    assert sniff.declared_as(declared, "video/webm")


class Stored(Exception):
    """The upload passed every check: the locker went on to store it."""


class Storing:
    """A database the locker reaches only once it has taken an upload."""

    def connection(self) -> Any:
        raise Stored


def locker_in(tmp_path: Path) -> EvidenceLocker:
    return EvidenceLocker(
        pool=cast(Any, Storing()),
        store=cast(Any, None),
        limits={"image": 20 << 20, "video": 500 << 20, "pdf": 20 << 20},
        incoming=tmp_path,
    )


def png(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk (truecolour), then its data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return sniff.PNG + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", 0)


def gif(width: int, height: int) -> bytes:
    """A GIF's signature and logical screen descriptor."""
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)


def gif_framed(width: int, height: int) -> bytes:
    """A GIF declaring a 1×1 screen (and a two-colour table), a comment,
    then a first frame of `width`×`height`: a decoder grows the canvas to
    the frame."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes(6)
    comment = b"\x21\xfe" + b"\x05hello" + b"\x00"
    return screen + comment + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)


def webp(chunk: bytes, width: int, height: int) -> bytes:
    """A WebP whose first chunk is extended (VP8X), lossless (VP8L) or lossy
    (VP8): each gives the size its own way."""
    if chunk == b"VP8X":
        data = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif chunk == b"VP8L":
        data = b"\x2f" + ((width - 1) | (height - 1) << 14).to_bytes(4, "little")
    else:
        data = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    return b"RIFF\x24\x00\x00\x00WEBP" + chunk + struct.pack("<I", len(data)) + data


def jpeg(width: int, height: int, metadata: int = 0) -> bytes:
    """A JPEG's start, `metadata` bytes of EXIF (as APP1 segments: a photo's
    camera data and thumbnail), then its frame header."""

    def segment(marker: int, data: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data

    app1 = [segment(0xE1, b"Exif\x00\x00" + bytes(60000)) for _ in range(metadata // 60000)]
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + b"".join(app1)
        + segment(0xDB, b"\x00" + b"\x01" * 64)
        + b"\xff"  # a fill byte
        + segment(0xC2, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00" * 3)
    )


def heif(brand: bytes, width: int, height: int) -> bytes:
    """A HEIC or AVIF file's `ftyp`, then its `meta` with its image's `ispe`."""

    def box(name: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body) + 8) + name + body

    ispe = box(b"ispe", b"\x00" * 4 + struct.pack(">II", width, height))
    handler = box(b"hdlr", b"\x00" * 8 + b"pict" + b"\x00" * 13)
    meta = box(b"meta", b"\x00" * 4 + handler + box(b"iprp", box(b"ipco", ispe)))
    return box(b"ftyp", brand + b"\x00\x00\x00\x00" + b"mif1" + brand) + meta


def sent_in_chunks(data: bytes, sent: list[int]) -> AsyncIterator[bytes]:
    """`data` as an upload sends it, each chunk counted in `sent` as it goes."""

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), MiB):
            sent.append(1)
            yield data[at : at + MiB]

    return chunks()


@pytest.mark.parametrize(
    ("head", "declared", "size"),
    [
        (png(40000, 40000), "image/png", "40000×40000"),
        (gif(65535, 65535), "image/gif", "65535×65535"),
        (webp(b"VP8X", 100000, 100000), "image/webp", "100000×100000"),
        (jpeg(60000, 60000), "image/jpeg", "60000×60000"),
        (heif(b"avif", 50000, 50000), "image/avif", "50000×50000"),
        (heif(b"heic", 40000, 40000), "image/heic", "40000×40000"),
        (png(100, 40000), "image/png", "100×40000"),  # a side past any
        (gif_framed(65535, 65535), "image/gif", "65535×65535"),
        # A stray byte between segments, which a decoder skips.
        (jpeg(60000, 60000).replace(b"\xff\xdb", b"\x00\xff\xdb", 1), "image/jpeg", "60000×60000"),
    ],
    ids=["png", "gif", "webp", "jpeg", "avif", "heic", "png-side", "gif-frame", "jpeg-stray"],
)
async def test_an_image_declaring_more_pixels_than_any_photo_is_refused_at_its_first_bytes(
    tmp_path: Path, head: bytes, declared: str, size: str
) -> None:
    """A few KiB saying 40000×40000: the agent's console, opening the case,
    would find memory for all 1.6 billion pixels and crash. Refused at its
    first chunk, and nothing of it kept."""
    sent: list[int] = []
    bomb = head.ljust(3 << 20, b"\x00")  # its compressed pixels
    with pytest.raises(InvalidArgument) as refused:
        await locker_in(tmp_path).receive(ZOE, "shot.png", declared, sent_in_chunks(bomb, sent))
    (violation,) = refused.value.violations
    assert violation.field == "chunk"
    assert violation.description == (
        f"the image is {size} pixels;"
        " an image may be at most 32768 pixels on a side and 250 megapixels"
    )
    assert field_words(violation.description, "zh-CN") == (
        f"图片尺寸为 {size} 像素，太大了：图片每边最多 32768 像素，总共最多 250 百万像素。"
    )
    assert len(sent) == 1
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))


async def test_a_jpeg_declaring_its_size_after_megabytes_of_metadata_is_measured_too(
    tmp_path: Path,
) -> None:
    """The frame header may come after the camera's data and the depth map of
    a portrait photo: read once the whole file has come."""
    sent: list[int] = []
    bomb = jpeg(50000, 50000, metadata=5 * MiB)
    with pytest.raises(InvalidArgument) as refused:
        await locker_in(tmp_path).receive(ZOE, "a.jpg", "image/jpeg", sent_in_chunks(bomb, sent))
    (violation,) = refused.value.violations
    assert violation.field == "chunk"
    assert violation.description.startswith("the image is 50000×50000 pixels;")
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))


async def test_a_jpeg_hiding_its_size_behind_endless_segments_is_refused(tmp_path: Path) -> None:
    """A decoder would walk them all and then find room for its pixels; the
    walk here stops at a number of markers no camera writes."""
    hidden = b"\xff\xd8" + b"\xff\xfe\x00\x02" * (sniff.MAX_STEPS + 1) + jpeg(50000, 50000)[2:]
    with pytest.raises(InvalidArgument) as refused:
        await locker_in(tmp_path).receive(ZOE, "a.jpg", "image/jpeg", sent_in_chunks(hidden, []))
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("chunk", "the image's size could not be read; it may be damaged")
    ]
    assert field_words(refused.value.violations[0].description, "zh-CN")
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))


def heif_with_endless_box(brand: bytes) -> bytes:
    """A HEIC or AVIF file's `ftyp`, then a box whose 64-bit size says more
    bytes than any file holds (more than a seek can reach), then its bytes."""
    endless = struct.pack(">I", 1) + b"free" + struct.pack(">Q", (1 << 64) - 1)
    return heif(brand, 4032, 3024)[:24] + endless + bytes(100)


def heif_with_endless_box_inside(brand: bytes) -> bytes:
    """A HEIC or AVIF file's `ftyp`, then a `meta` box as large as the one
    above, and in it, before its properties, a box saying half as much: the
    two together more than a seek can reach."""

    def large(name: bytes, size: int) -> bytes:
        return struct.pack(">I", 1) + name + struct.pack(">Q", size)

    meta = large(b"meta", (1 << 64) - 1) + b"\x00" * 4 + large(b"hdlr", 1 << 63)
    return heif(brand, 4032, 3024)[:24] + meta + bytes(100)


@pytest.mark.parametrize(("brand", "declared"), [(b"heic", "image/heic"), (b"avif", "image/avif")])
@pytest.mark.parametrize("sent", [100, 2 * MiB], ids=["short", "long"])
@pytest.mark.parametrize(
    "made", [heif_with_endless_box, heif_with_endless_box_inside], ids=["outer", "nested"]
)
async def test_a_heif_with_a_box_larger_than_any_file_is_taken_as_declaring_no_size(
    tmp_path: Path, brand: bytes, declared: str, sent: int, made: Callable[[bytes], bytes]
) -> None:
    """No decoder finds an image past a box that runs beyond the file's end,
    so it has none to show, too large or not: such a file is taken, as one
    cut short is, whether that box is one of the file's or one inside
    another. Its upload once failed as a fault of the server's (which mail
    delivery retries for days), then as a damaged image, whether it came in
    its first bytes or later."""
    upload = sent_in_chunks(made(brand).ljust(sent, b"\x00"), [])
    with pytest.raises(Stored):
        await locker_in(tmp_path).receive(ZOE, "photo", declared, upload)


async def test_an_image_whose_size_cannot_be_made_sense_of_is_refused_as_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes a size reader was not written for (a number past what a seek
    takes, say) are the client's to hear about, not a fault of the server's
    that they would retry for ever."""

    def unreadable(media_type: str, file: Any) -> None:
        raise OverflowError("Python int too large to convert to C ssize_t")

    monkeypatch.setattr(sniff, "dimensions", unreadable)
    upload = sent_in_chunks(heif(b"heic", 4032, 3024), [])
    with pytest.raises(InvalidArgument) as refused:
        await locker_in(tmp_path).receive(ZOE, "a.heic", "image/heic", upload)
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("chunk", "the image's size could not be read; it may be damaged")
    ]
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))


@pytest.mark.parametrize(
    ("image", "declared"),
    [
        (png(1170, 2532), "image/png"),  # an iPhone's screenshot
        (png(1080, 25000), "image/png"),  # a scrolling screenshot of a long chat
        (gif(480, 270), "image/gif"),
        (webp(b"VP8X", 4000, 3000), "image/webp"),
        (webp(b"VP8L", 1080, 2400), "image/webp"),
        (webp(b"VP8 ", 1920, 1080), "image/webp"),
        (jpeg(4032, 3024), "image/jpeg"),
        (jpeg(4032, 3024, metadata=300_000), "image/jpeg"),  # EXIF, ICC, depth map
        (jpeg(16320, 12240), "image/jpeg"),  # a 200 MP phone's largest photo
        (heif(b"heic", 4032, 3024), "image/heic"),
        (heif(b"avif", 8160, 6120), "image/avif"),
    ],
)
async def test_photos_and_screenshots_of_any_phone_are_taken(
    tmp_path: Path, image: bytes, declared: str
) -> None:
    upload = sent_in_chunks(image.ljust(2 << 20, b"\x00"), [])
    with pytest.raises(Stored):
        await locker_in(tmp_path).receive(ZOE, "photo", declared, upload)
