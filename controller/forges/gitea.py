"""Gitea (and Forgejo) webhooks: `X-Gitea-Signature` HMAC, push and pull_request events.

Gitea's payloads copy GitHub's shape, so the readers of `controller.forges.github` serve here;
what differs is the headers, the signature format (bare hex, no `sha256=` prefix), the push
(no created/deleted/forced flags, but a `total_commits`) and the action name `synchronized`.
Gitea also sends `X-GitHub-*` and `X-Hub-Signature-256` copies; this forge reads the
`X-Gitea-*` (or Forgejo's `X-Forgejo-*`) ones. A Gitea hook aimed at the GitHub endpoint would
verify yet lose `synchronized` pull requests: the docs send Gitea to /hooks/gitea.

Ignored (parse returns None): `create` and `delete` (the push of the same ref is the event),
pull_request actions without new code (edited, label_updated, assigned...), other events.
Old Gitea/Gogs releases copy the hook secret into the body as `"secret"`: it is never read.
"""

from __future__ import annotations

from typing import Mapping

from controller.forges.base import check_hmac_sha256, header, read_delivery, require_secret
from controller.forges.github import pull_request_event, push_event
from controller.forges.payload import cut
from controller.triggers.events import Delivery, Event, PullRequestAction

SIGNATURES = ("X-Gitea-Signature", "X-Forgejo-Signature")

ACTIONS: dict[str, PullRequestAction] = {
    "opened": "opened", "synchronized": "synchronize", "reopened": "reopened", "closed": "closed",
}


class Gitea:
    name = "gitea"

    def delivery(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        return read_delivery(self.name, headers, body, event_headers=("X-Gitea-Event", "X-Forgejo-Event"),
                             id_headers=("X-Gitea-Delivery", "X-Forgejo-Delivery"),
                             repo_path=("repository", "full_name"))

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
        key = require_secret(secret, "Gitea")
        # Gitea sends the header empty when its hook has no secret: `header` reads that as absent.
        check_hmac_sha256(header(headers, *SIGNATURES), body, key, header_name=SIGNATURES[0])

    def parse(self, delivery: Delivery) -> Event | None:
        payload = delivery.payload
        if delivery.event_name == "push":
            return push_event(payload, partial=cut(payload, "total_commits"))
        if delivery.event_name == "pull_request":
            return pull_request_event(payload, ACTIONS)
        return None
