"""`clarity runner` (also `clarity-runner`): a remote runner agent on a build machine.

    clarity runner --controller URL --token TOKEN [--labels a,b] [--capacity N] [--name NAME]

The first start trades the one-time registration token (`clarity runner-token create`) for the
runner's own credential and keeps `{controller, name, credential}` in `STATE_DIR/runner.json`
(mode 0600); later starts reuse it and need no token. Then it leases tasks matching its labels,
runs each in Docker, streams logs back, and reports results (`runner.agent.Agent` over
`runner.client.HttpPeer`). SIGTERM or SIGINT: take no new task, let the current ones finish for
`--grace` seconds, hand back the rest, exit 0.

Nothing of `controller/` is imported here: a build machine needs only `runner/`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Sequence

from runner.client import ControllerError, HttpPeer, TokenRefused, Untrusted, Unverified, register, tls

log = logging.getLogger("clarity.runner")

STATE_FILE = "runner.json"
CANCEL_CHECK_S = 2.0  # heartbeat (and so cancel check) interval per running task: a cancel lands within seconds
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_agents: list[Any] = []  # the running agent, for a second SIGTERM/SIGINT


class RunnerError(Exception):
    """A mistake or a refusal the user must act on: one line, no traceback."""


@dataclass(frozen=True)
class State:
    controller: str
    name: str
    credential: str
    ca_file: str | None = None  # the CA an https:// controller's certificate is checked against

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"controller": self.controller, "name": self.name, "credential": self.credential,
                       "ca_file": self.ca_file}, f)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            data = json.loads(path.read_text())
            ca_file = data.get("ca_file")
            return cls(str(data["controller"]), str(data["name"]), str(data["credential"]),
                       None if ca_file is None else str(ca_file))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunnerError(f"{path} is not a runner state file ({exc}): remove it and register again") from None


def version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version("clarity-ci")
    except Exception:  # running from a source tree
        return "unknown"


def default_state_dir() -> Path:
    home = os.environ.get("CLARITY_RUNNER_HOME")
    return Path(home) if home else Path.home() / ".local" / "share" / "clarity-runner"


def _labels(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [label.strip() for label in text.split(",") if label.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clarity runner", description="A runner agent: leases tasks from a Clarity "
                                "controller and runs them in Docker.")
    p.add_argument("--controller", metavar="URL", default=os.environ.get("CLARITY_CONTROLLER"),
                   help="the controller's URL (default: CLARITY_CONTROLLER, or the one registered with)")
    p.add_argument("--token", metavar="TOKEN", default=os.environ.get("CLARITY_RUNNER_TOKEN"),
                   help="one-time registration token (`clarity runner-token create`); needed on the first start only "
                        "(default: CLARITY_RUNNER_TOKEN)")
    p.add_argument("--labels", metavar="A,B", help="labels of this runner, set at registration "
                                                   "(default: the token's labels)")
    p.add_argument("--capacity", type=int, metavar="N", help="tasks run at once (default: 2, or as registered)")
    p.add_argument("--name", metavar="NAME", help="the runner's name, set at registration (default: the host name)")
    p.add_argument("--ca-file", metavar="PATH", default=os.environ.get("CLARITY_CA_FILE"),
                   help="CA certificate(s) to check an https:// controller against, e.g. its self-signed "
                        "certificate (default: CLARITY_CA_FILE, or the one registered with, or the system's CAs)")
    p.add_argument("--state-dir", metavar="DIR", type=Path,
                   help="credential, work and cache directory (default: CLARITY_RUNNER_HOME or "
                        "~/.local/share/clarity-runner)")
    p.add_argument("--grace", type=float, default=60.0, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, how long current tasks may finish before they are handed back (default 60)")
    p.add_argument("--poll", type=float, default=5.0, metavar="SECONDS", help=argparse.SUPPRESS)
    return p


def _with_retry(what: str, url: str, call: Callable[[], Any], stop: threading.Event) -> Any:
    """`call()`, retried with backoff while the controller is unreachable or answers 5xx."""
    failures = 0
    while True:
        try:
            return call()
        except (TokenRefused, Unverified, Untrusted):
            raise
        except ControllerError as exc:
            if exc.status is not None and exc.status < 500:
                raise
            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            failures += 1
            log.warning("%s: controller %s unreachable (%s); retrying in %.0fs", what, url, exc, delay)
            if stop.wait(delay):
                raise RunnerError(f"stopped while waiting for the controller {url}") from None


def connect(args: argparse.Namespace, state_dir: Path, stop: threading.Event) -> tuple[State, dict[str, Any]]:
    """The runner's saved state (registering first if there is none), and its registration as the
    controller has it."""
    path = state_dir / STATE_FILE
    state = State.load(path)
    if state is None:
        if not args.controller:
            raise RunnerError("--controller URL is needed to register this runner")
        if not args.token:
            raise RunnerError(f"this runner is not registered (no {path}): pass --token TOKEN, made on the controller "
                              "with `clarity runner-token create`")
        name = args.name or socket.gethostname().split(".")[0] or "runner"
        controller = args.controller.rstrip("/")
        ca_file = str(Path(args.ca_file).expanduser().resolve()) if args.ca_file else None
        verify = _verify(ca_file)
        try:
            answer = _with_retry("registering", controller, lambda: register(
                controller, args.token, name=name, labels=_labels(args.labels), capacity=args.capacity or 2,
                version=version(), verify=verify), stop)
        except TokenRefused as exc:
            raise RunnerError(f"the controller refused the registration token: {exc} "
                              "(make a new one with `clarity runner-token create`)") from None
        except ControllerError as exc:
            raise RunnerError(f"registration failed: {exc}") from None
        state = State(controller, name, str(answer["credential"]), ca_file)
        state.save(path)
        log.info("registered as %s with %s; credential saved to %s", name, controller, path)
    else:
        if args.controller and args.controller.rstrip("/") != state.controller:
            raise RunnerError(f"this runner is registered with {state.controller}, not {args.controller}: "
                              f"use another --state-dir to register with another controller")
        if args.name and args.name != state.name:
            raise RunnerError(f"this runner is registered as {state.name!r}; --name cannot change it "
                              f"(use another --state-dir to register a new runner)")
        if args.token:
            log.info("already registered as %s (%s): --token is not needed and was not used", state.name, path)
        if args.ca_file:
            ca_file = str(Path(args.ca_file).expanduser().resolve())
            if ca_file != state.ca_file:
                state = State(state.controller, state.name, state.credential, ca_file)
                state.save(path)
                log.info("CA file for %s is now %s", state.controller, ca_file)
    peer = HttpPeer(state.controller, state.credential, verify=_verify(state.ca_file))
    try:
        me = _with_retry("checking the credential", state.controller, peer.hello, stop)
    except Unverified as exc:
        raise RunnerError(f"{exc}: this runner's credential was not accepted as proof by {state.controller}; "
                          f"check the address, or remove {path} and register again") from None
    except ControllerError as exc:
        if exc.status == 401:
            raise RunnerError(f"the controller refused this runner's credential ({exc}): the runner may be disabled "
                              f"(`clarity runners enable {state.name}`), or remove {path} and register again") from None
        raise RunnerError(f"the controller refused the runner: {exc}") from None
    finally:
        peer.close()
    registered = _labels(",".join(me.get("labels") or ())) or []
    wanted = _labels(args.labels)
    if wanted is not None and sorted(set(wanted)) != sorted(set(registered)):
        log.warning("--labels %s ignored: labels are set at registration (%s)", ",".join(wanted),
                    ",".join(registered) or "none")
    return state, me


def _verify(ca_file: str | None) -> Any:
    try:
        return tls(ca_file)
    except ValueError as exc:
        raise RunnerError(f"{exc} (--ca-file)") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    if args.capacity is not None and args.capacity < 1:
        print("clarity runner: error: --capacity must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    signals = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: stopping: no new task; current ones get %.0fs to finish (again: hand them back now)",
                     signal.Signals(signum).name, args.grace)
        elif _agents:
            log.info("%s again: handing the running tasks back now", signal.Signals(signum).name)
            for agent in _agents:
                agent.hand_back()
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(args, stop)
    except RunnerError as exc:
        print(f"clarity runner: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if not stop.is_set() else EXIT_OK
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    from runner.agent import Agent
    from runner.backends.base import BackendError
    from runner.backends.docker import DockerBackend
    from runner.workspace import WorkspaceCache

    state_dir = (args.state_dir or default_state_dir()).expanduser().resolve()
    state, me = connect(args, state_dir, stop)
    labels = list(me.get("labels") or ())
    slots = args.capacity or int(me.get("capacity") or 2)
    backend = DockerBackend(pull=os.environ.get("CLARITY_PULL", "missing") != "never")
    try:
        swept = backend.sweep()
    except BackendError as exc:
        raise RunnerError(f"{exc} (the runner runs every task in Docker)") from None
    if swept:
        log.info("removed %d leftover container(s) of earlier runs", swept)
    work = state_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    peer = HttpPeer(state.controller, state.credential, verify=_verify(state.ca_file))
    agent = Agent(peer, backend, work, WorkspaceCache(state_dir / "cache"), name=state.name, labels=labels,
                  slots=slots, poll_s=args.poll, heartbeat_s=CANCEL_CHECK_S)
    _agents.append(agent)
    agent.start()
    log.info("runner %s (labels: %s, capacity %d) working for %s", state.name, ",".join(labels) or "none", slots,
             state.controller)
    # The main thread only waits, in short steps: a signal may land on any thread, and Python runs
    # its handler on the main thread only when that wakes up.
    while not stop.wait(0.25):
        pass
    started = time.monotonic()
    stopper = threading.Thread(target=agent.stop, kwargs={"grace_s": args.grace}, name="stop")
    stopper.start()
    while stopper.is_alive():
        stopper.join(0.25)
    peer.close()
    log.info("runner %s stopped (%.1fs)", state.name, time.monotonic() - started)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
