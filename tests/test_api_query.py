"""The API's listing language: q expressions, search, sort, select, paging and time frames."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.api.errors import ApiError
from wazuhcluster.api.query import (
    Listing,
    apply_listing,
    parse_q,
    parse_sort,
    parse_timeframe,
)

FIELDS = ("id", "name", "status", "group", "os.platform", "count")
ITEMS: list[dict[str, Any]] = [
    {
        "id": "001",
        "name": "web1",
        "status": "active",
        "group": ["default", "web"],
        "os": {"platform": "ubuntu"},
        "count": 5,
    },
    {
        "id": "002",
        "name": "web2",
        "status": "disconnected",
        "group": ["web"],
        "os": {"platform": "windows"},
        "count": 12,
    },
    {"id": "003", "name": "DB1", "status": "active", "group": ["default"], "count": 7},
]


def matching(q: str) -> list[str]:
    """Ids of ITEMS matching ``q``."""
    expression = parse_q(q, FIELDS)
    return [item["id"] for item in ITEMS if expression.matches(item)]


class QueryTests(SynchronousTestCase):
    """``q`` parsing and evaluation."""

    def test_operators(self) -> None:
        """=, !=, <, >, ~ compare as Wazuh does (numbers numerically, ~ case-insensitive)."""
        self.assertEqual(matching("status=active"), ["001", "003"])
        self.assertEqual(matching("status!=active"), ["002"])
        self.assertEqual(matching("count>6"), ["002", "003"])
        self.assertEqual(matching("count<6"), ["001"])
        self.assertEqual(matching("name~db"), ["003"])
        self.assertEqual(matching("os.platform=windows"), ["002"])

    def test_values_ignore_case(self) -> None:
        """=, != and text < > compare without case, as Wazuh's (COLLATE NOCASE)."""
        self.assertEqual(matching("status=ACTIVE"), ["001", "003"])
        self.assertEqual(matching("name!=WEB1"), ["002", "003"])
        self.assertEqual(matching("group=Web"), ["001", "002"])
        self.assertEqual(matching("name<Web2"), ["001", "003"])

    def test_lists_match_any_member(self) -> None:
        """A list field matches when any member does; != when none does."""
        self.assertEqual(matching("group=web"), ["001", "002"])
        self.assertEqual(matching("group!=web"), ["003"])

    def test_null(self) -> None:
        """The value null matches a missing field."""
        self.assertEqual(matching("os.platform=null"), ["003"])

    def test_and_binds_tighter_than_or(self) -> None:
        """``a,b;c`` is a or (b and c); parentheses regroup."""
        self.assertEqual(matching("name=web2,status=active;group=web"), ["001", "002"])
        self.assertEqual(matching("(name=web2,status=active);group=web"), ["001", "002"])
        self.assertEqual(matching("(name=web2,status=active);group=default"), ["001", "003"])
        self.assertEqual(matching("((id=001))"), ["001"])

    def test_errors_carry_wazuh_codes(self) -> None:
        """Malformed expressions, unknown fields and bad operators raise 1407/1408/1409."""
        cases = {
            "name": 1407,
            "name=": 1407,
            "name=a;": 1407,
            "(name=a": 1407,
            "name=a)": 1407,
            ";name=a": 1407,
            "colour=red": 1408,
            "name==a": 1409,
            "name<>a": 1409,
            "x" * 3000: 1407,
            ";".join(["id=1"] * 100): 1407,
        }
        for text, code in cases.items():
            with self.assertRaises(ApiError, msg=text[:40]) as raised:
                parse_q(text, FIELDS)
            self.assertEqual(raised.exception.code, code, text[:40])
            self.assertEqual(raised.exception.status, 400)

    def test_deep_nesting_within_the_length_limit(self) -> None:
        """Hundreds of nested parentheses parse without recursion (and still match)."""
        self.assertEqual(matching("(" * 500 + "id=001" + ")" * 500), ["001"])
        self.assertEqual(matching("(" * 900 + "id=001,id=002" + ")" * 900), ["001", "002"])
        with self.assertRaises(ApiError) as raised:
            parse_q("(" * 1000 + "id=001" + ")" * 999, FIELDS)
        self.assertEqual(raised.exception.code, 1407)

    @given(st.text(alphabet="()=!<>~;,abcid.0", max_size=40))
    def test_any_text_parses_or_fails_cleanly(self, text: str) -> None:
        """Arbitrary input either parses or raises ApiError, never anything else."""
        try:
            expression = parse_q(text, ("a", "b", "id", "c.d"))
        except ApiError as error:
            self.assertIn(error.code, (1407, 1408, 1409))
        else:
            expression.matches({"a": "x", "id": 1})


NOW = 1_760_000_000.0
SEEN: list[dict[str, Any]] = [
    {"id": "001", "lastKeepAlive": "2025-10-09T07:53:20+00:00"},  # NOW - 1h
    {"id": "002", "lastKeepAlive": "2025-10-07T08:53:20+00:00"},  # NOW - 2d
    {"id": "003"},
]


def seen(q: str) -> list[str]:
    """Ids of SEEN matching ``q`` with lastKeepAlive a date field, at NOW."""
    expression = parse_q(q, ("id", "lastKeepAlive"), ("lastKeepAlive",), NOW)
    return [item["id"] for item in SEEN if expression.matches(item)]


class DateQueryTests(SynchronousTestCase):
    """Date fields in ``q``: relative time frames and absolute dates, as Wazuh compares them."""

    def test_relative_times_are_elapsed_time(self) -> None:
        """``<1d`` is seen less than a day ago, ``>1d`` more; a missing date never matches."""
        self.assertEqual(seen("lastKeepAlive<1d"), ["001"])
        self.assertEqual(seen("lastKeepAlive>1d"), ["002"])
        self.assertEqual(seen("lastKeepAlive<3d"), ["001", "002"])
        self.assertEqual(seen("lastKeepAlive>30m"), ["001", "002"])
        self.assertEqual(seen("lastKeepAlive<7200"), ["001"])

    def test_absolute_dates(self) -> None:
        """A date value compares moments (``YYYY-MM-DD`` with an optional time)."""
        self.assertEqual(seen("lastKeepAlive<2025-10-08"), ["002"])
        self.assertEqual(seen("lastKeepAlive>2025-10-08 00:00:00"), ["001"])
        self.assertEqual(seen("lastKeepAlive>2025-10-09T07:00:00Z"), ["001"])

    def test_bad_dates_are_1412(self) -> None:
        """A value that is neither a time frame nor a date is refused with 1412."""
        for q in ("lastKeepAlive<yesterday", "lastKeepAlive>2025-13-45"):
            with self.assertRaises(ApiError, msg=q) as raised:
                parse_q(q, ("lastKeepAlive",), ("lastKeepAlive",), NOW)
            self.assertEqual((raised.exception.code, raised.exception.status), (1412, 400), q)

    def test_listing_passes_dates_and_now(self) -> None:
        """apply_listing compares its date fields against the moment it is given."""
        page, total = apply_listing(
            SEEN,
            Listing(q="lastKeepAlive>1d"),
            ("id", "lastKeepAlive"),
            (),
            ("lastKeepAlive",),
            NOW,
        )
        self.assertEqual(([item["id"] for item in page], total), (["002"], 1))


class ListingTests(SynchronousTestCase):
    """apply_listing: search, sort, paging, select."""

    def ids(self, listing: Listing) -> list[str]:
        page, _ = apply_listing(ITEMS, listing, FIELDS, ("id",))
        return [item["id"] for item in page]

    def test_search_and_negation(self) -> None:
        """search looks in every value (nested too), case-insensitively; '-' negates."""
        self.assertEqual(self.ids(Listing(search="UBUNTU")), ["001"])
        self.assertEqual(self.ids(Listing(search="web", search_negated=True)), ["003"])

    def test_sort(self) -> None:
        """Sort by several fields, each ascending or descending; numbers sort numerically."""
        self.assertEqual(self.ids(Listing(sort=parse_sort("-count"))), ["002", "003", "001"])
        self.assertEqual(self.ids(Listing(sort=parse_sort("status,-name"))), ["001", "003", "002"])
        self.assertEqual(self.ids(Listing(sort=parse_sort("+name"))), ["003", "001", "002"])

    def test_paging_and_total(self) -> None:
        """offset and limit cut the page; the total counts every match."""
        page, total = apply_listing(ITEMS, Listing(offset=1, limit=1), FIELDS)
        self.assertEqual(([item["id"] for item in page], total), (["002"], 3))

    def test_select_keeps_identity_and_nesting(self) -> None:
        """select keeps the id and the dotted fields, nested as in the item."""
        page, _ = apply_listing(ITEMS[:2], Listing(select=("os.platform",)), FIELDS, ("id",))
        self.assertEqual(
            page,
            [
                {"id": "001", "os": {"platform": "ubuntu"}},
                {"id": "002", "os": {"platform": "windows"}},
            ],
        )

    def test_distinct_rows(self) -> None:
        """distinct keeps each selected row once, without the identity, and counts them."""
        listing = Listing(select=("status",), distinct=True)
        page, total = apply_listing(ITEMS, listing, FIELDS, ("id",))
        self.assertEqual((page, total), ([{"status": "active"}, {"status": "disconnected"}], 2))
        page, total = apply_listing(ITEMS, Listing(distinct=True, limit=1, offset=2), FIELDS)
        self.assertEqual(([item["id"] for item in page], total), (["003"], 3))

    def test_order_on_list_fields_is_1409(self) -> None:
        """< and > on a list field (groups) are refused with 1409; = and ~ are fine."""
        for q in ("group<web", "name=x,group>a"):
            with self.assertRaises(ApiError, msg=q) as raised:
                parse_q(q, FIELDS, lists=("group",))
            self.assertEqual(raised.exception.code, 1409, q)
        self.assertEqual(parse_q("group~we", FIELDS, lists=("group",)).matches(ITEMS[0]), True)

    def test_unknown_sort_and_select_fields(self) -> None:
        """Unknown sort fields raise 1403, unknown select fields 1724."""
        with self.assertRaises(ApiError) as raised:
            apply_listing(ITEMS, Listing(sort=(("colour", False),)), FIELDS)
        self.assertEqual(raised.exception.code, 1403)
        with self.assertRaises(ApiError) as raised:
            apply_listing(ITEMS, Listing(select=("colour",)), FIELDS)
        self.assertEqual(raised.exception.code, 1724)
        with self.assertRaises(ApiError):
            parse_sort("name,,id")


class TimeframeTests(SynchronousTestCase):
    """parse_timeframe."""

    def test_units(self) -> None:
        """Plain seconds and s/m/h/d units, also combined."""
        self.assertEqual(parse_timeframe("30"), 30)
        self.assertEqual(parse_timeframe("0s"), 0)
        self.assertEqual(parse_timeframe("5m"), 300)
        self.assertEqual(parse_timeframe("2h"), 7200)
        self.assertEqual(parse_timeframe("7d"), 604800)
        self.assertEqual(parse_timeframe("1d12h"), 129600)

    def test_bad_frames(self) -> None:
        """Anything else raises 1411."""
        for text in ("", "7w", "d", "-5", "1.5h", "9" * 40):
            with self.assertRaises(ApiError) as raised:
                parse_timeframe(text)
            self.assertEqual(raised.exception.code, 1411, text)
