"""Rate limits of the API through the real app (setting `rate_limit`, requests a minute): per API
key, per client address for requests without a valid key, per webhook key; 429 with Retry-After
and a sentence; runner routes and forge webhooks are never limited; 0 turns it off."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from controller.settings import Settings, SettingsError
from tests.api.conftest import Api, runner_credential
from tests.api.test_api_inbound import RELEASE, hook, make_repo, new_key

LIMIT = 5


@pytest.fixture
def limited(make_api: Callable[..., Api]) -> Api:
    return make_api(rate_limit=LIMIT)


def test_each_api_key_has_its_own_budget_and_is_told_when_to_come_back(limited: Api) -> None:
    for _ in range(LIMIT):
        assert limited.get("/api/v1/runs").status_code == 200
    refused = limited.get("/api/v1/runs")
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert refused.json()["error"]["code"] == "too_many_requests"
    message = refused.json()["error"]["message"]
    assert message.startswith(f"API key 'ci-admin' made {LIMIT} requests in the last minute")
    assert f"try again in {wait} s" in message and "rate_limit" in message
    assert limited.get("/api/v1/runs", key=limited.reader).status_code == 200  # another key: its own budget
    assert limited.services.limiter.refused == 1


def test_requests_without_a_valid_key_are_limited_by_address(limited: Api) -> None:
    for _ in range(LIMIT):
        assert limited.get("/api/v1/runs", key="clk_not-a-key").status_code == 401
    assert limited.client.get("/api/v1/runs").status_code == 429  # no key at all: the same address's budget
    assert limited.get("/api/v1/runs").status_code == 200  # a valid key is counted on its own


def test_webhook_keys_are_limited_and_guessing_them_too(limited: Api, tmp_path: Path) -> None:
    make_repo(limited, tmp_path)
    key = new_key(limited, ".clarity/deploy.yaml")
    answers = [hook(limited, "/api/v1/webhooks/deploy", key, RELEASE).status_code for _ in range(LIMIT + 1)]
    assert answers == [202] * LIMIT + [429]
    guesses = [hook(limited, "/api/v1/webhooks/deploy", "clwh_guessed", RELEASE).status_code for _ in range(LIMIT + 1)]
    assert guesses == [404] * LIMIT + [429]


def test_runner_routes_are_not_limited(limited: Api) -> None:
    credential = runner_credential(limited)
    headers = {"Authorization": f"Bearer {credential}", "Clarity-Protocol": "1"}
    answers = {limited.client.post("/api/v1/runner/lease", json={"wait_s": 0}, headers=headers).status_code
               for _ in range(LIMIT * 3)}
    assert answers <= {200, 204}, answers  # leased nothing (no task), never refused


def test_no_limit_with_zero_and_the_setting_is_checked(make_api: Callable[..., Api]) -> None:
    api = make_api(rate_limit=0)
    assert {api.get("/api/v1/runs").status_code for _ in range(50)} == {200}
    assert Settings.from_env({"CLARITY_RATE_LIMIT": "0"}).rate_limit == 0
    assert Settings.from_env({}).rate_limit == 1200
    with pytest.raises(SettingsError, match="CLARITY_RATE_LIMIT='lots': expected a whole number"):
        Settings.from_env({"CLARITY_RATE_LIMIT": "lots"})
