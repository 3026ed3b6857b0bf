"""An e-mail's bytes, written directly for the messages the notifier sends
(a text body, with an HTML alternative when there is one): the same headers,
parts and body encoding `email.message.EmailMessage` gives them
(`SmtpChannel._message`: `set_content`, `add_alternative`), at a fraction of
the cost (the library parses every header it is given back into a
structure, then folds it out again). Both use the boundary `boundary` gives,
so the same job is the same message whichever writes it.

`render` answers None for what it does not write itself (an address that is
not a plain `local@domain`, a long or empty ASCII subject, an unusual
template name); the sender then builds that message with the library.

Whichever writes it, the Subject reads exactly as the template and the
person wrote it (`written_subject`), and every e-mail of one case names the
same thread (`thread`).
"""

from __future__ import annotations

import binascii
import hashlib
import re
from email import policy, quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses

from casemesh.rules import tickets as rules

# The library's line limit (policy.default.max_line_length), for headers and body.
LINE = 78
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\Z")
_TOKEN = re.compile(r"[A-Za-z0-9._-]+\Z")
# The most UTF-8 bytes one encoded word holds within 75 characters (RFC 2047).
_WORD_BYTES = 45
# The most the first one holds, after "Subject: ", within the line's 78.
_FIRST_WORD_BYTES = 42
SMTP_POLICY = policy.default.clone(linesep="\r\n")


def mailbox(sender: str) -> str:
    """The address of a From value naming one mailbox, `local@domain`, with
    or without a display name (`Casemesh Support <support@casemesh.local>`).
    ValueError, saying what is wrong, for anything else: no relay would take
    it as the envelope sender."""
    msg = EmailMessage()
    try:
        msg["From"] = sender
    except (IndexError, ValueError):  # the library's parser gives up on some
        raise ValueError(f"{sender!r} is not an e-mail address") from None
    header = msg["From"]
    if header.defects or len(header.addresses) != 1 or header.groups[0].display_name:
        raise ValueError(
            f"{sender!r} must be one address, local@domain, after an optional name "
            "(Casemesh Support <support@casemesh.local>)"
        )
    address: Address = header.addresses[0]
    if not address.username or not _host_name(address.domain):
        raise ValueError(f"{sender!r} names no mailbox: it needs local@domain")
    return address.addr_spec


def _host_name(domain: str) -> bool:
    """Whether `domain` is a host name as a relay takes it: labels of ASCII
    letters and digits, with hyphens inside them (an international name in
    its xn-- form)."""
    return domain.isascii() and all(
        label.replace("-", "").isalnum() and not label.startswith("-") and not label.endswith("-")
        for label in domain.split(".")
    )


def ascii_domain(address: str) -> str:
    """`address` with an international domain in its ASCII form
    (`rules.ascii_host`, as the API and the inbound mail service read it): `li@例子.中国` is
    `li@xn--fsqu00a.xn--fiqs8s`, the same mailbox, and a relay without
    SMTPUTF8 takes it. As written when its domain is ASCII already, or is no
    domain name IDNA can write (the relay then refuses it)."""
    local, at, domain = address.rpartition("@")
    host = None if not at or domain.isascii() else rules.ascii_host(domain)
    return address if host is None else f"{local}@{host}"


class Sender:
    """The From header, folded once, and the envelope sender it names."""

    def __init__(self, sender: str) -> None:
        msg = EmailMessage()
        msg["From"] = sender
        self.header = msg.as_bytes(policy=SMTP_POLICY).split(b"\r\n\r\n", 1)[0] + b"\r\n"
        self.address = getaddresses([str(msg["From"])])[0][1]
        self.plain = bool(_ADDRESS.match(self.address))


def thread(case_name: str) -> str:
    """The Message-ID every e-mail of a case answers (In-Reply-To and
    References), so that mail clients show them as one conversation. A
    digest of the case's name: the same for all its e-mails, the same
    whichever writes them, and telling nothing of the case or its people
    whatever a name holds. No message has this id; clients thread on the
    reference alone."""
    return f"<case-{hashlib.sha256(case_name.encode()).hexdigest()[:32]}@casemesh>"


def boundary(job_id: str, *parts: str) -> str | None:
    """The multipart boundary of a job's message, or None (the library then
    picks one) in the unlikely case a part contains it."""
    mark = f"casemesh-alternative-{job_id}"
    return None if any(mark in part for part in parts) else mark


def render(
    sender: Sender,
    job_id: str,
    recipient: str,
    subject: str,
    body: str,
    template: str,
    html: str = "",
    reply_to: str = "",
    case_name: str = "",
) -> bytes | None:
    """The message as the relay receives it (CRLF lines, before dot-stuffing),
    or None when the library should write it. `case_name`: the case it tells
    of, whose thread it joins ("" for none)."""
    if not (sender.plain and _ADDRESS.match(recipient) and _TOKEN.match(template)):
        return None
    if reply_to and not _ADDRESS.match(reply_to):
        return None
    subject_value = written_subject(" ".join(subject.split()))
    if subject_value is None:
        return None
    if html:
        mark = boundary(job_id, body, html)
        if mark is None:
            return None
        content = _alternatives(mark.encode(), body, html)
    else:
        cte, payload = _body(body)
        content = (
            b'Content-Type: text/plain; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: %s\r\nMIME-Version: 1.0\r\n\r\n%s" % (cte, payload)
        )
    return b"".join(
        (
            sender.header,
            b"To: %s\r\n%sSubject: %s\r\nDate: %s\r\n"
            % (
                recipient.encode(),
                b"Reply-To: %s\r\n" % reply_to.encode() if reply_to else b"",
                subject_value,
                formatdate(localtime=False).encode(),
            ),
            b"Message-ID: <%s@casemesh>\r\n%sX-Casemesh-Template: %s\r\n"
            % (
                job_id.encode(),
                _thread_headers(case_name),
                template.encode(),
            ),
            content,
        )
    )


def thread_headers(case_name: str) -> dict[str, str]:
    """In-Reply-To and References naming the thread of the case a message
    tells of (`thread`), so a mail client shows a case's e-mails as one
    conversation; none for a message of no case."""
    if not case_name:
        return {}
    root = thread(case_name)
    return {"In-Reply-To": root, "References": root}


def _thread_headers(case_name: str) -> bytes:
    """`thread_headers` as the library writes them (`SmtpChannel._message`)."""
    return b"".join(
        b"%s: %s\r\n" % (name.encode(), value.encode())
        for name, value in thread_headers(case_name).items()
    )


def _alternatives(mark: bytes, text: str, html: str) -> bytes:
    """multipart/alternative of the text and the HTML, as `add_alternative`
    writes it (the HTML part repeats MIME-Version, as the library's does)."""
    text_cte, text_payload = _body(text)
    html_cte, html_payload = _body(html)
    return b"".join(
        (
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="%s"\r\n\r\n'
            % mark,
            b'--%s\r\nContent-Type: text/plain; charset="utf-8"\r\n' % mark,
            b"Content-Transfer-Encoding: %s\r\n\r\n%s\r\n" % (text_cte, text_payload),
            b'--%s\r\nContent-Type: text/html; charset="utf-8"\r\n' % mark,
            b"Content-Transfer-Encoding: %s\r\nMIME-Version: 1.0\r\n\r\n%s\r\n"
            % (html_cte, html_payload),
            b"--%s--\r\n" % mark,
        )
    )


def written_subject(text: str) -> bytes | None:
    """The Subject's value for `text` (one line) as written out, or None for
    plain ASCII the library may write as it likes (empty, or too long for
    one line: it folds it at its spaces). Printable ASCII that fits one line
    as it is; anything else as base64 encoded words, one per folded line,
    the first one shorter: with "Subject: " before it, its line too is at
    most LINE long.

    ASCII holding "=?" counts as anything else: written as it is, a mail
    client (and the library, were it given the text) would read an encoded
    word in it and show other words than were typed (on some Python
    releases, a line break and a header of the typist's choosing)."""
    if text.isascii() and (not text or ("=?" not in text and text.isprintable())):
        return text.encode() if text and len(text) <= LINE - len("Subject: ") else None
    words, word, most = [], b"", _FIRST_WORD_BYTES
    for char in text:
        encoded = char.encode()
        if len(word) + len(encoded) > most:
            words.append(word)
            word, most = b"", _WORD_BYTES
        word += encoded
    words.append(word)
    return b"\r\n ".join(b"=?utf-8?b?%s?=" % binascii.b2a_base64(w, newline=False) for w in words)


def _body(text: str) -> tuple[bytes, bytes]:
    """The transfer encoding and the encoded body, chosen as the library's
    `set_content` chooses: as it is when every line fits, else the shorter of
    quoted-printable and base64 over the first ten lines."""
    lines = text.encode().splitlines()
    if max((len(x) for x in lines), default=0) <= LINE:
        return (b"7bit" if text.isascii() else b"8bit"), b"\r\n".join(lines) + b"\r\n"
    body = b"\n".join(lines) + b"\n"
    sniff = b"\n".join(lines[:10]) + b"\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), LINE)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        step = LINE // 4 * 3
        chunks = (body[i : i + step] for i in range(0, len(body), step))
        return b"base64", b"".join(binascii.b2a_base64(c, newline=False) + b"\r\n" for c in chunks)
    qp = sniff_qp if len(lines) <= 10 else quoprimime.body_encode(body.decode("latin-1"), LINE)
    return b"quoted-printable", "\r\n".join(qp.splitlines()).encode() + b"\r\n"
