"""How the help centre reads a query: full-width letters and digits, as a
Chinese keyboard types them, are the words they stand for."""

from __future__ import annotations

import pytest

from casemesh_helpcenter.search import query_terms, tokens


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("ｌｏｇｉｎ　ｆａｉｌｅｄ", "login failed"),
        ("ＰＡＳＳＷＯＲＤ", "password"),
        ("密码ｒｅｓｅｔ", "密码reset"),
        ("验证码收不到ＳＭＳ", "验证码收不到SMS"),
        ("错误码１０２", "错误码102"),
    ],
)
def test_full_width_text_is_read_as_what_it_stands_for(typed: str, meant: str) -> None:
    assert tokens(typed) == tokens(meant) != []
    assert query_terms(typed) == query_terms(meant)
