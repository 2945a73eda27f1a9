"""Authentication of deliveries (HMAC / token, constant time) and reading raw requests."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Callable

import pytest

from controller.forges import FORGES, BadDelivery, Unauthorized
from controller.forges.base import MAX_BODY
from controller.triggers.events import PingEvent

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "webhooks"
SECRET = "It's a Secret to Everybody"
OTHER = b'{"zen": "a different body"}'


def body_of(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"webhook fixtures not found at {FIXTURES} (CI lays shared/ beside the checkout)")
    return path.read_bytes()


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# forge -> (fixture, a function making the right auth headers for a body)
SIGNERS: dict[str, tuple[str, Callable[[bytes], dict[str, str]]]] = {
    "github": ("github/push-branch.json", lambda b: {"X-Hub-Signature-256": "sha256=" + hex_hmac(b)}),
    "gitea": ("gitea/push-branch.json", lambda b: {"X-Gitea-Signature": hex_hmac(b)}),
    "gitlab": ("gitlab/push-branch.json", lambda b: {"X-Gitlab-Token": SECRET}),
}
FORGE_NAMES = sorted(SIGNERS)


@pytest.mark.parametrize("forge", FORGE_NAMES)
def test_right_signature_is_accepted(forge: str) -> None:
    name, sign = SIGNERS[forge]
    body = body_of(name)
    FORGES[forge].verify(sign(body), body, SECRET)


@pytest.mark.parametrize("forge", FORGE_NAMES)
def test_header_names_are_case_insensitive(forge: str) -> None:
    name, sign = SIGNERS[forge]
    body = body_of(name)
    FORGES[forge].verify({k.lower(): v for k, v in sign(body).items()}, body, SECRET)
    FORGES[forge].verify({k.upper(): v for k, v in sign(body).items()}, body, SECRET)


def test_github_accepts_uppercase_hex() -> None:
    body = body_of("github/push-branch.json")
    FORGES["github"].verify({"X-Hub-Signature-256": "sha256=" + hex_hmac(body).upper()}, body, SECRET)


def test_forgejo_signature_header_is_read() -> None:
    body = body_of("gitea/push-branch.json")
    FORGES["gitea"].verify({"X-Forgejo-Signature": hex_hmac(body)}, body, SECRET)


def _wrong(sign: Callable[[bytes], dict[str, str]], body: bytes) -> dict[str, str]:
    return {k: v[:-4] + ("0000" if not v.endswith("0000") else "1111") for k, v in sign(body).items()}


BAD: dict[str, Callable[[Callable[[bytes], dict[str, str]], bytes], tuple[dict[str, str], str | None]]] = {
    "wrong signature": lambda sign, body: (_wrong(sign, body), SECRET),
    "signed with another secret": lambda sign, body: (sign(body), "another secret"),
    "missing signature": lambda sign, body: ({}, SECRET),
    "empty signature header": lambda sign, body: ({k: "" for k in sign(body)}, SECRET),
    "signature of a different body": lambda sign, body: (sign(OTHER), SECRET) if "X-Gitlab-Token" not in sign(body)
    else ({"X-Gitlab-Token": SECRET[:-1]}, SECRET),
    "truncated signature": lambda sign, body: ({k: v[: len(v) // 2] for k, v in sign(body).items()}, SECRET),
    "no secret configured": lambda sign, body: (sign(body), None),
    "empty secret configured": lambda sign, body: (sign(body), ""),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("forge", FORGE_NAMES)
def test_bad_signature_is_unauthorized(forge: str, case: str) -> None:
    name, sign = SIGNERS[forge]
    body = body_of(name)
    headers, secret = BAD[case](sign, body)
    with pytest.raises(Unauthorized) as info:
        FORGES[forge].verify(headers, body, secret)
    assert info.value.status == 401
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("forge", FORGE_NAMES)
def test_no_secret_message_says_to_set_one(forge: str) -> None:
    name, sign = SIGNERS[forge]
    body = body_of(name)
    with pytest.raises(Unauthorized, match="no webhook secret is set"):
        FORGES[forge].verify(sign(body), body, None)


def test_empty_secret_even_with_matching_empty_key_hmac_is_refused() -> None:
    body = body_of("github/push-branch.json")
    with pytest.raises(Unauthorized):
        FORGES["github"].verify({"X-Hub-Signature-256": "sha256=" + hex_hmac(body, "")}, body, "")


def test_github_legacy_sha1_signature_is_not_enough() -> None:
    body = body_of("github/push-branch.json")
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    with pytest.raises(Unauthorized):
        FORGES["github"].verify({"X-Hub-Signature": sha1}, body, SECRET)


def test_github_signature_without_prefix_is_refused() -> None:
    body = body_of("github/push-branch.json")
    with pytest.raises(Unauthorized):
        FORGES["github"].verify({"X-Hub-Signature-256": hex_hmac(body)}, body, SECRET)


def test_non_ascii_signature_is_unauthorized_not_a_crash() -> None:
    body = body_of("github/push-branch.json")
    with pytest.raises(Unauthorized):
        FORGES["github"].verify({"X-Hub-Signature-256": "sha256=é" + hex_hmac(body)[1:]}, body, SECRET)


@pytest.mark.parametrize("forge", FORGE_NAMES)
def test_verify_compares_with_hmac_compare_digest(forge: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    name, sign = SIGNERS[forge]
    body = body_of(name)
    FORGES[forge].verify(sign(body), body, SECRET)
    assert len(calls) == 1
    with pytest.raises(Unauthorized):
        FORGES[forge].verify(_wrong(sign, body), body, SECRET)
    assert len(calls) == 2


EVENT_HEADERS = {"github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event", "gitea": "X-Gitea-Event"}


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe{}", b"[1, 2]", b'"push"', b"payload=%7B%7D"])
@pytest.mark.parametrize("forge", FORGE_NAMES)
def test_malformed_body_is_bad_delivery_400(forge: str, body: bytes) -> None:
    with pytest.raises(BadDelivery) as info:
        FORGES[forge].delivery({EVENT_HEADERS[forge]: "push"}, body)
    assert info.value.status == 400
    assert info.value.message


def test_form_encoded_github_body_says_to_switch_to_json() -> None:
    with pytest.raises(BadDelivery, match="application/json"):
        FORGES["github"].delivery({"X-GitHub-Event": "push"}, b"payload=%7B%7D")


@pytest.mark.parametrize("forge", FORGE_NAMES)
def test_missing_event_header_is_bad_delivery_400(forge: str) -> None:
    with pytest.raises(BadDelivery, match=EVENT_HEADERS[forge]) as info:
        FORGES[forge].delivery({"Content-Type": "application/json"}, b"{}")
    assert info.value.status == 400


def test_gitea_event_is_not_read_from_its_github_copy() -> None:
    with pytest.raises(BadDelivery):
        FORGES["gitea"].delivery({"X-GitHub-Event": "push"}, b"{}")


def test_unknown_event_is_still_a_delivery() -> None:
    delivery = FORGES["github"].delivery({"x-github-event": "sponsorship", "x-github-delivery": "d-1"}, b"{}")
    assert (delivery.event_name, delivery.delivery_id, delivery.repo) == ("sponsorship", "d-1", None)
    assert FORGES["github"].parse(delivery) is None


@pytest.mark.parametrize("forge, name, headers, delivery_id, repo", [
    ("github", "github/push-branch.json", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78"},
     "72d3162e-cc78", "Codertocat/Hello-World"),
    ("gitea", "gitea/push-branch.json", {"X-Gitea-Event": "push", "X-Gitea-Delivery": "a1b2"}, "a1b2",
     "Test-CI/multi-line-secrets"),
    ("gitlab", "gitlab/push-branch.json", {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "e-1"}, "e-1",
     "mike/diaspora"),
    ("gitlab", "gitlab/push-branch.json",
     {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "e-1", "Idempotency-Key": "k-1"}, "k-1", "mike/diaspora"),
])
def test_delivery_id_and_repo(forge: str, name: str, headers: dict[str, str], delivery_id: str, repo: str) -> None:
    delivery = FORGES[forge].delivery(headers, body_of(name))
    assert (delivery.forge, delivery.delivery_id, delivery.repo) == (forge, delivery_id, repo)


def test_delivery_without_id_header_falls_back_to_body_hash() -> None:
    body = body_of("gitlab/push-branch.json")
    delivery = FORGES["gitlab"].delivery({"X-Gitlab-Event": "Push Hook"}, body)
    assert delivery.delivery_id == "sha256:" + hashlib.sha256(body).hexdigest()


def test_ping_is_answered_and_starts_nothing() -> None:
    body = body_of("github/ping.json")
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p-1", "X-Hub-Signature-256": "sha256=" + hex_hmac(body)}
    github = FORGES["github"]
    delivery = github.delivery(headers, body)
    github.verify(headers, body, SECRET)
    assert github.parse(delivery) == PingEvent(repo="Octocoders/Hello-World")
    assert json.loads(body)["hook"]["config"]["content_type"] == "json"


def test_registry_names_match_forges() -> None:
    assert sorted(FORGES) == ["gitea", "github", "gitlab"]
    assert all(forge.name == key for key, forge in FORGES.items())


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(BadDelivery) as info:
        FORGES["github"].delivery({"X-GitHub-Event": "push"}, b" " * (MAX_BODY + 1))
    assert info.value.status == 413
