"""Parsing of the times users give to --at, --since and --until."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from netstate.audit.times import ACCEPTED_FORMS, parse_time, shown_form, stored_form, to_utc
from netstate.errors import InvalidInput, InvalidTime

NOW = datetime(2026, 3, 2, 14, 5, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


class TestParseTime:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("now", NOW),
            (" NOW ", NOW),
            ("90s", NOW - timedelta(seconds=90)),
            ("15m", NOW - timedelta(minutes=15)),
            ("2h", NOW - timedelta(hours=2)),
            ("3d", NOW - timedelta(days=3)),
            ("1w", NOW - timedelta(weeks=1)),
            ("1h30m", NOW - timedelta(minutes=90)),
            ("2h ago", NOW - timedelta(hours=2)),
            ("0s", NOW),
            ("2026-03-02T14:05:00Z", NOW),
            ("2026-03-02T15:05:00+01:00", NOW),
            ("2026-03-02T14:05:00.250000+00:00", NOW + timedelta(milliseconds=250)),
        ],
    )
    def test_parse_time_accepts_form(self, text, expected):
        assert parse_time(text, NOW) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # Paris is UTC+1 in March before the change to summer time.
            ("2026-03-02T15:05:00", datetime(2026, 3, 2, 14, 5, tzinfo=UTC)),
            ("2026-03-02 15:05", datetime(2026, 3, 2, 14, 5, tzinfo=UTC)),
            ("2026-03-02", datetime(2026, 3, 1, 23, 0, tzinfo=UTC)),
            # UTC+2 in July.
            ("2026-07-01T12:00:00", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
        ],
    )
    def test_parse_time_reads_zoneless_time_as_local(self, text, expected):
        assert parse_time(text, NOW, local_zone=PARIS) == expected

    def test_parse_time_uses_system_zone_by_default(self):
        naive = datetime(2026, 3, 2, 15, 5)

        assert parse_time("2026-03-02T15:05:00", NOW) == naive.astimezone().astimezone(UTC)

    def test_parse_time_returns_utc(self):
        parsed = parse_time("2026-03-02T15:05:00+01:00", NOW)

        assert parsed.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        "text",
        ["", "yesterday", "2h later", "-2h", "2 h", "1.5h", "2y", "2026-13-01", "2026-03-02T25:00", "14:05:00x", "ago"],
    )
    def test_parse_time_rejects_malformed_text(self, text):
        with pytest.raises(InvalidTime, match="expected an ISO 8601 time") as caught:
            parse_time(text, NOW)

        assert repr(text) in str(caught.value)
        assert ACCEPTED_FORMS in str(caught.value)
        assert isinstance(caught.value, InvalidInput)

    def test_parse_time_rejects_duration_before_year_one(self):
        with pytest.raises(InvalidTime, match="before year 1"):
            parse_time("99999999w", NOW)


class TestTimeForms:
    def test_stored_form_matches_event_log_text(self):
        moment = datetime(2026, 3, 2, 15, 5, tzinfo=timezone(timedelta(hours=1)))

        assert stored_form(moment) == "2026-03-02T14:05:00.000000+00:00"

    def test_stored_form_orders_like_time(self):
        earlier = datetime(2026, 3, 2, 14, 5, 0, 999999, tzinfo=UTC)
        later = datetime(2026, 3, 2, 14, 5, 1, tzinfo=UTC)

        assert stored_form(earlier) < stored_form(later)

    def test_shown_form_is_utc_to_the_second(self):
        moment = datetime(2026, 3, 2, 15, 5, 7, 123, tzinfo=timezone(timedelta(hours=1)))

        assert shown_form(moment) == "2026-03-02T14:05:07Z"

    def test_to_utc_reads_naive_datetime_in_given_zone(self):
        assert to_utc(datetime(2026, 3, 2, 15, 5), PARIS) == NOW
