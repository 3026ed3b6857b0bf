"""Page sizes as every list call of the API reads them (AIP-158): 0 asks for the
call's default, a size over its maximum is taken as the maximum (the answer says
with `next_page_token` that more remain), and only a negative size is refused."""

from __future__ import annotations

from casemesh.platform.errors import InvalidArgument


def page_size_of(page_size: int, *, most: int = 100, default: int = 20) -> int:
    """The number of items to answer with for a requested `page_size`."""
    if page_size < 0:
        raise InvalidArgument.field(
            "page_size", f"must not be negative (0 means {default}; at most {most} are sent)"
        )
    return min(page_size or default, most)
