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

Headers of any other authserv-id are not read: a sender can write one of
its own. The server in front must remove headers carrying its own name
from the mail it receives (RFC 8601, section 5), as mail servers do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_COMMENT = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Result:
    """One method's result, and the properties it names (`header.d`…)."""

    method: str
    result: str
    properties: dict[str, str]


def parse(header: str) -> tuple[str, list[Result]]:
    """The authserv-id of an Authentication-Results value, and its results."""
    text = header
    while (bare := _COMMENT.sub(" ", text)) != text:  # comments may nest
        text = bare
    served_by, _, rest = text.partition(";")
    words = served_by.split()
    results = []
    for part in rest.split(";"):
        tokens = part.split()
        if not tokens or "=" not in tokens[0]:
            continue  # "none": nothing was checked
        method, _, result = tokens[0].partition("=")
        properties = {}
        for token in tokens[1:]:
            name, equals, value = token.partition("=")
            if equals and "." in name:
                properties[name.lower()] = value.strip('"').lower()
        results.append(Result(method.split("/")[0].lower(), result.lower(), properties))
    return (words[0].lower() if words else ""), results


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
            if r.method == "dkim" and _under(r.properties.get("header.d", ""), domain):
                return True
            mailfrom = r.properties.get("smtp.mailfrom", "").rpartition("@")[2]
            if r.method == "spf" and _under(mailfrom, domain):
                return True
    return False
