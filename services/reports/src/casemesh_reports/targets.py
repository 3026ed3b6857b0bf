"""What a report names: the item's type and id, or a link to it on the
platform. A link is read for the id it carries and kept without its query
(which often identifies whoever shared it)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from casemesh.platform.errors import Violations
from casemesh.rules import tickets as rules

TARGET_TYPES = ("VIDEO", "COMMENT", "ACCOUNT", "LIVE_STREAM", "AD")
# Ids the platform gives its items (the DSA's `puid` alphabet).
PUID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Links to items: the last path segments that carry the id, per target type.
LINKS: dict[str, re.Pattern[str]] = {
    "VIDEO": re.compile(r"^/(?:@[^/]+/)?video/(?P<id>[A-Za-z0-9_-]+)/?$"),
    "COMMENT": re.compile(r"^/(?:@[^/]+/)?video/[A-Za-z0-9_-]+/comment/(?P<id>[A-Za-z0-9_-]+)/?$"),
    "ACCOUNT": re.compile(r"^/(?:@|user/)(?P<id>[A-Za-z0-9_-]+)/?$"),
    "LIVE_STREAM": re.compile(r"^/(?:@[^/]+/)?live/(?P<id>[A-Za-z0-9_-]+)/?$"),
    "AD": re.compile(r"^/ad/(?P<id>[A-Za-z0-9_-]+)/?$"),
}


def check_target(
    v: Violations, target: dict[str, str], link_hosts: tuple[str, ...]
) -> dict[str, str]:
    """The target as a report keeps it (type, id, link without its query);
    what is wrong is added to `v`, and the target is then returned as given."""
    kind, ident, url = target.get("type", ""), target.get("id", ""), target.get("url", "")
    if kind not in TARGET_TYPES:
        v.add("report.target.type", f"must be one of {', '.join(TARGET_TYPES)}")
        return target
    canonical = ""
    if url:
        linked, canonical = read_link(v, kind, url, link_hosts)
        if linked and ident and linked != ident:
            v.add(
                "report.target.url",
                f"links to {kind.lower()} {linked}, not to report.target.id {ident[:60]}",
            )
        ident = ident or linked
    if not ident:
        if not url:
            v.add("report.target.id", "give the id of what you report, or its link (url)")
        return target
    if not PUID.fullmatch(ident):
        v.add("report.target.id", "must be 1–128 letters, digits, '-' or '_'")
    return {"type": kind, "id": ident, "url": canonical}


def read_link(v: Violations, kind: str, url: str, link_hosts: tuple[str, ...]) -> tuple[str, str]:
    """The item id a link names, and the link without its query ("", "" when
    it is no link to a `kind` on one of `link_hosts`: said in `v`)."""
    field = "report.target.url"
    problems = Violations()
    rules.text(problems, field, url, limit=2000, single_line=True)
    if problems:
        v.add(field, "must be one line of at most 2000 characters, without control characters")
        return "", ""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        v.add(field, "is not a valid link")
        return "", ""
    if parts.scheme not in ("http", "https") or host not in link_hosts:
        v.add(field, f"must be a link to this platform ({', '.join(link_hosts)})")
        return "", ""
    found = LINKS[kind].match(parts.path)
    if found is None:
        v.add(field, f"is not a link to a {kind.lower().replace('_', ' ')}")
        return "", ""
    return found["id"], f"https://{host}{parts.path}"
