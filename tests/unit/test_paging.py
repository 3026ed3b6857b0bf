"""Page sizes (AIP-158): 0 asks for the default, a size over the maximum is taken as
the maximum, and only a negative size is refused, naming `page_size`. The services
read sizes so (`page_size_of`)."""

from __future__ import annotations

import pytest

from casemesh.platform.errors import InvalidArgument
from casemesh.platform.paging import page_size_of


@pytest.mark.parametrize(
    ("asked", "answered"), [(0, 20), (1, 1), (100, 100), (101, 100), (2**31 - 1, 100)]
)
def test_a_service_takes_a_size_over_its_maximum_as_the_maximum(asked: int, answered: int) -> None:
    assert page_size_of(asked, most=100, default=20) == answered


def test_a_service_refuses_a_negative_size_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as refused:
        page_size_of(-1, most=500, default=50)
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("page_size", "must not be negative (0 means 50; at most 500 are sent)")
    ]
