"""What a requester's reply e-mail says: who sent it, its Message-ID, the new
text (quoted history stripped) and its attachments. Pure: bytes in, a `Reply`
out, or `Unreadable`.

The history is stripped with mail-parser-reply (headers such as "On … wrote:"
and "-----Original Message-----", signatures, in many languages), then at the
first header it does not know (the ones Chinese mail clients write, "在 … 写道："
and Gmail's "… 于 … 写道：", Apple Mail's "2024年1月1日 10:00，… 写道：",
"-----原始邮件-----", and Gmail's French, Spanish, Dutch and Korean ones, which
its patterns miss or cut in two); quoted lines ("> …") left at the end go
too. What the requester wrote between or below the lines they quoted is
kept. A separator starts a history wherever it stands; any other header
does only if it names an address, has quoted lines below it, or says a
date and its time of day close after it ("On 1/1/2024 10:00 AM, X
wrote:"; Gmail's and Apple Mail's Chinese shapes always need the
address): "On Monday at 10:30 support wrote:", "On 3 March my brother
wrote:" or "在周一10:30，客服写道：" is the requester's own sentence, and the
text after it theirs. Two lines are one header only where Gmail's plain
text breaks one: a sentence wrapped over two lines is none.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.errors import InvalidHeaderDefect, MessageError, ObsoleteHeaderDefect
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from html.parser import HTMLParser
from itertools import islice

from mailparser_reply import EmailReplyParser
from mailparser_reply.parser import EmailMessage as ParsedMessage

from casemesh.rules import tickets as rules

# The languages whose reply headers the library looks for.
LANGUAGES = ["en", "zh", "de", "fr", "es", "it", "ja", "ko", "nl"]
_PARSER = EmailReplyParser(languages=LANGUAGES)
# A separator line starts a history wherever it stands.
_SEPARATOR_LINE = r"-{3,}\s*(?:原始邮件|Original Message)\s*-{3,}"
_SEPARATOR = re.compile(rf"^\s*{_SEPARATOR_LINE}\s*$", re.IGNORECASE)
# A time of day, and a date as mail programs write one: in digits
# ("01/01/2024", "1/1/24", "2024-01-01", "2024. 1. 1."), by year, month and
# day ("2024年1月1日", "2024년 1월 1일"), or with its year in full ("Mon, 1
# Jan 2024").
_TIME = r"\d{1,2}[:：]\d{2}"
_NUMERIC_DATE = r"\d{1,4}[./-]\s?\d{1,2}[./-]\s?\d{1,4}\.?"
_DATE = (
    r"(?<!\d)(?:\d{4}\s?[年년]\s?\d{1,2}\s?[月월]\s?\d{1,2}\s?[日일]"
    rf"|{_NUMERIC_DATE}|(?:19|20)\d{{2}}(?!\d))"
)
# What a header without an address says: a date, its time of day close
# after it ("On 1/1/2024 10:00 AM, X wrote:", "在 2021/6/7 下午9:40, X 写道:",
# "Am 01.01.2024 um 10:00 schrieb X:"), as every mail program writes one. A
# requester's sentence says a time alone ("On Monday at 10:30 support
# wrote:") or a date alone ("On 3 March my brother wrote:").
_DATED = re.compile(rf"{_DATE}.{{0,20}}?{_TIME}")
# The Chinese headers of the mail programs that always name the sender's
# address (Gmail's "Name <a@b>", Apple Mail's) need it: a requester writes
# "2024年3月3日 10:30，你们的客服写道：" just as Apple Mail does, date and time
# and all. Gmail's ("Name <a@b> 于2024年1月1日周一 下午3:56写道：") is known by
# the full date right after its 于: a sentence's 于 ("由于2023年的…",
# "我于2023年在简介里写道：") is no header, and a name may hold a 于 too.
_ADDRESSED_ZH_HEADERS = (
    r".{0,200}于\d{4}年\d{1,2}月\d{1,2}日.{0,40}写道[:：]"
    r"|\d{4}年\d{1,2}月\d{1,2}日.{0,200}写道[:：]"
)
# The library misses Gmail's Spanish header (its pattern wants two spaces
# before "escribió"), its Dutch one (the pattern wants "schreef:" last, where
# Gmail names the sender after it), its Korean one and Apple Mail's Chinese
# one (the library's Korean and Chinese patterns rule out, by a lookahead,
# every line they would match); Gmail's French one it reports from the
# middle of the line, which `_split` does not take. Spaces may be no-break
# ones (French sets one before its colon). Other mail programs write these
# shapes with no address, and with a date and its time (`_DATED`: "Le
# 01/01/2024 à 10:00, Casemesh a écrit :", "2024. 1. 1. 오전 10:00,
# Casemesh님이 작성:").
_MISSED_HEADERS = (
    r"Le\s.{0,200}\sa\sécrit\s?:"
    r"|El\s.{0,200}\sescribió\s?:"
    r"|Op\s.{0,200}\sschreef\s.{0,200}:"
    rf"|(?:\d{{4}}년\s?\d{{1,2}}월\s?\d{{1,2}}일|{_NUMERIC_DATE}).{{0,200}}님이\s?작성(?:하였습니다)?\s?:"
)
_ADDRESSED_ZH = re.compile(rf"^\s*(?:{_ADDRESSED_ZH_HEADERS})\s*$", re.IGNORECASE)
_HEADERS = re.compile(
    r"^\s*(?:在.{0,200}写道[:：]"
    rf"|{_SEPARATOR_LINE}"
    r"|On .{0,200}wrote:"
    rf"|{_ADDRESSED_ZH_HEADERS}|{_MISSED_HEADERS})\s*$",
    re.IGNORECASE,
)
# Where Gmail's plain text breaks a header too long for its lines: a Chinese
# one after its date, before its time ("Name <a@b> 于2024年1月1日周一" over
# "上午9:30写道："), the others before the address ("… Name <" over
# "a@b> a écrit :") or after it ("… Name <a@b>" over "a écrit :"; a Korean
# one after the 님이 it sets right after the address). The lines of a
# requester's sentence break anywhere. Gmail's Dutch header ends in its
# address ("schreef Name <a@b>:"), so has no line of its own after it.
_GMAIL_DATE_LAST = re.compile(r"于\d{4}年\d{1,2}月\d{1,2}日(?:周[一二三四五六日天])?\s*$")
_GMAIL_TIME_ALONE = re.compile(r"\s*(?:[上下]午)?\d{1,2}:\d{2}\s*写道[:：]\s*")
_ADDRESS_FIRST = re.compile(r"\s*(<\s*)?[^\s<>@]+@[^\s<>]+>")
_ADDRESS_LAST = re.compile(r"<\s*[^\s<>@]+@[^\s<>]+>\)?(?:님이)?\s*$")
_TAIL_ALONE = re.compile(
    r"\s*(?:a\sécrit|escribió|wrote|작성(?:하였습니다)?)\s?:\s*", re.IGNORECASE
)
# Text whose first line that is not blank is quoted.
_QUOTE_FOLLOWS = re.compile(r"\s*>")


# What of a reply's text is read for its history (a comment keeps less: the
# body's limit), and the longest line a history's header may be: the
# library's header patterns take time growing with the square of a line's
# length, and one long line (quoted-printable wrapped without breaks) would
# hold the server for minutes on a message that is then retried.
READ_CHARS = 2 * rules.LIMITS["body"]
HEADER_LINE_CHARS = 1_000
# What of an HTML body is read for its text: room for `READ_CHARS` of text in
# the markup around it (an Outlook reply spends tens of characters of styles
# and tags on each of its own), and a bound to the time one body holds a reader.
HTML_CHARS = 50 * READ_CHARS

# An inline image smaller than this is taken for decoration (a signature's
# logo or icons, a few KiB); a screenshot pasted into a reply is larger.
INLINE_DECORATION_BYTES = 16 * 1024
# Character sets mail programs label text with while writing a wider one,
# read as the wider one (as the WHATWG encoding standard and browsers read
# them): Chinese mail programs label GBK text gb2312, and read as labelled
# every character outside GB 2312 (镕, 喆, 堃) would come out as U+FFFD.
# GB 18030 reads every GB 2312 and GBK text as they mean it.
WIDER_CHARSETS = dict.fromkeys(
    ("gb2312", "gb_2312-80", "csgb2312", "euc-cn", "x-gbk", "gbk", "cp936"), "gb18030"
)
_LABELS = "|".join(map(re.escape, WIDER_CHARSETS))
# Those labels where a file's name says its character set: an encoded word
# (`=?gb2312?B?…?=`, a language after `*` allowed) or an RFC 2231 parameter
# (`filename*=gb2312''…`, `filename*0*=gb2312'…`).
_NARROW_LABEL = re.compile(
    rf"(?<==\?)({_LABELS})(?=(?:\*[^?\s]*)?\?[BbQq]\?[^?\s]*\?=)"
    rf"|(?<=\*=)({_LABELS})(?=')|(?<=\*[0-9]\*=)({_LABELS})(?=')",
    re.IGNORECASE,
)


class Unreadable(ValueError):
    """The message cannot be made into a comment; the text says why."""


class AutoReply(ValueError):
    """A message no person wrote (an out-of-office answer, a bounce, a list's
    mail, RFC 3834): taken and dropped, never a comment that reopens a ticket."""


def automatic(msg: EmailMessage) -> bool:
    """Whether `msg` says it was sent by a program (RFC 3834 and the headers
    common mail systems use instead). Not X-Auto-Response-Suppress: it asks
    others not to answer automatically, and Outlook and Exchange put it on
    mail people write. Auto-Submitted is read by its first word: "no (sent by
    a person)" is a person's, as RFC 3834 allows the comment."""
    submitted = _first_word(str(msg.get("Auto-Submitted", "no")))
    precedence = str(msg.get("Precedence", "")).strip().lower()
    return (
        submitted != "no"
        or precedence in ("auto_reply", "bulk", "junk", "list")
        or any(h in msg for h in ("X-Autoreply", "X-Autorespond"))
        or str(msg.get("Content-Type", "")).lower().startswith("multipart/report")
    )


def _first_word(value: str) -> str:
    """A structured header's first word, lower case, its comments and
    parameters left out."""
    words = re.sub(r"\([^()]*\)", " ", value).replace(";", " ").split()
    return words[0].lower() if words else ""


@dataclass(frozen=True)
class Attachment:
    file_name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    sender: str  # the From address, lower case
    message_id: str
    text: str
    attachments: list[Attachment]
    # The Authentication-Results headers above its first Received (`authres`).
    authentication: tuple[str, ...] = ()


def strip_quoted(text: str) -> str:
    """The new part of a reply, read from its first `READ_CHARS`: what comes
    before the quoted history, then what the requester wrote between or
    below the lines they quoted from it (answers written under each
    question, a reply written below the quote), in their order, a signature
    among them kept as one above the history is. A history quoted whole, or
    written without "> " (Outlook's, an HTML body's), is left out whole. A
    line too long to be a header is never taken for one."""
    text = text.replace("\r\n", "\n")[:READ_CHARS]
    # Each longer line stands aside under a mark no text can hold.
    mark = f"\ue000{secrets.token_hex(8)}:"
    long: list[str] = []

    def short(line: str) -> str:
        if len(line) <= HEADER_LINE_CHARS:
            return line
        long.append(line.strip())
        return f"{mark}{len(long) - 1}\ue001"

    back = re.compile(re.escape(mark) + "(\\d+)\ue001")

    def restored(part: str) -> list[str]:
        return back.sub(lambda m: long[int(m[1])], part).split("\n")

    probe = "\n".join(short(line) for line in text.split("\n"))
    top, history = _split(_PARSER.read(text=probe), lambda part: back.sub("", part))
    lines, below = restored(top), restored(history)
    for i in range(len(lines)):
        if size := _header_at(lines, i):
            lines, below = lines[:i], lines[i + size :]
            break
    for i in range(len(below)):
        if _header_at(below, i):
            below = below[:i]
            break
    while lines and (not lines[-1].strip() or _quoted(lines[-1])):
        lines.pop()
    written = ["\n".join(lines).strip(), *_answers(below)]
    return "\n\n".join(part for part in written if part)


def _split(message: ParsedMessage, unmarked: Callable[[str], str]) -> tuple[str, str]:
    """The text above the first header the library found that starts a
    history (`_starts_history`), and the history below it, up to the next
    such header: a header that starts none is left in the text around it,
    and so is one that starts in the middle of a line (its French pattern
    also reports the part after "Le " of "Le lun. … a écrit :", which cut
    the reply to "Oui.\n\nLe"; `_header_at` finds that line whole).
    `unmarked` gives a header without the marks of the lines set aside."""
    text = message.text
    starts: list[tuple[int, str]] = []  # (where it stands, header) of each
    at = 0
    for reply in message.replies:
        # Each reply is the library's text from its header to the next, stripped.
        start = text.find(reply.content, at)
        if start < 0:
            continue
        at = start + len(reply.content)
        header = reply.headers or ""
        line_start = start == 0 or text[start - 1] == "\n"
        if header and line_start and reply.content.startswith(header):
            after = text[start + len(header) :]
            if _starts_history(unmarked(header), after):
                starts.append((start, header))
    if not starts:
        return text.strip(), ""
    (first, header), *rest = starts
    end = rest[0][0] if rest else len(text)
    return text[:first].strip(), text[first + len(header) : end].strip()


def _header_at(lines: list[str], i: int) -> int:
    """How many lines from `lines[i]` a header the library does not know
    (`_HEADERS`) that starts a history (`_starts_history`) takes: 1; 2 for
    one Gmail's plain text wrapped (`_gmail_wrapped`); 0 for none."""
    pair = lines[i : i + 2]
    if _HEADERS.match(lines[i]):
        size = 1
    elif len(pair) == 2 and _gmail_wrapped(*pair):
        size = 2
    else:
        return 0
    following = next((line for line in islice(lines, i + size, None) if line.strip()), "")
    return size if _starts_history(" ".join(lines[i : i + size]), following) else 0


def _gmail_wrapped(first: str, second: str) -> bool:
    """Whether two lines are one Gmail header its plain text broke where it
    breaks one (`_GMAIL_DATE_LAST`, `_ADDRESS_FIRST`, `_ADDRESS_LAST`), its
    address in the first line or at the start of the second; a first line
    ending in the address goes on with the header's tail alone ("a écrit :",
    `_TAIL_ALONE`). Neither may be a header alone: the line above a header
    is the requester's. A sentence of theirs running over two lines
    ("Le 3 mars à 10:30 j'ai reçu un message où" over "votre équipe a
    écrit :") is no header, however the two read together."""
    if _HEADERS.match(second) or not _HEADERS.match(f"{first} {second}"):
        return False
    if _GMAIL_DATE_LAST.search(first) and "@" in first:
        return bool(_GMAIL_TIME_ALONE.fullmatch(second))
    if _ADDRESS_LAST.search(first):
        return bool(_TAIL_ALONE.fullmatch(second))
    address = _ADDRESS_FIRST.match(second)
    return address is not None and (address[1] is not None or first.rstrip().endswith("<"))


def _starts_history(header: str, after: str) -> bool:
    """Whether a header starts the quoted history, `after` being the text
    below it: a separator does, and so does a header that names an address
    or has quoted lines below it. Any other does only if it says a date and
    its time of day close after it (`_DATED`), as every mail program's does,
    and is not of the Chinese shapes of Gmail's and Apple Mail's, which
    always name the address (`_ADDRESSED_ZH`). Otherwise it is the
    requester's own sentence ("On Monday at 10:30 support wrote:", "On 3
    March my brother wrote:", "2024年3月3日 10:30，你们的客服写道："), and what
    follows it is theirs too."""
    if _SEPARATOR.match(header) or "@" in header or _QUOTE_FOLLOWS.match(after):
        return True
    return not _ADDRESSED_ZH.match(header) and bool(_DATED.search(header))


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _answers(history: list[str]) -> list[str]:
    """The runs of lines not quoted that come after a quoted line in the
    history: what the requester wrote into or below the quote."""
    runs: list[list[str]] = []
    for line in history:
        if _quoted(line):
            runs.append([])
        elif runs:
            runs[-1].append(line)
    return [said for run in runs if (said := "\n".join(run).strip())]


class _Text(HTMLParser):
    """The text of an HTML body: blocks on their own lines, no scripts or styles."""

    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The text of an HTML body, read from its first `HTML_CHARS`. Markup
    left open at the end (a tag or comment never closed, or cut there) shows
    nothing, as in a browser: Python 3.11's parser, asked to finish it,
    reads the rest again from each `<` in it, which takes minutes for a
    hundred kilobytes of `<a ` (gh-135462)."""
    parser = _Text()
    try:
        parser.feed(html[:HTML_CHARS])
        if not parser.rawdata.startswith("<"):
            parser.close()  # only text is left (held back for an `&` it may end in)
    except AssertionError:
        # Markup the parser gives up on (`<![` with no name after it): the
        # same bytes fail the same way on every try.
        raise Unreadable("the HTML text cannot be read") from None
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.parts)).strip()


def file_name(given: str) -> str:
    """An attachment's name as it is stored and named in the comment: its
    last path segment, printable characters only (a control character would
    have the comment refused, a direction override would disguise the name),
    at most 255 of them; "attachment" if nothing is left."""
    kept = "".join(c for c in rules.base_name(given) if not rules.unprintable(c)).strip()
    return kept[:255].strip() or "attachment"


def read_reply(raw: bytes) -> Reply:
    """The reply in a raw RFC 5322 message."""
    try:
        return _read_reply(raw)
    except (Unreadable, AutoReply):
        raise
    except RecursionError:
        # Parts nested a thousand deep: no mail program writes that, and a
        # sender told to try later would try again for days.
        raise Unreadable("the message's parts nest too deeply") from None
    except (IndexError, AttributeError, TypeError, ValueError, MessageError):
        # Headers the standard library's parser trips on (`Message-ID: <>`,
        # `From: <`): the same bytes fail the same way on every try.
        raise Unreadable("the message's headers cannot be parsed") from None


def _leaves(part: EmailMessage, rendering: bool = False) -> Iterator[tuple[EmailMessage, bool]]:
    """Every part of the message that is not made of parts, however its
    client nested them (a screenshot pasted into a rich-text reply sits in
    a multipart/related inside the multipart/alternative, where the
    standard library's `iter_attachments` does not look), each with whether
    it is inside a multipart/alternative (another rendering of the body); a
    message forwarded inside it is one part."""
    if part.get_content_maintype() != "multipart":
        yield part, rendering
        return
    rendering = rendering or part.get_content_subtype() == "alternative"
    for sub in part.iter_parts():
        if isinstance(sub, EmailMessage):
            yield from _leaves(sub, rendering)


def _text_part(part: EmailMessage) -> bool:
    """Text the sender wrote in the message (no file they attached)."""
    return (
        part.get_content_maintype() == "text"
        and part.get_content_disposition() != "attachment"
        and not part.get_filename()
    )


def _wider(text: str) -> str:
    """`text` (a header's value) with the narrower labels of its file name's
    character set given as the wider ones (`WIDER_CHARSETS`)."""
    return _NARROW_LABEL.sub(lambda m: WIDER_CHARSETS[m[0].lower()], text)


def _file_name_of(part: MIMEPart) -> str:
    """The name of the part's file, read in the wider character set its
    label stands for (`WIDER_CHARSETS`); as the part gives it when no label
    is narrower, or when the header cannot be read again. The part itself
    is left as it came."""
    given = part.get_filename() or ""
    # The first of each header, as `get_filename` reads them.
    first: dict[str, str] = {}
    for name, value in part.raw_items():
        first.setdefault(name.lower(), _unfolded(value))
    headers = {
        name: first[name] for name in ("content-disposition", "content-type") if name in first
    }
    wider = {name: _wider(value) for name, value in headers.items()}
    if wider == headers:
        return given
    probe = EmailMessage(policy=policy.default)
    try:
        for name, value in wider.items():
            probe[name] = value
        return probe.get_filename() or given
    except (ValueError, MessageError):
        return given


def _text_of(part: MIMEPart) -> str:
    try:
        wider = WIDER_CHARSETS.get(part.get_content_charset() or "")
        if wider is None:
            content = part.get_content()
        else:  # read in the wider set its label stands for
            payload = part.get_payload(decode=True)
            content = payload.decode(wider, errors="replace") if isinstance(payload, bytes) else ""
    except (LookupError, UnicodeError, ValueError):
        raise Unreadable("the text is in an unknown character set") from None
    return html_text(content) if part.get_content_subtype() == "html" else str(content)


def _checked(msg: EmailMessage) -> tuple[str, ...]:
    """The Authentication-Results headers the last hop wrote: those above
    the first Received (a sender's own come below the hops it went through),
    unfolded and as written: never decoded, since an encoded word
    (`=?us-ascii?q?=3B_dmarc=3Dpass?=`) in an envelope sender the server
    copied into its header would decode to results of the sender's own."""
    found = []
    for name, value in msg.raw_items():
        if name.lower() == "received":
            break
        if name.lower() == "authentication-results":
            found.append(_unfolded(value))
    return tuple(found)


def _sender(msg: EmailMessage) -> str:
    """The one address of the From header, lower case, as the server that
    checked the sender read it: written in the header as it is read (never
    decoded from an encoded word). A header that names it alone is taken
    however malformed its display name (`_written_alone`); any other the
    standard library reads only by guessing (`victim@qq.com
    <attacker@qq.com>`) is refused: its guess need not be the address that
    was checked. A period in a display name (`J. Smith <j@x.com>`, obsolete
    but common) changes no address and is taken."""
    header = msg["From"]
    if header is None:
        raise Unreadable("the message has no From address")
    addresses: tuple[Address, ...] = header.addresses
    if len(addresses) > 1:
        raise Unreadable("the message's From names more than one address")
    address = addresses[0].addr_spec if addresses else ""
    written = _unfolded(next(v for k, v in msg.raw_items() if k.lower() == "from"))
    if address.lower() not in written.lower() or (
        not _written_alone(written, address) and any(_guessed(d) for d in header.defects)
    ):
        raise Unreadable("the message's From address cannot be read for certain")
    if not addresses or not addresses[0].username or not addresses[0].domain:
        raise Unreadable("the message has no From address")
    return address.lower()


def same_mailbox(given: str, sender: str) -> bool:
    """Whether a contact address someone gave and a reply's sender are one
    mailbox, however each writes its domain: in Unicode (`bücher.de`, as a
    contact may be given, or as an SMTPUTF8 mail's header carries it) or as
    its ASCII form (`xn--bcher-kva.de`, as most mail programs send it). The
    ASCII form is IDNA 2008's (UTS #46, non-transitional: `straße.de` is not
    `strasse.de`); only ASCII letters are taken as one in either case, and
    an address that is no valid UTF-8, or whose domain has no ASCII form, is
    compared as written."""
    mine, theirs = _mailbox(given), _mailbox(sender)
    return mine is not None and mine == theirs


def _mailbox(address: str) -> str | None:
    """An address with its domain in ASCII form and its ASCII letters in lower
    case; as written when it cannot be (a header's UTF-8 the parser could not
    read as text comes as escapes: read back, strictly). None: no address."""
    try:
        text = address.encode("utf-8", "surrogateescape").decode("utf-8").strip()
    except UnicodeError:
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return None
    domain = rules.ascii_host(domain) or domain  # (else compared as written)
    return f"{_ascii_lower(local)}@{_ascii_lower(domain)}"


def _ascii_lower(text: str) -> str:
    """`text` with its ASCII letters in lower case, and no other letter
    changed (a Kelvin sign is no k)."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _unfolded(value: object) -> str:
    """A header's value as written, its folding undone."""
    return re.sub(r"\r?\n(?=[ \t])", "", str(value))


# Comments (unnested, without angle brackets) around an address.
_COMMENTS = r"(?:\s*\((?:[^()<>\\]|\\.)*\))*\s*"
# A header ending in its one angle-bracketed address, and one that is a bare
# address: what any server checking the sender reads as that address.
_ANGLE_LAST = re.compile(r"[^<>]*<\s*([^<>\s]*)\s*>" + _COMMENTS)
_BARE = re.compile(_COMMENTS + r"([^\s<>()]+)" + _COMMENTS)


def _written_alone(header: str, address: str) -> bool:
    """Whether a From header, as written, names `address` and nothing a
    server checking the sender could take for another: `address` is its one
    angle-bracketed address, at its end, or its whole value (comments
    aside). Before the brackets is a display name, however malformed (an
    encoded word in quotes, or no space before the `<`, as Outlook and
    Foxmail write a Chinese name)."""
    found = _ANGLE_LAST.fullmatch(header) or _BARE.fullmatch(header)
    return found is not None and found[1].lower() == address.lower()


def _guessed(defect: object) -> bool:
    """Whether the standard library's parser read an address header past
    what the standard allows (a period in a display name aside)."""
    if isinstance(defect, ObsoleteHeaderDefect):
        return str(defect) != "period in 'phrase'"
    return isinstance(defect, InvalidHeaderDefect)


def _read_reply(raw: bytes) -> Reply:
    msg = message_from_bytes(raw, policy=policy.default)
    if not isinstance(msg, EmailMessage):
        raise Unreadable("the message cannot be parsed")
    if automatic(msg):
        raise AutoReply("an automatic message")
    # One From header of one address: the one its authentication results
    # speak of (a second header above a signed message would stand in for
    # the signer's, and one of several addresses is nobody's alone).
    if len(msg.get_all("From") or []) > 1:
        raise Unreadable("the message has more than one From header")
    sender = _sender(msg)
    message_id = str(msg.get("Message-ID", "")).strip()
    if not message_id:
        raise Unreadable("the message has no Message-ID")
    body = msg.get_body(preferencelist=("plain", "html"))
    texts = [_text_of(body)] if body is not None else []
    attachments = []
    for part, rendering in _leaves(msg):
        if part is body:
            continue
        if _text_part(part):
            # Among the body's renderings (its HTML beside the plain text, a
            # watch or calendar version) it is the same words; elsewhere
            # plain text or HTML is more of them (the text after a picture
            # pasted in Apple Mail), and any other text a file.
            if rendering:
                continue
            if part.get_content_subtype() in ("plain", "html"):
                texts.append(_text_of(part))
                continue
        data = part.get_payload(decode=True)
        if part.get_content_type() == "message/rfc822":
            # A message forwarded as a file (the message itself, without the
            # part's headers): named among those not attached.
            forwarded = part.get_content()
            data = forwarded.as_bytes() if isinstance(forwarded, EmailMessage) else None
        if not isinstance(data, bytes):
            continue
        # A small image the HTML shows inline (a signature's logo) is not
        # evidence; a screenshot pasted into the text is.
        if (
            part.get("Content-ID")
            and part.get_content_disposition() != "attachment"
            and len(data) < INLINE_DECORATION_BYTES
        ):
            continue
        attachments.append(
            Attachment(
                file_name=file_name(_file_name_of(part)),
                media_type=part.get_content_type(),
                data=data,
            )
        )
    text = "\n\n".join(t.strip("\n") for t in texts)
    return Reply(sender, message_id, strip_quoted(text), attachments, _checked(msg))
