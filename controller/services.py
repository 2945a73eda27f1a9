"""The controller's parts, made once from Settings and handed to the API routes and the loops."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.engine import RunLoadError, Scheduler
from controller.events import Events
from controller.ratelimit import RateLimiter
from controller.report import Reporting
from controller.secretbox import SecretBox, SecretBoxError
from controller.settings import Settings
from controller.starter import Starter
from controller.store.outbox import Outbox
from controller.store.queue import Queue
from controller.store.repo_secrets import RepoSecrets
from controller.store.repos import ApiKeys, Repos
from controller.store.runners import Runners
from controller.store.runs import RunRow, Store
from controller.workflow.sources import SourceError, Sources
from runner.workspace import WorkspaceCache, WorkspaceError


@dataclass
class Services:
    settings: Settings
    store: Store
    queue: Queue
    scheduler: Scheduler
    repos: Repos
    keys: ApiKeys
    mirrors: WorkspaceCache
    starter: Starter
    runners: Runners
    outbox: Outbox
    reporting: Reporting
    events: Events = field(init=False)  # event triggers: runs started when runs finish
    limiter: RateLimiter = field(init=False)  # the API's rate limit (per key, per address)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        store = Store.open(settings.database_url)
        queue = Queue(store.engine, lease_s=settings.lease_s)
        runners = Runners(store.engine)
        scheduler = Scheduler(store, queue, can_take=runners.can_take)
        mirrors = WorkspaceCache(settings.cache)
        repos, outbox = Repos(store.engine), Outbox(store.engine)
        reporting = Reporting(store, repos, outbox, settings)
        scheduler.on_state.append(reporting.run_changed)
        services = cls(settings=settings, store=store, queue=queue, scheduler=scheduler, repos=repos,
                       keys=ApiKeys(store.engine), mirrors=mirrors,
                       starter=Starter(scheduler, mirrors, on_skip=reporting.skipped,
                                       grants=settings.plugin_permissions,
                                       storage_root=str(settings.storage_root) if settings.storage_root else None), runners=runners,
                       outbox=outbox, reporting=reporting)
        services.events = Events(store, repos, services.starter)
        services.limiter = RateLimiter(settings.rate_limit)
        scheduler.secrets = services.run_secrets
        scheduler.sources_for = services.run_sources  # `type: workflow` tasks read their sub-workflows here
        scheduler.on_state.append(services.events.run_finished)
        return services

    def run_secrets(self, run: RunRow) -> dict[str, str]:
        """The secrets of a run's repository (`clarity secret set`), opened; the scheduler keeps those
        the workflow names."""
        if run.repo_id is None:
            return {}
        sealed = RepoSecrets(self.store.engine).sealed(run.repo_id)
        if not sealed:
            return {}
        try:
            box = SecretBox.for_home(self.settings.home)
            return {name: box.open(value) for name, value in sealed.items()}
        except SecretBoxError as exc:
            raise RunLoadError(f"the secrets of repository {run.repo} cannot be opened: {exc}") from None

    def run_sources(self, run: RunRow) -> Sources:
        """Where the sub-workflows of a run's `type: workflow` tasks are read: its repository at its
        commit (through the mirror), other registered repositories by name."""
        try:
            repo = self.repos.get_id(run.repo_id) if run.repo_id is not None else self.repos.get(run.repo)
            mirror, sha = self.mirrors.ensure(repo.url, run.commit_sha)
        except (LookupError, WorkspaceError) as exc:
            raise SourceError(f"the repository of run {run.id} cannot be read: {exc}") from None
        return self.starter.sources(repo, mirror, sha)
