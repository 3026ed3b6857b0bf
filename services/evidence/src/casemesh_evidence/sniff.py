"""The real type of a file, from its first bytes (never from its name)."""

from __future__ import annotations

# Bytes needed to recognise every type below.
HEAD_BYTES = 16
MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"dash"}
)


def media_type(head: bytes) -> str | None:
    """The media type of a file starting with `head`, or None when it is not
    one the platform accepts as evidence."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp":
        # Only brands of the formats we accept; any other ISO media file is refused.
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"heic", b"heix", b"mif1"):
            return "image/heic"
        if brand in MP4_BRANDS:
            return "video/mp4"
        return None
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "video/webm"
    return None


def describe(head: bytes) -> str:
    """A short human description of a rejected file's first bytes."""
    if head.startswith(b"MZ"):
        return "a Windows executable"
    if head.startswith(b"\x7fELF"):
        return "a Linux executable"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith((b"#!", b"<script", b"<?php")):
        return "a script"
    return "not an image, video or PDF"


KIND = {
    "image/png": "image",
    "image/jpeg": "image",
    "image/gif": "image",
    "image/webp": "image",
    "image/heic": "image",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/webm": "video",
    "application/pdf": "pdf",
}
