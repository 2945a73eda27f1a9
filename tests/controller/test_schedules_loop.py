"""Schedules fire runs (`controller.schedules.ScheduleLoop`): the real store and starter, a real git
repository, and time driven by an injected clock (no sleeping for real hours).

The trigger is read from the default branch head; a new schedule starts from now; a tick fires
one run whose audit says which tick; after an outage the `catchup` policy decides; a schedule
removed from the file stops; two controllers on one database fire each tick once."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from controller.schedules import ScheduleLoop
from controller.services import Services
from controller.store.triggers import Triggers
from tests.api.conftest import _env, api, make_api  # noqa: F401 - fixtures
from tests.api.conftest import Api, git

HOURLY = """\
workflow:
  name: nightly
  triggers:
    - type: schedule
      cron: "{cron}"
      timezone: "{tz}"
      catchup: {catchup}
  tasks:
    - name: report
      image: busybox
      commands: ["echo tick"]
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, start: str) -> None:
        self.now = at(start)

    def __call__(self) -> float:
        return self.now

    def set(self, text: str) -> None:
        self.now = at(text)


def repo_with(tmp: Path, services: Services, text: str, name: str = "acme/app") -> Path:
    src = tmp / name.replace("/", "-")
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "nightly.yaml").write_text(text)
    (src / ".clarity" / "ci.yaml").write_text(  # a push-only workflow: declares nothing
        "workflow:\n  name: ci\n  tasks:\n    - {name: t, image: busybox, commands: [echo]}\n")
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "schedules")
    services.repos.add(name=name, url=str(src), forge="generic")
    return src


def runs(services: Services) -> list[dict[str, object]]:
    return [{"id": r.id, "workflow": r.workflow, "event": r.event, "trigger": r.trigger}
            for r in reversed(services.store.list_runs(limit=500))]


def loop(services: Services, clock: Clock) -> ScheduleLoop:
    return ScheduleLoop(services, clock=clock, refresh_s=3600)


def test_a_schedule_read_from_the_default_branch_fires_once_per_tick(api: Api, tmp_path: Path) -> None:
    services = api.services
    repo_with(tmp_path, services, HOURLY.format(cron="0 * * * *", tz="UTC", catchup="latest"))
    clock = Clock("2026-06-01T10:20:00")
    schedules = loop(services, clock)
    assert schedules.tick() == 0  # new: starts from now, nothing for the past
    [trigger] = Triggers(services.store.engine).list("schedule")
    assert trigger.workflow == "nightly" and trigger.ref == "refs/heads/main" and trigger.config["cron"] == "0 * * * *"
    clock.set("2026-06-01T10:59:59")
    assert schedules.tick() == 0
    clock.set("2026-06-01T11:00:00")
    assert schedules.tick() == 1
    assert schedules.tick() == 0  # the same tick again: nothing
    clock.set("2026-06-01T11:30:00")
    assert schedules.tick() == 0
    [run] = runs(services)
    assert run["workflow"] == "nightly" and run["event"] == "schedule"
    trigger_audit = run["trigger"]
    assert isinstance(trigger_audit, dict)
    assert trigger_audit["by"] == "schedule" and trigger_audit["tick"] == "2026-06-01T11:00:00Z"
    assert trigger_audit["cron"] == "0 * * * *" and trigger_audit["timezone"] == "UTC"


@pytest.mark.parametrize("catchup, expected", [
    ("none", []),
    ("latest", ["2026-06-01T13:00:00Z"]),
    ("all", ["2026-06-01T11:00:00Z", "2026-06-01T12:00:00Z", "2026-06-01T13:00:00Z"]),
])
def test_catchup_after_a_three_hour_outage(api: Api, tmp_path: Path, catchup: str, expected: list[str]) -> None:
    services = api.services
    repo_with(tmp_path, services, HOURLY.format(cron="0 * * * *", tz="UTC", catchup=catchup))
    clock = Clock("2026-06-01T10:30:00")
    schedules = loop(services, clock)
    schedules.tick()
    clock.set("2026-06-01T13:30:00")  # down from 10:30 to 13:30: ticks at 11, 12 and 13 were missed
    schedules.tick()
    assert [r["trigger"]["tick"] for r in runs(services)] == expected  # type: ignore[index]
    clock.set("2026-06-01T14:00:00")  # and then on time again
    schedules.tick()
    assert [r["trigger"]["tick"] for r in runs(services)][-1] == "2026-06-01T14:00:00Z"  # type: ignore[index]


def test_local_time_across_a_dst_change(api: Api, tmp_path: Path) -> None:
    """Daily at 02:30 in Berlin: on 2026-03-29 02:30 does not exist; it fires once, at 03:00 local."""
    services = api.services
    repo_with(tmp_path, services, HOURLY.format(cron="30 2 * * *", tz="Europe/Berlin", catchup="all"))
    clock = Clock("2026-03-27T12:00:00")
    schedules = loop(services, clock)
    schedules.tick()
    clock.set("2026-03-31T12:00:00")
    schedules.tick()
    assert [r["trigger"]["tick"] for r in runs(services)] == [  # type: ignore[index]
        "2026-03-28T01:30:00Z",  # 02:30 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST: the first instant after the gap
        "2026-03-30T00:30:00Z",  # 02:30 CEST
        "2026-03-31T00:30:00Z",
    ]


def test_a_schedule_removed_from_the_file_stops(api: Api, tmp_path: Path) -> None:
    services = api.services
    src = repo_with(tmp_path, services, HOURLY.format(cron="0 * * * *", tz="UTC", catchup="latest"))
    clock = Clock("2026-06-01T10:20:00")
    schedules = loop(services, clock)
    schedules.tick()
    (src / ".clarity" / "nightly.yaml").write_text(HOURLY.format(cron="0 * * * *", tz="UTC", catchup="latest")
                                                   .replace("    - type: schedule\n      cron: \"0 * * * *\"\n"
                                                            "      timezone: \"UTC\"\n      catchup: latest\n",
                                                            "    - type: manual\n"))
    git(src, "commit", "-q", "-am", "no more schedule")
    schedules.on_push(services.repos.get("acme/app"), "refs/heads/main")
    clock.set("2026-06-01T12:00:00")
    assert schedules.tick() == 0
    assert Triggers(services.store.engine).list("schedule") == []
    assert runs(services) == []


def test_a_file_on_another_branch_declares_nothing(api: Api, tmp_path: Path) -> None:
    services = api.services
    src = repo_with(tmp_path, services, HOURLY.format(cron="0 * * * *", tz="UTC", catchup="latest"))
    git(src, "checkout", "-q", "-b", "feature")
    (src / ".clarity" / "other.yaml").write_text(HOURLY.format(cron="*/5 * * * *", tz="UTC", catchup="latest")
                                                 .replace("name: nightly", "name: other"))
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "on a branch")
    git(src, "checkout", "-q", "main")
    schedules = loop(services, Clock("2026-06-01T10:20:00"))
    schedules.tick()
    assert [t.workflow for t in Triggers(services.store.engine).list("schedule")] == ["nightly"]


def test_two_controllers_on_one_database_fire_each_tick_once(make_api: Callable[..., Api], database_url: str,  # noqa: F811
                                                             tmp_path: Path) -> None:
    first, second = make_api(database_url=database_url), make_api(database_url=database_url)
    repo_with(tmp_path, first.services, HOURLY.format(cron="*/5 * * * *", tz="UTC", catchup="all"))
    clock = Clock("2026-06-01T10:00:30")
    loops = [loop(first.services, clock), loop(second.services, clock)]
    loops[0].tick()
    clock.set("2026-06-01T11:00:30")  # twelve ticks due, both controllers at them at once
    go = threading.Barrier(2)
    started = [0, 0]

    def work(i: int) -> None:
        go.wait()
        started[i] = loops[i].tick()

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ticks = [r["trigger"]["tick"] for r in runs(first.services)]  # type: ignore[index]
    assert sorted(ticks) == [f"2026-06-01T{10 + (m + 5) // 60}:{(m + 5) % 60:02d}:00Z" for m in range(0, 60, 5)]
    assert sum(started) == 12


def test_a_backfill_fires_a_past_window_and_can_be_paused_resumed_and_canceled(api: Api, tmp_path: Path) -> None:
    services = api.services
    repo_with(tmp_path, services, HOURLY.format(cron="0 * * * *", tz="UTC", catchup="none"))
    schedules = loop(services, Clock("2026-11-30T12:00:30"))
    made = api.post("/api/v1/backfills", {"repo": "acme/app", "workflow": ".clarity/nightly.yaml",
                                          "from": "2026-11-01T00:00:00Z", "to": "2026-11-01T11:00:00Z"})
    assert made.status_code == 201, made.text
    backfill = made.json()
    assert backfill["ticks"] == 12 and backfill["state"] == "running"
    paused = api.post(f"/api/v1/backfills/{backfill['id']}/pause")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    schedules.tick()
    assert runs(services) == []  # paused: nothing fires
    assert api.post(f"/api/v1/backfills/{backfill['id']}/resume").json()["state"] == "running"
    schedules.tick()
    ticks = [r["trigger"]["tick"] for r in runs(services)]  # type: ignore[index]
    assert ticks == [f"2026-11-01T{h:02d}:00:00Z" for h in range(5)]  # a few a pass, oldest first
    assert all(r["trigger"]["backfill"] == backfill["id"] for r in runs(services))  # type: ignore[index]
    schedules.tick()
    assert api.post(f"/api/v1/backfills/{backfill['id']}/cancel").json()["state"] == "canceled"
    schedules.tick()
    assert len(runs(services)) == 10  # canceled after two passes
    again = api.post(f"/api/v1/backfills/{backfill['id']}/resume")
    assert again.status_code == 409 and "canceled" in again.json()["error"]["message"]
    shown = api.get(f"/api/v1/backfills/{backfill['id']}").json()
    assert shown["fired"] == 10 and shown["state"] == "canceled"

    whole = api.post("/api/v1/backfills", {"repo": "acme/app", "workflow": ".clarity/nightly.yaml",
                                           "from": "2026-11-01T00:00:00Z", "to": "2026-11-01T11:00:00Z"}).json()
    for _ in range(4):
        schedules.tick()
    assert api.get(f"/api/v1/backfills/{whole['id']}").json()["state"] == "done"
    ticks = [r["trigger"]["tick"] for r in runs(services)]  # type: ignore[index]
    assert sorted(ticks) == [f"2026-11-01T{h:02d}:00:00Z" for h in range(12)]  # none fired twice


def test_backfill_input_is_checked(api: Api, tmp_path: Path) -> None:
    repo_with(tmp_path, api.services, HOURLY.format(cron="* * * * *", tz="UTC", catchup="none"))

    def start(**body: object) -> tuple[int, str]:
        resp = api.post("/api/v1/backfills", {"repo": "acme/app", "workflow": ".clarity/nightly.yaml",
                                              "from": "2026-11-01T00:00:00Z", "to": "2026-11-01T01:00:00Z", **body})
        return resp.status_code, resp.text

    assert start(to="2099-01-01T00:00:00Z")[0] == 400 and "future" in start(to="2099-01-01T00:00:00Z")[1]
    assert start(**{"from": "2026-11-02T00:00:00Z"})[0] == 400
    code, text = start(to="2026-12-01T00:00:00Z")
    assert code == 400 and "more than 10000 ticks" in text
    code, text = start(**{"from": "yesterday"})
    assert code == 400 and "'from'" in text and "ISO 8601" in text
    code, text = start(workflow=".clarity/ci.yaml")
    assert code == 404 and "declares no schedule in .clarity/ci.yaml" in text
    assert start(trigger=3)[0] == 400
    listed = api.get("/api/v1/schedules").json()["schedules"]
    assert [(s["repo"], s["workflow_file"]) for s in listed] == [("acme/app", ".clarity/nightly.yaml")]
    assert listed[0]["next_tick"].endswith(":00Z")


STANDARDS_TRIGGERS = """\
workflow:
  name: "data-processing-pipeline"
  triggers:
    - type: "schedule"
      cron: "0 * * * *"
    - type: "webhook"
      path: "/api/v1/webhook"
  tasks:
    - name: t
      image: busybox
      commands: ["echo hourly"]
"""


def test_the_standards_example_triggers_load_and_the_schedule_fires_hourly(api: Api, tmp_path: Path) -> None:
    services = api.services
    repo_with(tmp_path, services, STANDARDS_TRIGGERS)
    clock = Clock("2026-06-01T09:59:00")
    schedules = loop(services, clock)
    schedules.tick()
    declared = {t.type: t.config for t in Triggers(services.store.engine).list()}
    assert declared["schedule"]["cron"] == "0 * * * *" and declared["webhook"]["path"] == "/api/v1/webhook"
    for hour in (10, 11):
        clock.set(f"2026-06-01T{hour}:00:01")
        schedules.tick()
    assert [r["trigger"]["tick"] for r in runs(services)] == [  # type: ignore[index]
        "2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z"]
    assert {r["workflow"] for r in runs(services)} == {"data-processing-pipeline"}


def test_runs_show_says_what_triggered_a_run(api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli import describe_trigger, main

    services = api.services
    repo_with(tmp_path, services, HOURLY.format(cron="0 * * * *", tz="UTC", catchup="latest"))
    clock = Clock("2026-06-01T10:20:00")
    schedules = loop(services, clock)
    schedules.tick()
    clock.set("2026-06-01T11:00:05")
    schedules.tick()
    [run] = runs(services)
    assert main(["runs", "show", str(run["id"])]) == 0
    out = capsys.readouterr().out
    assert f"run {run['id']}: running  nightly (.clarity/nightly.yaml @ blob " in out or \
        f"run {run['id']}: queued  nightly" in out
    assert "triggered   schedule, by schedule, tick 2026-06-01T11:00:00Z" in out
    assert "task report" in out
    assert main(["runs", "show", "999"]) == 2
    assert "no run 999" in capsys.readouterr().err
    assert describe_trigger({"by": "api-key:ci", "event": "manual"}, "manual") == "manual, by api-key:ci"
    assert describe_trigger({"event": "push", "delivery": "d-1", "ref": "refs/heads/main", "sender": "ann"},
                            "push") == "push, delivery d-1, ref refs/heads/main, sender ann"
    assert describe_trigger(None, "push") == "push"
