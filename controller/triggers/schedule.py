"""The time logic of `schedule` triggers: which instants a cron expression names, and which to fire.

Pure functions with the clock passed in (`due(..., now=...)`); the loop that fires runs, the
exactly-once table and the API are elsewhere.

Rules (docs/workflow-format.md, `schedule` trigger):

* `cron` is five fields (minute hour day-of-month month day-of-week) or one of @hourly, @daily,
  @midnight, @weekly, @monthly, @yearly, @annually (any case, no surrounding spaces). Seconds
  and year fields, and croniter's random/hashed values (`R`, `H`), are refused: a schedule
  names the same instants on every controller and after every restart. An expression that can never match (`0 0 30 2 *`)
  is refused when parsed, not discovered by a search that finds nothing.
* Day-of-month and day-of-week: when both are restricted (neither is `*` nor `?`), a day matches
  if EITHER matches (`0 0 13 * 5`: every 13th and every Friday), as croniter's `day_or=True`.
  Note that `*/2` counts as restricted (croniter, unlike Vixie cron's "starts with *" rule).
* Matches are computed in the LOCAL wall-clock time of `timezone` (IANA, default UTC), then
  mapped to instants, returned as aware UTC datetimes:
  - a wall-clock time that does not exist (spring-forward gap: 02:30 in Europe/Berlin on
    2026-03-29) fires once, at the first instant after the gap (03:00 local, 01:00 UTC); several
    gap times, and a real match at the end of the gap, are the same instant and fire once;
  - a wall-clock time that happens twice (fall-back: 02:30 in Europe/Berlin on 2026-10-25) fires
    once, at its first occurrence (fold=0). So `0 * * * *` in Berlin fires 23 times on
    2026-03-29 and 24 times on 2026-10-25 (nothing at 01:00 UTC, the second 02:00 local).

Catch-up (`due`), with `last` the newest instant already accounted for:

* `last is None` (a new schedule, never evaluated): nothing fires, whatever the past holds; the
  caller stores `now` as `last`, and only ticks after it can fire.
* `none`: only the newest tick in (last, now], and only if it is recent: `now - tick < grace`
  (default 60 s). A tick the controller slept through is skipped. The poll interval of the
  caller must be well below `grace`, or a `none` schedule may skip ticks while running.
* `latest` (default): the newest tick in (last, now], once, however many were missed.
* `all`: every tick in (last, now], oldest first, but at most `cap` (default 100): the newest
  `cap` of them; older ones are dropped (and a warning is logged).

After firing what `due` returns, the caller stores `now` as the new `last` (storing the newest
fired tick instead is equivalent): every tick in (last, now] has then been fired or dropped on
purpose. The work done by `due` does not grow with the length of an outage.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any

import structlog
from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from controller.workflow.diagnostics import suggest

log = structlog.get_logger("clarity.schedule")

UTC = timezone.utc
CATCHUP = ("none", "latest", "all")
GRACE = timedelta(seconds=60)
ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
FIELDS = "minute hour day-of-month month day-of-week"
_FIELD = re.compile(r"\S+", re.ASCII)  # croniter's own field split (no Unicode spaces)
_RANDOM = re.compile(r"[hr](\(\d+-\d+\))?(/\d+)?", re.ASCII | re.IGNORECASE)  # croniter's H and R


class ScheduleError(ValueError):
    """A schedule trigger that cannot be used: bad cron, unknown time zone, bad catchup.

    `key` names the config key at fault ("cron", "timezone" or "catchup"), for a linter's position;
    `offset`, where in that value (the field of a cron expression) when known; `hint`, how to fix it.
    """

    def __init__(self, message: str, key: str = "cron", *, offset: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.offset = offset
        self.hint = hint


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    also: str = ""  # what else the field takes, for the hint


_FIELDS = (_Field("minute", 0, 59), _Field("hour", 0, 23), _Field("day of month", 1, 31),
           _Field("month", 1, 12, ", or jan-dec"), _Field("day of week", 0, 7, " (0 and 7 are Sunday), or sun-sat"))
_ORDINALS = ("first", "second", "third", "fourth", "fifth")
_NUMERIC = re.compile(r"(?:\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", re.ASCII)  # *, N, N-M, each with /STEP


@dataclass(frozen=True)
class Schedule:
    """A parsed, validated `schedule` trigger (constructing one validates it too)."""

    cron: str
    timezone: str = "UTC"
    catchup: str = "latest"  # none | latest | all
    _zone: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)
    _days: str = field(init=False, repr=False, compare=False)  # "0 0 dom month dow"
    _hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> Schedule:
        """From a trigger's config (`cron`, optional `timezone` and `catchup`; `type` ignored)."""
        cron = config.get("cron")
        if cron is None:
            raise ScheduleError("a schedule trigger needs 'cron'")
        tz = config.get("timezone")
        catchup = config.get("catchup")
        return cls(cron, "UTC" if tz is None else tz, "latest" if catchup is None else catchup)

    def __post_init__(self) -> None:
        if not isinstance(self.cron, str):
            raise ScheduleError(f"cron must be a string, not {type(self.cron).__name__}")
        if not isinstance(self.timezone, str):
            raise ScheduleError(f"timezone must be a string, not {type(self.timezone).__name__}", "timezone")
        if self.catchup not in CATCHUP:
            raise ScheduleError(f"catchup must be none, latest or all, not {self.catchup!r}", "catchup")
        fields = _fields(self.cron)
        _check_ranges(self.cron)
        try:
            (minutes, hours, *_), _ = croniter.expand(" ".join(fields))
        except CroniterError as exc:
            raise _field_error(self.cron, exc) from None
        set_ = object.__setattr__
        set_(self, "_zone", _zone(self.timezone))
        set_(self, "_days", "0 0 " + " ".join(fields[2:]))
        set_(self, "_minutes", tuple(range(60)) if minutes == ["*"] else tuple(sorted(set(minutes))))
        set_(self, "_hours", tuple(range(24)) if hours == ["*"] else tuple(sorted(set(hours))))
        try:  # croniter searches 50 years ahead: enough for 29 February and 5th weekdays
            croniter(self._days, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise ScheduleError(f"cron expression {self.cron!r} never matches: no such date "
                                "(day-of-month not in any of the months?)", offset=_offset(self.cron, 2),
                                hint="February has at most 29 days; April, June, September and November 30") from None

    # -- instants ---------------------------------------------------------------------------

    def ticks(self, after: datetime, until: datetime, limit: int | None = None) -> list[datetime]:
        """Every tick t with after < t <= until, oldest first (aware UTC), at most `limit` (the first)."""
        after, until = _aware(after, "after"), _aware(until, "until")
        out: list[datetime] = []
        if limit is not None and limit <= 0:
            return out
        for t in self._forward(after):
            if t > until:
                break
            out.append(t)
            if len(out) == limit:
                break
        return out

    def latest_ticks(self, after: datetime | None, until: datetime, limit: int = 1) -> list[datetime]:
        """The newest `limit` ticks t with after < t <= until (after None: no lower bound), oldest first.

        Walks back from `until`, so the cost depends on `limit`, not on how far back `after` is.
        """
        until = _aware(until, "until")
        after = None if after is None else _aware(after, "after")
        out: list[datetime] = []
        if limit <= 0:
            return out
        for t in self._backward(until):
            if after is not None and t <= after:
                break
            out.append(t)
            if len(out) == limit:
                break
        out.reverse()
        return out

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after `after` (aware UTC)."""
        for t in self._forward(_aware(after, "after")):
            return t
        raise ScheduleError(f"cron expression {self.cron!r} has no tick within 50 years after {after.isoformat()}")

    def _forward(self, after: datetime) -> Iterator[datetime]:
        """Ticks strictly after the instant `after`, ascending, each once."""
        # every wall time <= after's wall time maps to an instant <= after (the map is monotonic
        # and a wall time's first occurrence is not later than after); a wall time > after's can
        # still map to an instant <= after when `after` is the second occurrence of a repeated hour
        prev = after
        for wall in self._walls_after(_naive(after.astimezone(self._zone))):
            t = self._instant(wall)
            if t > prev:  # drops those, and gap times that collapse into one instant
                yield t
                prev = t

    def _backward(self, until: datetime) -> Iterator[datetime]:
        """Ticks at or before the instant `until`, descending, each once."""
        local = until.astimezone(self._zone)
        start = _naive(local)
        if local.fold:  # the second occurrence: first occurrences of later wall times are earlier
            offset0, offset1 = local.replace(fold=0).utcoffset(), local.utcoffset()
            assert offset0 is not None and offset1 is not None
            start += max(offset0 - offset1, timedelta(0))
        prev: datetime | None = None
        for wall in self._walls_until(start):
            t = self._instant(wall)
            if t <= until and (prev is None or t < prev):
                yield t
                prev = t

    def _walls_after(self, start: datetime) -> Iterator[datetime]:
        """Matching wall-clock (naive local) times strictly after `start`, ascending."""
        days = croniter(self._days, datetime.combine(start.date(), time()) - timedelta(minutes=1))
        hours, minutes = self._hours, self._minutes
        for day in _days(days, forward=True):
            first = day.date() == start.date()
            for hour in hours[bisect_left(hours, start.hour) if first else 0:]:
                same_hour = first and hour == start.hour
                for minute in minutes[bisect_right(minutes, start.minute) if same_hour else 0:]:
                    yield day.replace(hour=hour, minute=minute)

    def _walls_until(self, start: datetime) -> Iterator[datetime]:
        """Matching wall-clock (naive local) times at or before `start`, descending."""
        days = croniter(self._days, datetime.combine(start.date(), time()) + timedelta(minutes=1))
        hours, minutes = self._hours, self._minutes
        for day in _days(days, forward=False):
            first = day.date() == start.date()
            for hour in reversed(hours[:bisect_right(hours, start.hour) if first else None]):
                same_hour = first and hour == start.hour
                for minute in reversed(minutes[:bisect_right(minutes, start.minute) if same_hour else None]):
                    yield day.replace(hour=hour, minute=minute)

    def _instant(self, wall: datetime) -> datetime:
        """The instant a wall-clock time fires: its first occurrence, or the end of its gap."""
        instant = wall.replace(tzinfo=self._zone).astimezone(UTC)  # fold=0: the first occurrence
        if _naive(instant.astimezone(self._zone)) == wall:
            return instant
        return self._gap_end(wall)

    def _gap_end(self, wall: datetime) -> datetime:
        """The first instant whose wall-clock time is later than `wall`, a time inside a gap.

        The transition lies between `wall` read with the offset after it (fold=1) and with the
        offset before it (fold=0); tz transitions fall on whole seconds.
        """
        a = wall.replace(tzinfo=self._zone, fold=0).timestamp()
        b = wall.replace(tzinfo=self._zone, fold=1).timestamp()
        lo, hi = math.floor(min(a, b)), math.ceil(max(a, b))  # local(lo) < wall < local(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _naive(datetime.fromtimestamp(mid, self._zone)) > wall:
                hi = mid
            else:
                lo = mid
        return datetime.fromtimestamp(hi, UTC)


def due(schedule: Schedule, last: datetime | None, now: datetime, *,
        cap: int = 100, grace: timedelta = GRACE) -> list[datetime]:
    """The ticks to fire now, oldest first (aware UTC), by the schedule's catchup policy.

    `last`: the newest instant already accounted for (the last `now` given, or the newest tick
    fired); None for a schedule never evaluated, which fires nothing now: the caller stores `now`
    and ticks after it fire later. Then, among the ticks in (last, now]:
    none: the newest if `now - tick < grace`, else nothing; latest: the newest;
    all: all of them, but at most `cap`, the newest `cap` (older ones are dropped and logged).
    """
    now = _aware(now, "now")
    if last is None:
        return []
    last = _aware(last, "last")
    if schedule.catchup == "none":
        newest = schedule.latest_ticks(last, now, 1)
        return newest if newest and now - newest[0] < grace else []
    if schedule.catchup == "latest":
        return schedule.latest_ticks(last, now, 1)
    if cap < 1:
        raise ValueError(f"cap must be at least 1, not {cap}")
    missed = schedule.latest_ticks(last, now, cap + 1)
    if len(missed) > cap:
        log.warning("schedule: more missed ticks than the catch-up cap; firing the newest only",
                    cron=schedule.cron, timezone=schedule.timezone, cap=cap,
                    since=last.isoformat(), dropped_up_to=missed[0].isoformat())
        return missed[1:]
    return missed


def _fields(cron: str) -> list[str]:
    alias = cron.lower()  # exactly, as croniter (and the linter): " @daily" is not an alias
    if alias.startswith("@"):
        if alias not in ALIASES:
            raise ScheduleError(f"unknown cron alias {cron!r}: use {', '.join(ALIASES)} or five fields ({FIELDS})")
        return ALIASES[alias].split()
    found = list(_FIELD.finditer(cron))
    fields = [m.group() for m in found]
    if len(fields) != 5:
        extra = len(fields) > 5
        hint = (f"a sixth field is seconds or a year, which a schedule does not take: write the five fields "
                f"{FIELDS}" if extra else
                f"write all five fields, {FIELDS}: '0 * * * *' is every hour, '30 2 * * 1-5' 02:30 on weekdays")
        raise ScheduleError(f"cron expression {cron!r} has {len(fields)} field{'s' * (len(fields) != 1)}; "
                            f"expected five ({FIELDS}): no seconds or years",
                            offset=found[5].start() if extra else None, hint=hint)
    for _spec, part, at in _parts(cron):
        if _RANDOM.fullmatch(part):
            raise ScheduleError(f"cron expression {cron!r}: random or hashed values ({part!r}) are not "
                                "supported; write the minute, hour, ... explicitly", offset=at,
                                hint="a schedule names the same instants on every controller: e.g. '17 * * * *'")
    return fields


def _parts(cron: str) -> Iterator[tuple[_Field, str, int]]:
    """(field, a comma-separated part of it, the part's offset in `cron`) of the five cron fields."""
    for spec, match in zip(_FIELDS, _FIELD.finditer(cron)):
        at = match.start()
        for part in match.group().split(","):
            yield spec, part, at
            at += len(part) + 1


def _offset(cron: str, index: int) -> int | None:
    """Where field `index` of `cron` starts (None for an alias)."""
    found = list(_FIELD.finditer(cron))
    return found[index].start() if len(found) == 5 else None


def _field_hint(spec: _Field) -> str:
    index = _FIELDS.index(spec)
    return (f"the {_ORDINALS[index]} field is the {spec.name}: {spec.low}-{spec.high}{spec.also}, or a list "
            f"(1,15), range (1-5) or step (*/15) of those; the five fields: {FIELDS}")


def _check_ranges(cron: str) -> None:
    """Each number of a field within its range, and steps of at least 1: named, with its place
    (croniter only says "out of range" of the whole expression)."""
    for spec, part, at in _parts(cron):
        match = _NUMERIC.fullmatch(part)
        if match is None:
            continue  # names, L, #: croniter judges them (_field_error)
        for group in (1, 2):
            if match.group(group) is not None and not spec.low <= int(match.group(group)) <= spec.high:
                raise ScheduleError(f"invalid cron expression {cron!r}: {spec.name} {int(match.group(group))} is "
                                    f"out of range ({spec.low}-{spec.high})", offset=at + match.start(group),
                                    hint=_field_hint(spec))
        if match.group(3) is not None and int(match.group(3)) == 0:
            raise ScheduleError(f"invalid cron expression {cron!r}: a step of 0 in the {spec.name} field",
                                offset=at + match.start(3), hint="a step is at least 1: */15 is every 15th")


def _field_error(cron: str, exc: CroniterError) -> ScheduleError:
    """croniter's error, said of the field it is about: the first that croniter rejects alone."""
    for spec, match in zip(_FIELDS, _FIELD.finditer(cron)):
        alone = ["*"] * 5
        alone[_FIELDS.index(spec)] = match.group()
        try:
            croniter.expand(" ".join(alone))
        except CroniterError:
            return ScheduleError(f"invalid cron expression {cron!r}: {spec.name} field {match.group()!r} is not "
                                 "valid", offset=match.start(), hint=_field_hint(spec))
    return ScheduleError(f"invalid cron expression {cron!r}: {_message(exc)}")


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory
        raise ScheduleError(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin",
                            "timezone", hint=suggest(name, zoneinfo.available_timezones(), cutoff=0.8)) from None


def _days(days: croniter, *, forward: bool) -> Iterator[datetime]:
    """The matching days (midnight, naive) of a "0 0 dom month dow" croniter, until none is left."""
    while True:
        try:
            yield days.get_next(datetime) if forward else days.get_prev(datetime)
        except (CroniterBadDateError, OverflowError, ValueError):  # none within 50 years, or year 1/9999
            return


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, not {value!r}")
    return value.astimezone(UTC)  # (== between zones is always False for a time in a fold)


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None, fold=0)


def _message(exc: Exception) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


__all__ = ["ALIASES", "CATCHUP", "GRACE", "Schedule", "ScheduleError", "due"]
