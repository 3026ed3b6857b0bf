"""Whose law a decision falls under, from where it applies.

A decision on content applies in a territorial scope (ISO 3166 country
codes; none: everywhere). The redress it names, and the time limits of an
appeal of it, follow the legal system of that scope: the EU's (the DSA, its
out-of-court dispute settlement in Art. 21, six months to appeal) when every
country is a member state, mainland China's when the scope is China alone,
and wording for several systems otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

# The European Union's member states, where the DSA (and its out-of-court
# dispute settlement, Art. 21) applies. (Iceland, Liechtenstein and Norway
# are left to "any": whether the DSA applies there depends on its taking
# into the EEA Agreement.)
_EU_CODES = "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK"
EU = frozenset(_EU_CODES.split(" "))


def jurisdiction(scope: Iterable[str]) -> str:
    """Whose redress a decision applying in `scope` names: "eu" (every
    country an EU member state), "cn" (mainland China only), else "any" (no
    country named, or several systems)."""
    countries = set(scope)
    if countries and countries <= EU:
        return "eu"
    if countries == {"CN"}:
        return "cn"
    return "any"


def reaches_the_eu(scope: Iterable[str]) -> bool:
    """Whether a decision applying in `scope` applies in a member state (an
    empty scope, everywhere, does)."""
    countries = set(scope)
    return not countries or bool(countries & EU)
