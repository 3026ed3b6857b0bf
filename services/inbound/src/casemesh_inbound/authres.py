"""Whether the mail server in front of this one vouches for a reply's
sender: the `Authentication-Results` header (RFC 8601) it writes after
checking SPF, DKIM and DMARC.

A From address alone can be forged. With `CASEMESH_TRUSTED_AUTHSERV_ID`
set to the name that server gives itself in the header (its authserv-id),
a reply is taken only when a header of that server's says one of:

- `dmarc=pass` for the From address's domain;
- `dkim=pass` for a signing domain (`header.d`) that is the From domain or
  one it is under (`example.com` for `mail.example.com`);
- `spf=pass` for an envelope sender (`smtp.mailfrom`) of that domain or one
  under it.

Only the headers above the message's first `Received` are read (the
server in front writes its own at the top, above the hop it received the
message on; anything below came with the message), and of those only the
ones of that authserv-id. The server in front should also remove headers
carrying its own name from the mail it receives (RFC 8601, section 5).
Quoted strings and comments are read as RFC 8601 writes them, so text a
sender controls (an envelope sender copied into `smtp.mailfrom`) cannot
pass for a result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One method's result, and the properties it names (`header.d`…)."""

    method: str
    result: str
    properties: dict[str, str]


def _words(text: str) -> list[list[str]]:
    """The value's words, by `;`-separated part: quoted strings taken whole
    (a `;` or `)` inside one separates nothing), backslash escapes read,
    comments (nested, with their own quoted pairs) dropped as white space.
    A sender's text copied into a header (an envelope sender, say) stays
    inside its word."""
    parts: list[list[str]] = [[]]
    word: list[str] = []
    started = False  # a word may be an empty quoted string

    def flush() -> None:
        nonlocal started
        if started:
            parts[-1].append("".join(word))
        word.clear()
        started = False

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "(":
            flush()
            depth, i = 1, i + 1
            while i < n and depth:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                i += 1
            continue
        if c == '"':
            i, started = i + 1, True
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                word.append(text[i])
                i += 1
            i += 1
            continue
        if c == ";":
            flush()
            parts.append([])
        elif c.isspace():
            flush()
        else:
            word.append(c)
            started = True
        i += 1
    flush()
    return parts


def parse(header: str) -> tuple[str, list[Result]]:
    """The authserv-id of an Authentication-Results value, and its results."""
    served_by, *resinfos = _words(header)
    results = []
    for words in resinfos:
        if not words or "=" not in words[0]:
            continue  # "none": nothing was checked
        method, _, result = words[0].partition("=")
        properties = {}
        for word in words[1:]:
            name, equals, value = word.partition("=")
            if equals and "." in name:
                properties[name.lower()] = value.lower()
        results.append(Result(method.split("/")[0].lower(), result.lower(), properties))
    return (served_by[0].lower() if served_by else ""), results


def _under(domain: str, sender_domain: str) -> bool:
    """`sender_domain` is `domain` or below it."""
    return bool(domain) and (sender_domain == domain or sender_domain.endswith("." + domain))


def vouched_for(headers: Iterable[str], authserv_id: str, sender: str) -> bool:
    """Whether a header of `authserv_id` vouches for `sender`'s domain."""
    domain = sender.rpartition("@")[2].lower()
    for header in headers:
        served_by, results = parse(header)
        if served_by != authserv_id.lower():
            continue
        for r in results:
            if r.result != "pass":
                continue
            if r.method == "dmarc" and r.properties.get("header.from") == domain:
                return True
            signer = r.properties.get("header.d") or r.properties.get("header.i", "")
            if r.method == "dkim" and _under(signer.rpartition("@")[2], domain):
                return True
            mailfrom = r.properties.get("smtp.mailfrom", "").rpartition("@")[2]
            if r.method == "spf" and _under(mailfrom, domain):
                return True
    return False
