"""Schedule triggers: cron ticks in local wall-clock time across DST, and catch-up (`due`).

All expected instants are written out in UTC. Europe/Berlin: CET = UTC+1, CEST = UTC+2;
2026-03-29 02:00 CET -> 03:00 CEST at 01:00Z; 2026-10-25 03:00 CEST -> 02:00 CET at 01:00Z
(local 02:00-03:00 happens twice). America/New_York: EST = UTC-5, EDT = UTC-4;
2026-03-08 02:00 EST -> 03:00 EDT at 07:00Z; 2026-11-01 02:00 EDT -> 01:00 EST at 06:00Z
(local 01:00-02:00 happens twice).
"""

from __future__ import annotations

import time as clock
import zoneinfo
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import structlog

from controller.triggers.schedule import Schedule, ScheduleError, due

UTC = timezone.utc


def z(text: str) -> datetime:
    """'2026-03-29T01:00' -> an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def zs(*texts: str) -> list[datetime]:
    return [z(t) for t in texts]


# id, cron, timezone, after (exclusive), until (inclusive), expected ticks (UTC)
TICKS: list[tuple[str, str, str, str, str, list[str]]] = [
    # --- Europe/Berlin, spring forward 2026-03-29 (02:00-03:00 local does not exist)
    ("berlin hourly spring: 02:00 is 03:00, one tick", "0 * * * *", "Europe/Berlin",
     "2026-03-28T22:00", "2026-03-29T04:00",
     ["2026-03-28T23:00", "2026-03-29T00:00", "2026-03-29T01:00", "2026-03-29T02:00",
      "2026-03-29T03:00", "2026-03-29T04:00"]),
    ("berlin daily 02:30 spring: the gap fires at 03:00 CEST", "30 2 * * *", "Europe/Berlin",
     "2026-03-27T12:00", "2026-03-30T12:00",
     ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"]),
    ("berlin */15 in the 2 o'clock hour, spring: four gap times, one tick", "*/15 2 * * *", "Europe/Berlin",
     "2026-03-28T00:00", "2026-03-30T12:00",
     ["2026-03-28T01:00", "2026-03-28T01:15", "2026-03-28T01:30", "2026-03-28T01:45",
      "2026-03-29T01:00",
      "2026-03-30T00:00", "2026-03-30T00:15", "2026-03-30T00:30", "2026-03-30T00:45"]),
    ("berlin gap times and the real 03:00 are one tick", "*/30 2-3 * * *", "Europe/Berlin",
     "2026-03-28T23:00", "2026-03-29T12:00",
     ["2026-03-29T01:00", "2026-03-29T01:30"]),
    # --- Europe/Berlin, fall back 2026-10-25 (02:00-03:00 local happens twice: first one fires)
    ("berlin hourly fall: the second 02:00 (01:00Z) does not fire", "0 * * * *", "Europe/Berlin",
     "2026-10-24T22:00", "2026-10-25T04:00",
     ["2026-10-24T23:00", "2026-10-25T00:00", "2026-10-25T02:00", "2026-10-25T03:00",
      "2026-10-25T04:00"]),
    ("berlin daily 02:30 fall: the first (CEST) 02:30", "30 2 * * *", "Europe/Berlin",
     "2026-10-23T12:00", "2026-10-26T12:00",
     ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]),
    ("berlin */15 in the 2 o'clock hour, fall: the first hour only", "*/15 2 * * *", "Europe/Berlin",
     "2026-10-24T00:00", "2026-10-26T12:00",
     ["2026-10-24T00:15", "2026-10-24T00:30", "2026-10-24T00:45",
      "2026-10-25T00:00", "2026-10-25T00:15", "2026-10-25T00:30", "2026-10-25T00:45",
      "2026-10-26T01:00", "2026-10-26T01:15", "2026-10-26T01:30", "2026-10-26T01:45"]),
    # --- America/New_York, spring forward 2026-03-08 (02:00-03:00 local does not exist)
    ("new york hourly spring", "0 * * * *", "America/New_York",
     "2026-03-08T04:00", "2026-03-08T09:00",
     ["2026-03-08T05:00", "2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00",
      "2026-03-08T09:00"]),
    ("new york daily 02:30 spring", "30 2 * * *", "America/New_York",
     "2026-03-07T00:00", "2026-03-09T12:00",
     ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"]),
    ("new york */15 in the 2 o'clock hour, spring", "*/15 2 * * *", "America/New_York",
     "2026-03-07T00:00", "2026-03-09T12:00",
     ["2026-03-07T07:00", "2026-03-07T07:15", "2026-03-07T07:30", "2026-03-07T07:45",
      "2026-03-08T07:00",
      "2026-03-09T06:00", "2026-03-09T06:15", "2026-03-09T06:30", "2026-03-09T06:45"]),
    # --- America/New_York, fall back 2026-11-01 (01:00-02:00 local happens twice)
    ("new york hourly fall: the second 01:00 (06:00Z) does not fire", "0 * * * *", "America/New_York",
     "2026-11-01T03:00", "2026-11-01T08:00",
     ["2026-11-01T04:00", "2026-11-01T05:00", "2026-11-01T07:00", "2026-11-01T08:00"]),
    ("new york daily 02:30 fall: 02:30 is not repeated there", "30 2 * * *", "America/New_York",
     "2026-10-31T00:00", "2026-11-02T12:00",
     ["2026-10-31T06:30", "2026-11-01T07:30", "2026-11-02T07:30"]),
    ("new york daily 01:30 fall: the first (EDT) 01:30", "30 1 * * *", "America/New_York",
     "2026-10-31T00:00", "2026-11-02T12:00",
     ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"]),
    ("new york */15 in the 2 o'clock hour, fall", "*/15 2 * * *", "America/New_York",
     "2026-10-31T00:00", "2026-11-02T12:00",
     ["2026-10-31T06:00", "2026-10-31T06:15", "2026-10-31T06:30", "2026-10-31T06:45",
      "2026-11-01T07:00", "2026-11-01T07:15", "2026-11-01T07:30", "2026-11-01T07:45",
      "2026-11-02T07:00", "2026-11-02T07:15", "2026-11-02T07:30", "2026-11-02T07:45"]),
    ("new york */15 in the 1 o'clock hour, fall: the first hour only", "*/15 1 * * *", "America/New_York",
     "2026-11-01T00:00", "2026-11-01T12:00",
     ["2026-11-01T05:00", "2026-11-01T05:15", "2026-11-01T05:30", "2026-11-01T05:45"]),
    # --- half-hour DST (Lord Howe: 02:00 -> 02:30 on 2026-10-04, 02:00 -> 01:30 on 2026-04-05)
    ("lord howe 02:15 falls in a 30-minute gap", "15 2 * * *", "Australia/Lord_Howe",
     "2026-10-02T12:00", "2026-10-04T12:00",
     ["2026-10-02T15:45", "2026-10-03T15:30"]),
    # --- a whole day that does not exist (Samoa skipped 2011-12-30)
    ("apia noon on the skipped day fires at the end of the gap", "0 12 * * *", "Pacific/Apia",
     "2011-12-28T12:00", "2011-12-31T12:00",
     ["2011-12-28T22:00", "2011-12-29T22:00", "2011-12-30T10:00", "2011-12-30T22:00"]),
    # --- plain zones
    ("utc hourly", "0 * * * *", "UTC", "2026-03-29T00:00", "2026-03-29T03:00",
     ["2026-03-29T01:00", "2026-03-29T02:00", "2026-03-29T03:00"]),
    ("kolkata (+05:30, no DST)", "0 9 * * *", "Asia/Kolkata", "2026-03-28T00:00", "2026-03-30T00:00",
     ["2026-03-28T03:30", "2026-03-29T03:30"]),
    # --- day rules
    ("29 February: leap years only", "0 12 29 2 *", "UTC", "2027-01-01T00:00", "2033-01-01T00:00",
     ["2028-02-29T12:00", "2032-02-29T12:00"]),
    ("dom and dow both restricted: OR (the 13th, and Fridays)", "0 0 13 * 5", "UTC",
     "2026-04-01T00:00", "2026-04-30T23:59",
     ["2026-04-03T00:00", "2026-04-10T00:00", "2026-04-13T00:00", "2026-04-17T00:00",
      "2026-04-24T00:00"]),
    ("dom only", "0 0 13 * *", "UTC", "2026-04-01T00:00", "2026-04-30T23:59", ["2026-04-13T00:00"]),
    ("dow only", "0 0 * * fri", "UTC", "2026-04-01T00:00", "2026-04-30T23:59",
     ["2026-04-03T00:00", "2026-04-10T00:00", "2026-04-17T00:00", "2026-04-24T00:00"]),
    ("dom with ? for dow", "0 0 13 * ?", "UTC", "2026-04-01T00:00", "2026-04-30T23:59", ["2026-04-13T00:00"]),
    ("OR with an impossible dom keeps the dow side", "0 0 30 2 5", "UTC", "2026-02-01T00:00", "2026-02-28T23:59",
     ["2026-02-06T00:00", "2026-02-13T00:00", "2026-02-20T00:00", "2026-02-27T00:00"]),
    ("last day of the month (L)", "0 0 L * *", "UTC", "2028-01-15T00:00", "2028-04-15T00:00",
     ["2028-01-31T00:00", "2028-02-29T00:00", "2028-03-31T00:00"]),
    ("second Tuesday (2#2)", "0 6 * * 2#2", "Europe/Berlin", "2026-03-01T00:00", "2026-05-01T00:00",
     ["2026-03-10T05:00", "2026-04-14T04:00"]),
    # --- aliases (any case)
    ("@hourly", "@hourly", "UTC", "2026-01-01T00:00", "2026-01-01T02:30", ["2026-01-01T01:00", "2026-01-01T02:00"]),
    ("@HOURLY", "@HOURLY", "UTC", "2026-01-01T00:00", "2026-01-01T01:00", ["2026-01-01T01:00"]),
    ("@daily in Berlin", "@daily", "Europe/Berlin", "2026-03-28T00:00", "2026-03-30T00:00",
     ["2026-03-28T23:00", "2026-03-29T22:00"]),
    ("@midnight", "@midnight", "UTC", "2026-01-01T00:00", "2026-01-03T00:00", ["2026-01-02T00:00", "2026-01-03T00:00"]),
    ("@weekly: Sunday 00:00", "@weekly", "UTC", "2026-03-01T00:00", "2026-03-16T00:00",
     ["2026-03-08T00:00", "2026-03-15T00:00"]),
    ("@monthly", "@monthly", "UTC", "2026-01-15T00:00", "2026-03-15T00:00", ["2026-02-01T00:00", "2026-03-01T00:00"]),
    ("@yearly", "@yearly", "America/New_York", "2026-01-01T00:00", "2028-01-01T00:00",
     ["2026-01-01T05:00", "2027-01-01T05:00"]),
    ("@annually", "@annually", "UTC", "2026-01-01T00:00", "2028-01-01T00:00", ["2027-01-01T00:00", "2028-01-01T00:00"]),
]


@pytest.mark.parametrize(("cron", "tz", "after", "until", "expected"),
                         [t[1:] for t in TICKS], ids=[t[0] for t in TICKS])
def test_ticks(cron: str, tz: str, after: str, until: str, expected: list[str]) -> None:
    s = Schedule(cron, tz)
    got = s.ticks(z(after), z(until))
    assert got == zs(*expected)
    assert all(t.tzinfo is UTC for t in got)
    # the same ticks, walked backwards from `until`
    assert s.latest_ticks(z(after), z(until), len(expected) + 5) == got
    # and one at a time
    chained, t = [], z(after)
    while (t := s.next_tick(t)) <= z(until):
        chained.append(t)
    assert chained == got


@pytest.mark.parametrize(("tz", "day_starts", "day_ends", "count", "missing"), [
    # a local day, as UTC bounds: after (exclusive), until (inclusive)
    ("Europe/Berlin", "2026-03-28T22:59:59", "2026-03-29T21:59:59", 23, []),
    ("Europe/Berlin", "2026-10-24T21:59:59", "2026-10-25T22:59:59", 24, ["2026-10-25T01:00"]),
    ("America/New_York", "2026-03-08T04:59:59", "2026-03-09T03:59:59", 23, []),
    ("America/New_York", "2026-11-01T03:59:59", "2026-11-02T04:59:59", 24, ["2026-11-01T06:00"]),
    ("UTC", "2026-03-28T23:59:59", "2026-03-29T23:59:59", 24, []),
])
def test_hourly_over_a_dst_day(tz: str, day_starts: str, day_ends: str, count: int, missing: list[str]) -> None:
    got = Schedule("0 * * * *", tz).ticks(z(day_starts), z(day_ends))
    assert len(got) == count
    every_hour = [z(day_starts) + timedelta(seconds=1, hours=h) for h in range(count + len(missing))]
    assert sorted(set(every_hour) - set(got)) == zs(*missing)


def test_bounds_are_exclusive_then_inclusive_and_limit() -> None:
    s = Schedule("*/10 * * * *")
    assert s.ticks(z("2026-01-01T00:00"), z("2026-01-01T00:30")) == \
        zs("2026-01-01T00:10", "2026-01-01T00:20", "2026-01-01T00:30")
    assert s.ticks(z("2026-01-01T00:00"), z("2026-01-01T00:30"), limit=2) == \
        zs("2026-01-01T00:10", "2026-01-01T00:20")
    assert s.latest_ticks(z("2026-01-01T00:00"), z("2026-01-01T00:30"), 2) == \
        zs("2026-01-01T00:20", "2026-01-01T00:30")
    assert s.ticks(z("2026-01-01T00:00"), z("2026-01-01T00:30"), limit=0) == []
    assert s.ticks(z("2026-01-01T00:30"), z("2026-01-01T00:00")) == []  # until before after
    assert s.ticks(z("2026-01-01T00:05:30"), z("2026-01-01T00:20:00.5")) == \
        zs("2026-01-01T00:10", "2026-01-01T00:20")
    assert s.next_tick(z("2026-01-01T00:10")) == z("2026-01-01T00:20")
    assert s.next_tick(z("2026-01-01T00:09:59.999")) == z("2026-01-01T00:10")


def test_any_aware_input_zone_is_accepted_and_output_is_utc() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    s = Schedule("0 * * * *", "America/New_York")
    after = datetime(2026, 11, 1, 7, 30, tzinfo=berlin)  # 06:30Z
    assert s.next_tick(after) == z("2026-11-01T07:00")
    assert s.next_tick(after).tzinfo is UTC


def test_walking_from_inside_the_repeated_hour() -> None:
    s = Schedule("*/15 2 * * *", "Europe/Berlin")
    # 01:30Z is the second 02:30 (CET): the first-occurrence ticks 00:00-00:45Z are behind it
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
    assert second.astimezone(UTC) == z("2026-10-25T01:30")  # (== across zones is False in a fold)
    assert s.next_tick(second) == z("2026-10-26T01:00")
    assert s.latest_ticks(None, second, 2) == zs("2026-10-25T00:30", "2026-10-25T00:45")
    # from inside the first occurrence, the rest of it is still ahead
    assert s.next_tick(z("2026-10-25T00:20")) == z("2026-10-25T00:30")
    assert s.latest_ticks(None, z("2026-10-25T00:20"), 1) == zs("2026-10-25T00:15")


def test_29_february_from_a_non_leap_year() -> None:
    s = Schedule.parse({"type": "schedule", "cron": "0 12 29 2 *"})
    assert s.next_tick(z("2027-03-01T00:00")) == z("2028-02-29T12:00")
    assert s.next_tick(z("2028-02-29T12:00")) == z("2032-02-29T12:00")
    assert s.next_tick(z("2097-01-01T00:00")) == z("2104-02-29T12:00")  # 2100 is not a leap year
    assert s.latest_ticks(None, z("2031-12-31T00:00"), 1) == zs("2028-02-29T12:00")


# --- an independent oracle: minute by minute, a small cron matcher on the local wall clock ---


def _field(text: str, low: int, high: int) -> set[int] | None:
    """Numbers, ranges, steps and lists; None for `*` (unrestricted)."""
    if text == "*":
        return None
    out: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        first, _, last = span.partition("-")
        a, b = (low, high) if span == "*" else (int(first), int(last or first))
        out.update(range(a, b + 1, int(step or 1)))
    return out


def matches(cron: str, wall: datetime) -> bool:
    minute, hour, dom, month, dow = (_field(f, lo, hi) for f, (lo, hi) in
                                     zip(cron.split(), [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]))
    def ok(allowed: set[int] | None, value: int) -> bool:
        return allowed is None or value in allowed
    weekday = wall.isoweekday() % 7
    if dom is not None and dow is not None:  # both restricted: either
        day = wall.day in dom or weekday in dow
    else:
        day = ok(dom, wall.day) and ok(dow, weekday)
    return ok(minute, wall.minute) and ok(hour, wall.hour) and ok(month, wall.month) and day


def oracle(cron: str, tz: str, after: datetime, until: datetime) -> list[datetime]:
    """A tick fires at the first minute whose wall-clock time reaches a matching wall-clock time."""
    zone = zoneinfo.ZoneInfo(tz)
    fired = []
    high = after.astimezone(zone).replace(tzinfo=None)  # the latest wall-clock time seen so far
    x = after
    while x < until:
        x += timedelta(minutes=1)
        wall = x.astimezone(zone).replace(tzinfo=None)
        if wall > high:
            m = high + timedelta(minutes=1)
            while m <= wall:
                if matches(cron, m):
                    fired.append(x)
                    break
                m += timedelta(minutes=1)
            high = wall
    return fired


def test_the_oracle_itself() -> None:
    assert matches("15 2 13 * 0", datetime(2026, 3, 13, 2, 15))  # a Friday, the 13th
    assert matches("15 2 13 * 0", datetime(2026, 3, 15, 2, 15))  # a Sunday
    assert not matches("15 2 13 * 0", datetime(2026, 3, 14, 2, 15))
    assert not matches("15 2 13 * *", datetime(2026, 3, 15, 2, 15))
    assert oracle("30 2 * * *", "Europe/Berlin", z("2026-03-28T12:00"), z("2026-03-29T12:00")) == \
        zs("2026-03-29T01:00")


DST_WINDOWS = {  # a day and a half around each 2026 transition
    "Europe/Berlin": ["2026-03-28T12:00", "2026-10-24T12:00"],
    "America/New_York": ["2026-03-07T18:00", "2026-10-31T18:00"],
    "Australia/Lord_Howe": ["2026-04-04T00:00", "2026-10-03T00:00"],
    "Australia/Sydney": ["2026-04-04T00:00", "2026-10-03T00:00"],
}


@pytest.mark.parametrize("tz", list(DST_WINDOWS))
@pytest.mark.parametrize("cron", ["*/20 * * * *", "30 2 * * *", "0,45 1-3 * * *", "10-50/20 */2 4-28/8 3,4,10 0"])
def test_against_a_minute_by_minute_oracle(tz: str, cron: str) -> None:
    s = Schedule(cron, tz)
    for start in DST_WINDOWS[tz]:
        after = z(start)
        until = after + timedelta(hours=36)
        expected = oracle(cron, tz, after, until)
        assert s.ticks(after, until) == expected, (cron, tz, start)
        assert s.latest_ticks(after, until, len(expected) + 1) == expected, (cron, tz, start)


# --- speed ------------------------------------------------------------------------------------


def test_speed() -> None:
    every_minute = Schedule("* * * * *", "Europe/Berlin")
    start = clock.perf_counter()
    assert len(every_minute.ticks(z("2026-03-29T00:00"), z("2026-03-29T03:00"))) == 180
    assert clock.perf_counter() - start < 0.1
    hourly = Schedule("0 * * * *", "Europe/Berlin")
    start = clock.perf_counter()
    year = hourly.ticks(z("2026-01-01T00:00"), z("2027-01-01T00:00"))
    assert clock.perf_counter() - start < 1.0
    assert len(year) == 8760 - 1  # the repeated 02:00 of 25 October fires once
    assert year[0] == z("2026-01-01T01:00") and year[-1] == z("2027-01-01T00:00")


# --- due: catch-up policies, with an injected clock -----------------------------------------

OUTAGE_LAST = z("2026-06-01T09:00")  # the last tick fired before a 3-hour outage
QUARTERS = ["2026-06-01T09:15", "2026-06-01T09:30", "2026-06-01T09:45",
            "2026-06-01T10:00", "2026-06-01T10:15", "2026-06-01T10:30", "2026-06-01T10:45",
            "2026-06-01T11:00", "2026-06-01T11:15", "2026-06-01T11:30", "2026-06-01T11:45",
            "2026-06-01T12:00"]

# id, catchup, now, cap, expected
DUE: list[tuple[str, str, str, int, list[str]]] = [
    ("none: the current tick fires", "none", "2026-06-01T12:00:20", 100, ["2026-06-01T12:00"]),
    ("none: 59 s late still fires", "none", "2026-06-01T12:00:59", 100, ["2026-06-01T12:00"]),
    ("none: 60 s late does not", "none", "2026-06-01T12:01:00", 100, []),
    ("none: back between ticks, nothing", "none", "2026-06-01T12:07:00", 100, []),
    ("latest: the newest missed tick, once", "latest", "2026-06-01T12:07:00", 100, ["2026-06-01T12:00"]),
    ("latest: exactly on a tick", "latest", "2026-06-01T12:00:00", 100, ["2026-06-01T12:00"]),
    ("all: every missed tick, oldest first", "all", "2026-06-01T12:07:00", 100, QUARTERS),
    ("all: the newest `cap`", "all", "2026-06-01T12:07:00", 5, QUARTERS[-5:]),
    ("all: cap equal to the count", "all", "2026-06-01T12:07:00", 12, QUARTERS),
    ("all: cap 1", "all", "2026-06-01T12:07:00", 1, QUARTERS[-1:]),
]


@pytest.mark.parametrize(("catchup", "now", "cap", "expected"), [d[1:] for d in DUE], ids=[d[0] for d in DUE])
def test_due_after_a_three_hour_outage(catchup: str, now: str, cap: int, expected: list[str]) -> None:
    s = Schedule("*/15 * * * *", catchup=catchup)
    with structlog.testing.capture_logs() as logs:
        assert due(s, OUTAGE_LAST, z(now), cap=cap) == zs(*expected)
    assert bool(logs) == (catchup == "all" and cap < len(QUARTERS))
    if logs:
        assert logs[0]["log_level"] == "warning" and logs[0]["cap"] == cap


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_due_edges(catchup: str) -> None:
    s = Schedule("*/15 * * * *", catchup=catchup)
    now = z("2026-06-01T12:00:10")
    assert due(s, None, now) == []  # a new schedule fires nothing from the past
    assert due(s, z("2026-06-01T12:00"), now) == []  # already fired
    assert due(s, z("2026-06-01T12:05"), now) == []  # clock went back: nothing
    assert due(s, z("2026-06-01T11:59:59"), now) == [z("2026-06-01T12:00")]
    # a long outage costs no more than a short one
    start = clock.perf_counter()
    due(Schedule("* * * * *", catchup=catchup), z("2016-06-01T00:00"), now)
    assert clock.perf_counter() - start < 0.1


def test_due_grace_is_a_parameter() -> None:
    s = Schedule("0 * * * *", catchup="none")
    assert due(s, z("2026-06-01T11:00"), z("2026-06-01T12:04"), grace=timedelta(minutes=5)) == zs("2026-06-01T12:00")
    assert due(s, z("2026-06-01T11:00"), z("2026-06-01T12:05"), grace=timedelta(minutes=5)) == []


@pytest.mark.parametrize(("catchup", "fired"), [
    ("none", ["01:00", "05:00", "06:00"]),
    ("latest", ["01:00", "04:00", "05:00", "06:00"]),
    ("all", ["01:00", "02:00", "03:00", "04:00", "05:00", "06:00"]),
])
def test_due_in_a_polling_loop(catchup: str, fired: list[str]) -> None:
    """The caller's loop: poll every 30 s, store `now` as `last`; down from 01:10 to 04:20."""
    s = Schedule("0 * * * *", catchup=catchup)
    last: datetime | None = None
    got: list[tuple[datetime, datetime]] = []  # (tick, when fired)
    now = z("2026-06-01T00:30")
    while now <= z("2026-06-01T06:30"):
        if not z("2026-06-01T01:10") < now < z("2026-06-01T04:20"):
            got.extend((tick, now) for tick in due(s, last, now))
            last = now
        now += timedelta(seconds=30)
    assert [tick for tick, _ in got] == zs(*(f"2026-06-01T{hm}" for hm in fired))
    late = [(tick, when) for tick, when in got if when - tick >= timedelta(seconds=30)]
    assert all(when == z("2026-06-01T04:20") for _, when in late)  # only catch-up fires late


# --- parsing and errors ---------------------------------------------------------------------


def test_parse_defaults_and_values() -> None:
    assert Schedule.parse({"type": "schedule", "cron": "0 3 * * *"}) == Schedule("0 3 * * *", "UTC", "latest")
    s = Schedule.parse({"cron": "@daily", "timezone": "Europe/Berlin", "catchup": "all"})
    assert (s.cron, s.timezone, s.catchup) == ("@daily", "Europe/Berlin", "all")
    # the model fills defaults in; explicit nulls mean the defaults too
    assert Schedule.parse({"cron": "@daily", "timezone": None, "catchup": None}) == Schedule("@daily")
    assert hash(s) == hash(Schedule("@daily", "Europe/Berlin", "all"))


ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("invalid cron", {"cron": "61 * * * *"}, r"invalid cron expression '61 \* \* \* \*': .*out of range"),
    ("bad field", {"cron": "0 0 * foo *"}, r"invalid cron expression '0 0 \* foo \*'"),
    ("words", {"cron": "every day"}, r"'every day' has 2 fields; expected five \(minute hour day-of-month month"),
    ("6-field cron (seconds)", {"cron": "0 0 * * * *"}, r"has 6 fields; expected five .*no seconds or years"),
    ("7-field cron (years)", {"cron": "0 0 1 1 * * 2030"}, r"has 7 fields"),
    ("empty cron", {"cron": ""}, r"has 0 fields"),
    ("unknown alias", {"cron": "@reboot"}, r"unknown cron alias '@reboot': use @hourly, @daily, .*@annually"),
    ("alias with a space", {"cron": " @daily"}, r"' @daily' has 1 field; expected five"),
    ("impossible date", {"cron": "0 0 30 2 *"}, r"'0 0 30 2 \*' never matches"),
    ("impossible date, two months", {"cron": "0 0 31 4,6 *"}, r"never matches"),
    ("random minute", {"cron": "R * * * *"}, r"random or hashed values \('R'\) are not supported"),
    ("hashed minute", {"cron": "H(0-29) * * * *"}, r"random or hashed values"),
    ("unknown zone", {"cron": "@daily", "timezone": "Mars/Base"},
     r"unknown time zone 'Mars/Base': use an IANA name such as UTC or Europe/Berlin"),
    ("zone directory", {"cron": "@daily", "timezone": "Europe"}, r"unknown time zone 'Europe'"),
    ("zone path", {"cron": "@daily", "timezone": "../etc/passwd"}, r"unknown time zone"),
    ("zone case", {"cron": "@daily", "timezone": "utc"}, r"unknown time zone 'utc'"),
    ("catchup", {"cron": "@daily", "catchup": "sometimes"}, r"catchup must be none, latest or all, not 'sometimes'"),
    ("no cron", {"type": "schedule"}, r"a schedule trigger needs 'cron'"),
    ("cron not a string", {"cron": 5}, r"cron must be a string, not int"),
    ("timezone not a string", {"cron": "@daily", "timezone": 1}, r"timezone must be a string, not int"),
]


@pytest.mark.parametrize(("config", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_parse_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as info:
        Schedule.parse(config)
    assert isinstance(info.value, ValueError)
    assert info.value.key == next((k for k in ("timezone", "catchup") if k in config), "cron")
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def test_constructor_validates_too() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone"):
        Schedule("@daily", "Mars/Base")


def test_naive_datetimes_are_refused() -> None:
    s = Schedule("@hourly")
    with pytest.raises(ValueError, match="aware"):
        s.next_tick(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        due(s, z("2026-01-01T00:00"), datetime(2026, 1, 1, 3))
