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

# The time zones of the EU's territory, its outermost regions included
# (TFEU Art. 349, 355(1)), one for each way of keeping time: the DSA's months
# end at 24:00 of the matching day for each recipient wherever they are, and
# the platform does not know where that is.
EU_ZONES = (
    "America/Martinique",  # Guadeloupe, Martinique, Saint-Martin: UTC−4
    "America/Cayenne",  # French Guiana: UTC−3
    "Atlantic/Azores",  # UTC−1, summer UTC+0
    "Europe/Lisbon",  # also Ireland, Madeira, the Canary Islands: UTC+0, summer +1
    "Europe/Brussels",  # Central European Time: UTC+1, summer +2
    "Europe/Helsinki",  # Eastern European Time: UTC+2, summer +3
    "Indian/Mayotte",  # UTC+3
    "Indian/Reunion",  # UTC+4
)


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
