"""The real type of a file, from its first bytes (never from its name).

puremagic's signature table recognises the file; only the types evidence may be
(images, videos, PDF) are accepted. An ISO media file (MP4, QuickTime, 3GP,
HEIC, AVIF) names its format by brands in its `ftyp` box, and puremagic knows
only some major brands: a HEIF file under the generic `mif1`/`msf1` (as many
phones write) and MP4 under `mp41`, `iso2`…`iso6`, `avc1` or `dash` are
recognised here by their brands."""

from __future__ import annotations

import puremagic

# Bytes read before deciding: every accepted signature and a whole `ftyp` box.
HEAD_BYTES = 512

KIND = {
    "image/png": "image",
    "image/jpeg": "image",
    "image/gif": "image",
    "image/webp": "image",
    "image/heic": "image",
    "image/avif": "image",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/webm": "video",
    "video/3gpp": "video",
    "video/3gpp2": "video",
    "application/pdf": "pdf",
}
# Compatible brands of a HEIF file, most specific first.
HEIF_BRANDS = {b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic"}
HEIF_BRANDS |= dict.fromkeys((b"heix", b"hevc", b"hevx", b"heim", b"heis"), "image/heic")
MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"dash"}
)


# What devices and mail programs call the accepted types besides their names
# above; and what says nothing of the type at all.
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/heif": "image/heic",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heic",
    "video/x-m4v": "video/mp4",
    "video/3gp": "video/3gpp",
    "application/x-pdf": "application/pdf",
}
UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def declared_as(declared: str, detected: str) -> bool:
    """Whether a client's declared type (a media type, parameters and case
    aside) agrees with the type the bytes are: the same, an alias of it, or
    no type at all."""
    named = declared.split(";", 1)[0].strip().lower()
    return named in UNDECLARED or ALIASES.get(named, named) == detected


def media_type(head: bytes) -> str | None:
    """The media type of a file starting with `head`, or None when it is not
    one the platform accepts as evidence."""
    heif = _heif(head)
    if heif:
        return heif
    for match in _matches(head):  # most confident first
        if match.mime_type in KIND:
            return str(match.mime_type)
    if head[4:8] == b"ftyp" and _brands(head) & MP4_BRANDS:
        return "video/mp4"
    return None


def describe(head: bytes) -> str:
    """A short human description of a refused file's first bytes."""
    if head.startswith(b"MZ"):
        return "a Windows executable"
    if head.startswith(b"\x7fELF"):
        return "a Linux executable"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"  # puremagic takes any ZIP for an Office document
    if head.startswith((b"#!", b"<script", b"<?php")):
        return "a script"
    matches = _matches(head)
    if matches and matches[0].name:
        name = matches[0].name.split("|")[0].removesuffix(" file")
        return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"
    return "not an image, video or PDF"


def _matches(head: bytes) -> list[puremagic.PureMagicWithConfidence]:
    try:
        return list(puremagic.magic_string(head))
    except (puremagic.PureError, ValueError):
        return []


def _heif(head: bytes) -> str | None:
    """HEIC or AVIF by the brands of a HEIF `ftyp` box: its major brand or,
    under the generic `mif1`/`msf1`, its compatible ones."""
    if head[4:8] != b"ftyp":
        return None
    brands = _brands(head) if head[8:12] in (b"mif1", b"msf1") else {head[8:12]}
    return next((t for brand, t in HEIF_BRANDS.items() if brand in brands), None)


def _brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of the `ftyp` box `head` starts with."""
    size = min(int.from_bytes(head[:4], "big"), len(head))
    return {head[8:12]} | {head[i : i + 4] for i in range(16, size - 3, 4)}
