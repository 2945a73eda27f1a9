"""`create_app(settings)`: the controller as a Starlette application.

Nothing runs at import. The lifespan builds the services, resumes the runs a previous process
left open, and starts the background loops: the lease reaper, the webhook intake worker, the git
poller, the schedules, the plugin triggers and (for `clarity up`) the built-in runner. Each loop
survives its own failures.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, AsyncIterator, Callable

import structlog
from starlette.applications import Starlette

from controller.loop import Loop
from controller.services import Services
from controller.settings import Settings

if TYPE_CHECKING:
    from controller.api.metrics import Metrics
    from runner.agent import Agent

log = structlog.get_logger("clarity.app")

RETENTION_INTERVAL_S = 3600.0  # how often stored artifacts past their retention are removed
SHUTDOWN_GRACE_S = 10.0
"""On stop, running tasks of the built-in runner get this long; then they are stopped and run
again when the controller is back."""


def create_app(settings: Settings, *, builtin_runner: bool = False) -> Starlette:
    from controller import api
    from controller.api import hooks
    from controller.api.metrics import Metrics
    from controller.intake import IntakeWorker
    from controller.poller import Poller
    from controller.report import Sender
    from controller.filewatch import FileWatchLoop
    from controller.plugin_triggers import PluginTriggerLoop
    from controller.schedules import ScheduleLoop

    services = Services.build(settings)
    metrics = Metrics(services.store)  # shared by the API's runner routes and the built-in runner

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stoppers: list[Callable[[], None]] = []
        resumed = services.scheduler.resume()
        if resumed:
            log.info("runs resumed", runs=resumed)
        reaper = Loop("reaper", settings.reap_interval_s, services.scheduler.reap)
        reaper.start()
        stoppers.append(reaper.stop)
        if settings.artifact_retention_days > 0:
            retention = Loop("artifact-retention", RETENTION_INTERVAL_S, lambda: _prune_artifacts(services))
            retention.start()
            stoppers.append(retention.stop)
        sender = Sender(services.outbox, services.repos, settings, services.reporting.wake)
        sender.start()
        stoppers.append(sender.stop)
        watcher_files = FileWatchLoop(services)
        watcher_files.start()
        stoppers.append(watcher_files.stop)
        schedules = ScheduleLoop(services)
        services.starter.on_push = schedules.on_push
        schedules.start()
        stoppers.append(schedules.stop)
        plugin_triggers = PluginTriggerLoop(services)  # the triggers the schedule loop reads
        plugin_triggers.start()
        stoppers.append(plugin_triggers.stop)
        worker = IntakeWorker(services)
        worker.start()
        stoppers.append(worker.stop)
        watcher = Poller(services)
        watcher.start()
        stoppers.append(watcher.stop)
        if builtin_runner:
            _make_storage_root(settings)
            agent = _builtin_runner(services, metrics)
            agent.start()

            def stop_agent() -> None:
                if agent.running:
                    log.info("stopping: waiting for running tasks", tasks=agent.running, up_to_s=SHUTDOWN_GRACE_S)
                agent.stop(grace_s=SHUTDOWN_GRACE_S)

            stoppers.append(stop_agent)
        log.info("controller ready", host=settings.host, port=settings.port, database=_safe_url(settings))
        try:
            yield
        finally:
            for stop in reversed(stoppers):
                stop()
            log.info("controller stopped")

    app = Starlette(routes=[*api.routes(services, metrics), *hooks.routes(services)], lifespan=lifespan,
                    exception_handlers=api.exception_handlers())
    app.state.services = services
    return app


def _make_storage_root(settings: Settings) -> None:
    """The built-in runner is on this machine: its storage tasks mount the storage root, so it must
    exist (remote runners' machines need it made by whoever deploys them: docs/deploy.md)."""
    if settings.storage_root is None:
        return
    try:
        settings.storage_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot create the storage root: storage tasks will fail until it exists",
                    storage_root=str(settings.storage_root), error=str(exc))


def _prune_artifacts(services: Services) -> int:
    from controller import artifacts

    settings = services.settings
    removed = artifacts.prune([settings.home / "artifacts", settings.work_root / "artifacts"],
                              services.store.finished_at, settings.artifact_retention_days * 86400)
    if removed:
        log.info("artifacts removed", runs=removed, older_than_days=settings.artifact_retention_days)
    return removed


def _builtin_runner(services: Services, metrics: Metrics) -> Agent:
    from controller.local import make_backend
    from controller.peer import InProcessPeer
    from runner import owner
    from runner.agent import Agent  # noqa: F811 - the runtime import of the name typed above

    settings = services.settings
    backend = make_backend("docker", settings)
    backend.sweep()
    return Agent(InProcessPeer(services.queue, services.scheduler, observer=metrics, home=settings.home), backend, settings.work_root, services.mirrors,
                 name=f"builtin-{owner.current()}", slots=settings.parallel, poll_s=5.0,
                 heartbeat_s=min(2.0, settings.lease_s / 3))


def _safe_url(settings: Settings) -> str:
    url = settings.database_url
    if "@" in url:  # no password in the logs
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
