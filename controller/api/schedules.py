"""`/api/v1/schedules` and `/api/v1/backfills`: the schedules the workflow files declare, with
their next tick, and backfills of a schedule over a past window (start, list, pause, resume,
cancel). The schedule loop (`controller.schedules`) does the firing."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from starlette.responses import Response
from starlette.routing import BaseRoute

from controller.api.body import Fields
from controller.api.errors import ApiError, BadRequest
from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.schedules import refresh_triggers
from controller.services import Services
from controller.starter import StartError
from controller.store.backfills import BadMove, Backfills
from controller.store.triggers import Triggers
from controller.triggers.schedule import Schedule, ScheduleError

MAX_TICKS = 10_000  # ticks in one backfill


class Conflicting(ApiError):
    status, code = 409, "conflict"


def _instant(f: Fields, name: str) -> float:
    text = f.text(name)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise f.invalid(name, f"expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)  # a time without a zone is UTC
    return parsed.timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def routes(services: Services) -> list[BaseRoute]:
    triggers = Triggers(services.store.engine)
    backfills = Backfills(services.store.engine)

    def list_schedules(call: Call) -> Response:
        """Every schedule the repositories' default branches declare, with its next tick."""
        now = datetime.now(timezone.utc)
        names = {r.id: r.name for r in services.repos.list()}
        out = []
        for trig in triggers.list("schedule"):
            try:
                nxt: str | None = Schedule.parse(trig.config).next_tick(now).isoformat().replace("+00:00", "Z")
                problem = None
            except ScheduleError as exc:
                nxt, problem = None, str(exc)
            out.append({**trig.public(), "repo": names.get(trig.repo_id), "next_tick": nxt, "error": problem,
                        "last_tick": None if trig.last_tick is None else _iso(trig.last_tick)})
        return reply({"schedules": out})

    def start_backfill(call: Call) -> Response:
        """Fire a schedule's ticks over a past window."""
        f = call.fields()
        repo = services.repos.get(f.text("repo"))
        workflow = f.text("workflow")
        start, end = _instant(f, "from"), _instant(f, "to")
        index = f.integer("trigger", 0, low=0)
        f.done()
        if start >= end:
            raise BadRequest("'from' must be before 'to'", code="invalid_window")
        if end > time.time():
            raise BadRequest("'to' is in the future: a backfill covers ticks that have passed (the schedule fires "
                             "the others)", code="invalid_window")
        try:
            refresh_triggers(services, repo)
        except StartError as exc:
            raise Conflicting(f"cannot read the triggers of {repo.name}: {exc}") from None
        found = [t for t in triggers.list("schedule", repo.id) if t.workflow_file == workflow]
        if not found:
            raise LookupError(f"{repo.name} declares no schedule in {workflow} on its default branch")
        if index >= len(found):
            raise BadRequest(f"{workflow} has {len(found)} schedule trigger(s); 'trigger' is 0 to {len(found) - 1}")
        trigger = found[index]
        ticks = Schedule.parse(trigger.config).ticks(datetime.fromtimestamp(start - 1e-6, timezone.utc),
                                                     datetime.fromtimestamp(end, timezone.utc), limit=MAX_TICKS + 1)
        if not ticks:
            raise BadRequest(f"the schedule {trigger.config.get('cron')!r} has no tick from {_iso(start)} to {_iso(end)}",
                             code="invalid_window")
        if len(ticks) > MAX_TICKS:
            raise BadRequest(f"more than {MAX_TICKS} ticks in that window: backfill a shorter one", code="invalid_window")
        made = backfills.create(trigger_key=trigger.key, repo_id=repo.id, workflow_file=workflow,
                                start_at=start - 1e-6, end_at=end, created_by=call.by)
        return reply({**made.public(), "ticks": len(ticks)}, 201, headers={"Location": f"/api/v1/backfills/{made.id}"})

    def list_backfills(call: Call) -> Response:
        """Backfills, oldest first."""
        return reply({"backfills": [b.public() for b in backfills.list()]})

    def get_backfill(call: Call) -> Response:
        """One backfill: its state and how far it got."""
        return reply(backfills.get(call.param("id")).public())

    def mover(verb: str) -> Callable[[Call], Response]:
        def move(call: Call) -> Response:
            try:
                return reply(backfills.move(call.param("id"), verb).public())
            except BadMove as exc:
                raise Conflicting(str(exc)) from None
        move.__name__ = f"{verb}_backfill"
        move.__doc__ = f"{verb.capitalize()} a backfill."
        return move

    one = "/api/v1/backfills/{id:int}"
    return [
        ApiRoute("GET", "/api/v1/schedules", list_schedules, services,
                 Doc("List schedules", tag="schedules", responses={200: "{schedules: [...]}: each with next_tick"})),
        ApiRoute("POST", "/api/v1/backfills", start_backfill, services, Doc(
            "Start a backfill", tag="schedules", body={
                "type": "object", "required": ["repo", "workflow", "from", "to"], "additionalProperties": False,
                "properties": {
                    "repo": {"type": "string", "description": "owner/name"},
                    "workflow": {"type": "string", "description": "the workflow file, e.g. .clarity/nightly.yaml"},
                    "from": {"type": "string", "format": "date-time", "description": "first instant (ISO 8601; UTC "
                             "without a zone)"},
                    "to": {"type": "string", "format": "date-time", "description": "last instant, not in the future"},
                    "trigger": {"type": "integer", "minimum": 0, "description": "which schedule of the file (default "
                                "the first)"}}},
            responses={201: "The backfill, with the number of ticks it will fire", 400: "A bad window",
                       404: "No such repository or schedule", 409: "The repository cannot be read"})),
        ApiRoute("GET", "/api/v1/backfills", list_backfills, services,
                 Doc("List backfills", tag="schedules", responses={200: "{backfills: [...]}"})),
        ApiRoute("GET", one, get_backfill, services,
                 Doc("Show a backfill", tag="schedules", responses={200: "The backfill", 404: "No such backfill"})),
        *[ApiRoute("POST", f"{one}/{verb}", mover(verb), services,
                   Doc(f"{verb.capitalize()} a backfill", tag="schedules",
                       responses={200: "The backfill", 404: "No such backfill",
                                  409: "Not possible in its state (e.g. resume a canceled one)"}), reads_body=False)
          for verb in ("pause", "resume", "cancel")],
    ]
