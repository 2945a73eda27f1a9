"""`file_watch` triggers on a directory of the controller's machine (`controller.filewatch`): the
real store and starter, a real git repository, real files, and an injected clock."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from controller.filewatch import FileWatchLoop, allowed
from controller.schedules import refresh_triggers
from tests.api.conftest import _env, api, make_api  # noqa: F401 - fixtures
from tests.api.conftest import Api, git

WATCHING = """\
workflow:
  name: ingest
  triggers:
    - type: file_watch
      directory: {directory}
  tasks:
    - name: load
      image: busybox
      commands: ["echo loading ${{inputs.file}}"]
"""


def setup(make_api: Callable[..., Api], tmp_path: Path, watched: Path, allowed_root: Path) -> Api:  # noqa: F811
    api = make_api(watch_dirs=(allowed_root,))
    src = tmp_path / "src"
    (src / ".clarity").mkdir(parents=True)
    (src / ".clarity" / "ingest.yaml").write_text(WATCHING.format(directory=watched))
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "watch")
    repo = api.services.repos.add(name="acme/data", url=str(src), forge="generic")
    refresh_triggers(api.services, repo)
    return api


def write(path: Path, text: str, age_s: float = 5.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    then = time.time() - age_s
    os.utime(path, (then, then))


def runs(api: Api) -> list[dict[str, object]]:
    return [dict(r.trigger) | {"inputs": (r.context or {}).get("inputs")}
            for r in reversed(api.services.store.list_runs(limit=100))]


def test_new_and_changed_files_start_runs_with_their_path(make_api: Callable[..., Api], tmp_path: Path) -> None:  # noqa: F811
    inbox = tmp_path / "srv" / "inbox"
    write(inbox / "old.csv", "there before", age_s=60)
    api = setup(make_api, tmp_path, inbox, tmp_path / "srv")
    now = [time.time() - 30]
    loop = FileWatchLoop(api.services, clock=lambda: now[0])
    assert loop.tick() == 0  # new trigger, 30 s ago: what is there (60 s old) does not fire
    now[0] = time.time() + 3600  # from here on the clock runs as files are written (the settle time aside)
    loop.clock = time.time
    write(inbox / "a.csv", "1")
    write(inbox / "sub" / "b.csv", "2")
    write(inbox / ".partial.csv", "hidden")
    assert loop.tick() == 2
    assert loop.tick() == 0  # seen
    fired = runs(api)
    assert [r["relative"] for r in fired] == ["a.csv", "sub/b.csv"] or \
        sorted(str(r["relative"]) for r in fired) == ["a.csv", "sub/b.csv"]
    first = next(r for r in fired if r["relative"] == "a.csv")
    assert first["file"] == str(inbox / "a.csv") and first["event"] == "file_watch"
    assert first["inputs"] == {"file": str(inbox / "a.csv")}

    write(inbox / "a.csv", "changed", age_s=2)  # a new version of a file
    (inbox / "c.csv").write_text("still being written")  # modified just now: waits to settle
    assert loop.tick() == 1
    assert runs(api)[-1]["relative"] == "a.csv"
    old = time.time() - 3600  # settled; an old time too, as `rsync -t` or `cp -p` would leave it
    os.utime(inbox / "c.csv", (old, old))
    assert loop.tick() == 1 and runs(api)[-1]["relative"] == "c.csv"

    other = FileWatchLoop(api.services)  # another controller: the same file versions start nothing again
    write(inbox / "d.csv", "4")
    assert loop.tick() + other.tick() == 1


def test_a_directory_outside_watch_dirs_is_refused(make_api: Callable[..., Api], tmp_path: Path) -> None:  # noqa: F811
    secret = tmp_path / "etc"
    api = setup(make_api, tmp_path, secret, tmp_path / "srv")
    loop = FileWatchLoop(api.services, clock=lambda: time.time() - 30)
    loop.tick()
    loop.clock = time.time
    write(secret / "passwd", "x")
    assert loop.tick() == 0 and runs(api) == []
    assert allowed(str(tmp_path / "srv" / "in"), (tmp_path / "srv",)) == tmp_path / "srv" / "in"
    assert allowed(str(tmp_path / "srv" / ".." / "etc"), (tmp_path / "srv",)) is None
    (tmp_path / "srv").mkdir(exist_ok=True)
    os.symlink(secret, tmp_path / "srv" / "link")
    assert allowed(str(tmp_path / "srv" / "link"), (tmp_path / "srv",)) is None  # a link out of it


def test_watch_dirs_setting(tmp_path: Path) -> None:
    import pytest

    from controller.settings import Settings, SettingsError

    got = Settings.from_env({"CLARITY_HOME": str(tmp_path), "CLARITY_WATCH_DIRS": f"/srv/in{os.pathsep}/data"})
    assert got.watch_dirs == (Path("/srv/in"), Path("/data"))
    assert Settings.from_env({"CLARITY_HOME": str(tmp_path)}).watch_dirs == ()
    with pytest.raises(SettingsError, match="not an absolute path"):
        Settings.from_env({"CLARITY_HOME": str(tmp_path), "CLARITY_WATCH_DIRS": "relative/dir"})
