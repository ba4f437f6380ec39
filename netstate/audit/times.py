"""Points in time given by users, and the one text form the event log stores them in.

Accepted forms:
- ISO 8601, such as 2026-03-02T14:05:00, 2026-03-02 14:05, 2026-03-02T14:05:00+01:00 or a bare
  date. A time without a zone is local time.
- A duration ago: a number and a unit (s, m, h, d, w), several of them in a row, optionally
  followed by "ago": 90s, 15m, 2h, 3d, 1w, 1h30m, "2h ago".
- "now".

NOTE: a local time that a daylight-saving change makes ambiguous is read as its first
occurrence, and one that it skips is shifted by the length of the gap.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

from netstate.errors import InvalidTime

ACCEPTED_FORMS = (
    "an ISO 8601 time such as 2026-03-02T14:05:00 (local time) or 2026-03-02T14:05:00+01:00, "
    "a duration ago such as 90s, 15m, 2h, 3d or 1w, or 'now'"
)

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"((?:\d+[smhdw])+)(?:\s+ago)?")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")


def parse_time(text: str, now: datetime, local_zone: tzinfo | None = None) -> datetime:
    """Parse a point in time given by a user and return it in UTC.

    Args:
        text: one of the forms in ACCEPTED_FORMS.
        now: the current time (aware), from which durations are counted back.
        local_zone: the zone of times given without one; None means the system's local zone.

    Raises:
        InvalidTime: the text is in none of the accepted forms, or out of range.
    """
    cleaned = text.strip().lower()
    if cleaned == "now":
        return now.astimezone(UTC)

    duration = _DURATION.fullmatch(cleaned)
    if duration is not None:
        seconds = sum(
            int(number) * _UNIT_SECONDS[unit]
            for number, unit in _DURATION_PART.findall(duration.group(1))
        )
        try:
            return (now - timedelta(seconds=seconds)).astimezone(UTC)
        except OverflowError:
            msg = f"invalid time {text!r}: {duration.group(1)} ago is before year 1"
            raise InvalidTime(msg) from None

    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidTime(f"invalid time {text!r}; expected {ACCEPTED_FORMS}") from None
    return to_utc(parsed, local_zone)


def to_utc(value: datetime, local_zone: tzinfo | None = None) -> datetime:
    """Return `value` in UTC; a naive value is read as local time (`local_zone` or the system's)."""
    if value.tzinfo is None:
        try:
            value = value.replace(tzinfo=local_zone) if local_zone else value.astimezone()
        except (OverflowError, OSError, ValueError) as err:
            raise InvalidTime(f"invalid time {value.isoformat()!r}: {err}") from None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidTime(f"invalid time {value.isoformat()!r}: out of range in UTC") from None


def stored_form(moment: datetime) -> str:
    """Return `moment` as the events table stores times: UTC ISO 8601 with microseconds.

    Text comparison of two values of this form is time comparison, which is what lets the
    views filter on times with their indexes.
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def shown_form(moment: datetime) -> str:
    """Return `moment` in UTC to the second, as tables print it: 2026-03-02T14:05:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
