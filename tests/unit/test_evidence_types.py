"""The evidence service knows a file by its first bytes: what a phone or a
browser uploads is accepted whatever its name, anything else is refused with a
description a person understands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from casemesh.platform.errors import InvalidArgument
from casemesh.platform.identity import Identity
from casemesh_evidence import sniff
from casemesh_evidence.application import EvidenceLocker, clean_file_name

ZOE = Identity("zoe", frozenset({"user"}))


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
