"""The real type of a file, from its first bytes (never from its name).

Each accepted type is known by a strict signature of its own format, read
here: the whole PNG signature, a JPEG's start-of-image marker and the marker
after it, `GIF87a`/`GIF89a`, a RIFF container whose form is `WEBP`, `%PDF-`
and its version, an EBML header whose DocType is `webm` (or `matroska`, the
format WebM is a profile of), and an ISO media file (MP4, QuickTime, 3GP,
HEIC, AVIF) by the brands of its `ftyp` box: its major brand names the
format; under the generic HEIF brands (`mif1`/`msf1`, as many phones write),
its compatible ones do. A signature table that takes the first bytes of any
format on a weak match (any RIFF for WebP, `free` at byte 4 for QuickTime, an
M4A's compatible `isom` for MP4) would let other files in under an accepted
type; so it only names what a refused file is (`describe`). Executables,
archives, scripts and markup are refused before anything else is looked at.

An image also says how large it is before any of its pixels (`dimensions`):
a viewer finds the memory for all of them first, so a few KiB declaring
billions of pixels take down whatever opens them (an agent's console). The
size is read where each format gives it, as a decoder reads it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

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

# What never is evidence, however it goes on, and what to call it.
REFUSED = (
    ((b"MZ",), "a Windows executable"),
    ((b"\x7fELF",), "a Linux executable"),
    # puremagic takes any ZIP for an Office document
    ((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"), "a ZIP archive"),
    ((b"#!", b"<script", b"<?php"), "a script"),
)
# UTF-8's byte-order mark, which may come before markup's `<` (as may white space).
BOM = b"\xef\xbb\xbf"

PNG = b"\x89PNG\r\n\x1a\n"
# A JPEG's start of image, then the next marker (or a fill byte before it).
JPEG = re.compile(rb"\xff\xd8\xff[\xc0-\xff]")
GIF = (b"GIF87a", b"GIF89a")
# A RIFF container of the WebP form, and its first chunk: lossy, lossless, extended.
WEBP = re.compile(rb"RIFF[\x00-\xff]{4}WEBPVP8[ LX]")
PDF = re.compile(rb"%PDF-[0-9]\.[0-9]")
# EBML's magic number, and the ID of the header's DocType element.
EBML = b"\x1aE\xdf\xa3"
DOC_TYPE = 0x4282
WEBM_DOC_TYPES = frozenset({b"webm", b"matroska"})

# ISO media files, by the major brand of their `ftyp` box.
MAJOR_BRANDS = dict.fromkeys(
    (
        *(b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9"),
        *(b"mp41", b"mp42", b"mp71", b"avc1", b"dash", b"mmp4", b"f4v "),
        *(b"M4V ", b"M4VH", b"M4VP", b"MSNV", b"XAVC"),  # Apple's, Sony's
    ),
    "video/mp4",
)
MAJOR_BRANDS[b"qt  "] = "video/quicktime"
MAJOR_BRANDS |= dict.fromkeys((b"avif", b"avis"), "image/avif")
MAJOR_BRANDS |= dict.fromkeys(
    (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"), "image/heic"
)
# 3GPP (3gp4…, 3ge6…, 3gg6…, 3gs7…) and 3GPP2 (3g2a…) by their brands' stem.
BRAND_STEMS = {b"3gp": "video/3gpp", b"3ge": "video/3gpp", b"3gg": "video/3gpp"}
BRAND_STEMS |= {b"3gs": "video/3gpp", b"3g2": "video/3gpp2"}
# The generic HEIF brands, and the compatible brands that say which images
# the file holds, most specific first.
GENERIC_HEIF = frozenset({b"mif1", b"msf1"})
HEIF_BRANDS = {b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic"}
HEIF_BRANDS |= dict.fromkeys((b"heix", b"hevc", b"hevx", b"heim", b"heis"), "image/heic")


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
    # Matroska, as Android and desktop browsers name an .mkv (and RFC 9559
    # does): accepted, and known by its bytes, as WebM (`media_type`).
    "video/x-matroska": "video/webm",
    "video/matroska": "video/webm",
    "video/3gp": "video/3gpp",
    "application/x-pdf": "application/pdf",
}
UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})

# The largest image taken. Pixels: 250 million, 1 GB decoded at 4 bytes a
# pixel; the largest sensor modes of phones (200 MP, 16320 × 12240) pass,
# the bombs a few KiB make (40000 × 40000, 65535 × 65535) do not. A side:
# 32768, past what browsers draw, and twice a 200 MP photo's long side, so
# that a scrolling screenshot of a long chat (1080 × 25000) passes.
MAX_PIXELS = 250_000_000
MAX_SIDE = 32768

# How many JPEG markers or ISO boxes are walked to find the size: real files
# give it within a few dozen (a portrait photo's depth map in extended XMP:
# a hundred or so); walking millions would take seconds of a worker's time.
MAX_STEPS = 65536


def declared_as(declared: str, detected: str) -> bool:
    """Whether a client's declared type (a media type, parameters and case
    aside) agrees with the type the bytes are: the same, an alias of it, or
    no type at all."""
    named = declared.split(";", 1)[0].strip().lower()
    return named in UNDECLARED or ALIASES.get(named, named) == detected


def media_type(head: bytes) -> str | None:
    """The media type of a file starting with `head`, or None when it is not
    one the platform accepts as evidence."""
    if _refused(head):
        return None
    if head.startswith(PNG):
        return "image/png"
    if JPEG.match(head):
        return "image/jpeg"
    if head.startswith(GIF):
        return "image/gif"
    if WEBP.match(head):
        return "image/webp"
    if PDF.match(head):
        return "application/pdf"
    if head.startswith(EBML):
        return "video/webm" if _doc_type(head) in WEBM_DOC_TYPES else None
    return _iso_media(head)


def describe(head: bytes) -> str:
    """A short human description of a refused file's first bytes."""
    refused = _refused(head)
    if refused:
        return refused
    # A match of an accepted type is a weak one the bytes did not bear out.
    named = [m.name for m in _matches(head) if m.name and m.mime_type not in KIND]
    if named:
        name = named[0].split("|")[0].strip().removesuffix(" file")
        return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"
    return "not an image, video or PDF"


def _refused(head: bytes) -> str | None:
    """What a file of a format never taken as evidence is, or None."""
    for prefixes, what in REFUSED:
        if head.startswith(prefixes):
            return what
    # Not past NULs: an ISO media file of a 60-byte `ftyp` box starts `\0\0\0<`.
    if head.removeprefix(BOM).lstrip().startswith(b"<"):
        return "an HTML or XML document"
    return None


def _matches(head: bytes) -> list[puremagic.PureMagicWithConfidence]:
    try:
        return list(puremagic.magic_string(head))
    except (puremagic.PureError, ValueError):
        return []


def _iso_media(head: bytes) -> str | None:
    """The type of the ISO media file `head` starts with (its `ftyp` box
    first), by its major brand or, under a generic HEIF one, its compatible
    brands; None for any other file or brand (M4A audio, raw photos…)."""
    if head[4:8] != b"ftyp" or int.from_bytes(head[:4], "big") < 16 or len(head) < 16:
        return None
    major = head[8:12]
    if major in GENERIC_HEIF:
        brands = _brands(head)
        return next((t for brand, t in HEIF_BRANDS.items() if brand in brands), None)
    return MAJOR_BRANDS.get(major) or BRAND_STEMS.get(major[:3])


def _brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of the `ftyp` box `head` starts with."""
    size = min(int.from_bytes(head[:4], "big"), len(head))
    return {head[8:12]} | {head[i : i + 4] for i in range(16, size - 3, 4)}


def _vint(data: bytes, at: int, marker: bool) -> tuple[int, int] | None:
    """The EBML variable-length integer at `at` (its length marker kept, as
    in an element ID, or not, as in a size) and where it ends; None if
    malformed or cut off."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at : at + length], "big")
    return (value if marker else value & ~(1 << (7 * length))), at + length


def _doc_type(head: bytes) -> bytes | None:
    """The DocType of the EBML header `head` starts with (as much of the
    header as `head` holds), or None."""
    size = _vint(head, len(EBML), marker=False)
    if size is None:
        return None
    at, end = size[1], min(size[1] + size[0], len(head))
    while at < end:
        ident = _vint(head, at, marker=True)
        length = None if ident is None else _vint(head, ident[1], marker=False)
        if ident is None or length is None:
            return None
        start, at = length[1], length[1] + length[0]
        if ident[0] == DOC_TYPE:
            return head[start:at].rstrip(b"\x00") if at <= len(head) else None
    return None


class SizeHidden(ValueError):
    """An image whose size is not within MAX_STEPS markers or boxes of its
    start: no camera writes one, and a viewer would still decode it."""


def viewable(width: int, height: int) -> bool:
    """Whether an image of this size is within MAX_SIDE and MAX_PIXELS."""
    return max(width, height) <= MAX_SIDE and width * height <= MAX_PIXELS


def dimensions(media_type: str, file: BinaryIO) -> tuple[int, int] | None:
    """The width and height the image in `file` (of `media_type`) declares,
    or None where it declares none in the bytes it has (cut short, or not an
    image); SizeHidden when it is too far in to look for."""
    read = _SIZE_READERS.get(media_type)
    if read is None:
        return None
    file.seek(0)
    return read(file)


def _png_size(file: BinaryIO) -> tuple[int, int] | None:
    """From the IHDR chunk, which must come first."""
    head = file.read(24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _gif_size(file: BinaryIO) -> tuple[int, int] | None:
    """The logical screen's size, grown to hold the first frame (a decoder
    grows the canvas to fit a frame larger than the screen declared): the
    frame's descriptor found past the colour table and any extensions. The
    screen's alone when the bytes end before the frame."""
    head = file.read(13)
    if len(head) < 13:
        return None
    width, height = int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[10] & 0x80:  # a global colour table: 3 × 2^(n+1) bytes
        file.seek(3 << ((head[10] & 0x07) + 1), 1)
    in_extension = False
    for _ in range(MAX_STEPS):  # blocks and sub-blocks alike
        byte = file.read(1)
        if not byte:
            return width, height  # cut short: the screen's size for now
        if in_extension:  # a sub-block's size; an empty one ends the extension
            in_extension = byte != b"\x00"
            file.seek(byte[0], 1)
        elif byte == b"\x21" and file.read(1):  # an extension, its label read
            in_extension = True
        elif byte == b"\x2c":  # an image descriptor: left, top, width, height
            frame = file.read(8)
            if len(frame) < 8:
                return width, height
            left, top, wide, high = (
                int.from_bytes(frame[i : i + 2], "little") for i in (0, 2, 4, 6)
            )
            return max(width, left + wide), max(height, top + high)
        else:
            return width, height  # the trailer, or not a GIF's block
    raise SizeHidden(f"no GIF frame within {MAX_STEPS} blocks")


def _webp_size(file: BinaryIO) -> tuple[int, int] | None:
    """From the first chunk: an extended file's canvas (24 bits a side, less
    one), a lossless bitstream's header (14 bits, less one), or a lossy key
    frame's (14 bits)."""
    head = file.read(30)
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
        return width & 0x3FFF, height & 0x3FFF
    return None


# The markers of a JPEG's frame header, which gives its size: all SOFn but
# DHT (C4), JPG (C8) and DAC (CC), which share their range.
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, with no length after them: TEM and RSTn.
JPEG_ALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    """From the frame header, after however many segments (metadata, tables)
    come first: a walk from marker to marker, each segment skipped by its
    length. None at the end of the image or its first scan before one."""
    at = 2
    for _ in range(MAX_STEPS):
        file.seek(at)
        marker = file.read(2)
        if len(marker) < 2:
            return None
        if marker[0] != 0xFF:  # stray bytes between segments: a decoder skips them
            at += 1
            continue
        if marker[1] == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if marker[1] in JPEG_ALONE:
            at += 2
            continue
        if marker[1] in (0xD9, 0xDA):
            return None
        segment = file.read(7)  # its length, then a frame's precision, height, width
        if marker[1] in JPEG_FRAMES:
            if len(segment) < 7:
                return None
            return int.from_bytes(segment[5:7], "big"), int.from_bytes(segment[3:5], "big")
        if len(segment) < 2:
            return None
        at += 2 + int.from_bytes(segment[:2], "big")
    raise SizeHidden(f"no JPEG frame header within {MAX_STEPS} markers")


# Where a HEIF file (HEIC, AVIF) says its images' sizes: each image's `ispe`
# property, among the properties (`ipco`, in `iprp`) of its `meta` box.
HEIF_PATH = (b"meta", b"iprp", b"ipco")


def _heif_size(file: BinaryIO) -> tuple[int, int] | None:
    """The widest and tallest of its images' `ispe` sizes: the primary
    image's (a grid's whole, not its tiles'), which its thumbnails, tiles
    and alpha or depth maps are no larger than."""
    start, end = 0, None
    steps = [0]
    for name in HEIF_PATH:
        found = next((b for b in _boxes(file, start, end, steps) if b[0] == name), None)
        if found is None:
            return None
        # `meta` is a full box: a version and flags before its children.
        start, end = found[1] + (4 if name == b"meta" else 0), found[2]
    sizes = []
    for name, body, _ in _boxes(file, start, end, steps):
        if name == b"ispe":
            file.seek(body + 4)  # past its version and flags
            size = file.read(8)
            if len(size) == 8:
                sizes.append((int.from_bytes(size[:4], "big"), int.from_bytes(size[4:], "big")))
    if not sizes:
        return None
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def _boxes(
    file: BinaryIO, start: int, end: int | None, steps: list[int]
) -> Iterator[tuple[bytes, int, int]]:
    """The ISO boxes from `start` to `end`, or to the file's end if that
    comes first (None: to it): each one's type, where its body starts and
    where it ends. The walk ends with a box that ends past there: cut short,
    or of a size no file has (a 64-bit one may say more bytes than a seek
    can reach). So does the walk of its children, however far it says they
    go. Counts each in `steps`, SizeHidden past MAX_STEPS."""
    file_end = file.seek(0, io.SEEK_END)
    end = file_end if end is None else min(end, file_end)
    at = start
    while at + 8 <= end:
        steps[0] += 1
        if steps[0] > MAX_STEPS:
            raise SizeHidden(f"no image size within {MAX_STEPS} boxes")
        file.seek(at)
        header = file.read(16)
        if len(header) < 8:
            return
        size, name, body = int.from_bytes(header[:4], "big"), header[4:8], at + 8
        if size == 1:  # a 64-bit size after the type
            if len(header) < 16:
                return
            size, body = int.from_bytes(header[8:16], "big"), at + 16
        box_end = end if size == 0 else at + size  # 0: to the end
        if box_end < body:
            return  # malformed: no decoder reads past it
        yield name, body, box_end
        at = box_end


_SIZE_READERS: dict[str, Callable[[BinaryIO], tuple[int, int] | None]] = {
    "image/png": _png_size,
    "image/gif": _gif_size,
    "image/webp": _webp_size,
    "image/jpeg": _jpeg_size,
    "image/heic": _heif_size,
    "image/avif": _heif_size,
}
