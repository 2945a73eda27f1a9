"""controller.secretbox: secrets sealed with the controller's key, the key made once and kept."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from controller.secretbox import ENV_KEY, KEY_FILE, PREFIX, SecretBox, SecretBoxError, fingerprint


def test_round_trip_and_the_sealed_form() -> None:
    box = SecretBox(Fernet.generate_key())
    sealed = box.seal("ghp_sëcret-token")
    assert sealed.startswith(PREFIX) and "ghp_" not in sealed
    assert box.open(sealed) == "ghp_sëcret-token"
    assert box.seal("x") != box.seal("x")  # a fresh IV each time


def test_the_wrong_key_is_refused_and_says_which_key_and_what_to_do(tmp_path: Path) -> None:
    sealed = SecretBox(Fernet.generate_key()).seal("glpat-plaintext")
    other = SecretBox.for_home(tmp_path, env={})
    with pytest.raises(SecretBoxError) as err:
        other.open(sealed)
    message = str(err.value)
    key = (tmp_path / KEY_FILE).read_bytes().strip()
    assert str(tmp_path / KEY_FILE) in message and fingerprint(key) in message
    assert "sealed with another key" in message and "set the token again" in message
    assert "glpat-plaintext" not in message and sealed not in message


@pytest.mark.parametrize("sealed", ["ghp_plain", PREFIX + "not-a-token", PREFIX, "fernet:v2:abc"])
def test_what_is_not_ours_is_refused(sealed: str) -> None:
    with pytest.raises(SecretBoxError, match="set the token again"):
        SecretBox(Fernet.generate_key()).open(sealed)


def test_a_tampered_token_is_refused() -> None:
    box = SecretBox(Fernet.generate_key())
    sealed = box.seal("token")
    flipped = sealed[:-5] + ("A" if sealed[-5] != "A" else "B") + sealed[-4:]
    with pytest.raises(SecretBoxError):
        box.open(flipped)


def test_the_key_file_is_made_once_mode_0600_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"  # does not exist yet
    sealed = SecretBox.for_home(home, env={}).seal("token")
    path = home / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    Fernet(key.strip())  # a valid Fernet key
    assert SecretBox.for_home(home, env={}).open(sealed) == "token"
    assert path.read_bytes() == key
    assert [p.name for p in home.iterdir()] == [KEY_FILE]  # no temporary file left behind


def test_the_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    file_box = SecretBox.for_home(tmp_path, env={})
    env_key = Fernet.generate_key().decode()
    env_box = SecretBox.for_home(tmp_path, env={ENV_KEY: env_key + "\n"})
    sealed = env_box.seal("token")
    assert SecretBox(env_key.encode()).open(sealed) == "token"
    with pytest.raises(SecretBoxError, match=ENV_KEY):
        env_box.open(file_box.seal("token"))
    with pytest.raises(SecretBoxError):
        file_box.open(sealed)


def test_an_environment_key_made_without_env_makes_no_file(tmp_path: Path) -> None:
    SecretBox.for_home(tmp_path, env={ENV_KEY: Fernet.generate_key().decode()})
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize("bad", ["short", "x" * 44, "not base64 at all!!"])
def test_a_bad_key_is_refused_naming_where_it_came_from(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SecretBoxError, match=f"{ENV_KEY} is not a Fernet key"):
        SecretBox.for_home(tmp_path, env={ENV_KEY: bad})
    (tmp_path / KEY_FILE).write_text(bad)
    with pytest.raises(SecretBoxError, match=f"the key in {tmp_path / KEY_FILE} is not a Fernet key"):
        SecretBox.for_home(tmp_path, env={})


def test_a_home_that_cannot_be_written_is_said(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SecretBoxError, match=r"cannot (create|read) the secret key .*: Not a directory"):
        SecretBox.for_home(tmp_path / "file" / "home", env={})


def _seal_in_a_new_process(home: str, n: int, barrier: Any, out: Any) -> None:
    barrier.wait()  # every process at the starting line: none finds a key file
    out.put((n, SecretBox.for_home(Path(home), env={}).seal(f"sealed by {n}")))


def test_processes_making_the_key_at_once_end_with_one_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        home = tmp_path / f"home{attempt}"
        barrier, out = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_seal_in_a_new_process, args=(str(home), n, barrier, out)) for n in range(8)]
        for proc in procs:
            proc.start()
        sealed = dict(out.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0
        box = SecretBox.for_home(home, env={})  # the one key on disk opens what every process sealed
        assert {n: box.open(value) for n, value in sealed.items()} == {n: f"sealed by {n}" for n in range(8)}
        assert [p.name for p in home.iterdir()] == [KEY_FILE]
