"""`git.url` is a URL a user names and the server fetches: only hosts the operator allowed,
only public addresses (core/egress.py), never file:// unless allowed, never credentials in
the URL; git is pinned to the address that was vetted."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.code import git
from core.settings import Settings
from tests.factories import make_tenant

RUN = {"command": ["python", "train.py"]}


@pytest.fixture
def internal() -> Iterator[tuple[str, list[str]]]:
    """An internal HTTP service on loopback that records every request it gets."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}/repo.git", seen
    server.shutdown()
    server.server_close()


def api_with(postgres_url: str, tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(Settings(database_url=postgres_url, state_dir=tmp_path, **settings))
    return TestClient(app, raise_server_exceptions=False)


def submit(client: TestClient, **git_source: Any) -> Any:
    tenant = make_tenant(client)
    return client.post("/v1/runs", json={**RUN, "git": git_source}, headers=tenant.headers)


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


def test_git_sources_are_refused_until_an_operator_allows_a_host(
    postgres_url: str, tmp_path: Path
) -> None:
    client = api_with(postgres_url, tmp_path)
    response = submit(client, url="https://github.com/acme/train.git")
    assert_problem(response, 403, "git_host_not_allowed")
    assert "TRAINPORT_GIT_ALLOWED_HOSTS" in response.json()["detail"]


def test_an_allowed_name_that_resolves_inside_is_never_fetched(
    postgres_url: str, tmp_path: Path, internal: tuple[str, list[str]]
) -> None:
    url, seen = internal
    client = api_with(postgres_url, tmp_path, git_allowed_hosts=["localhost"])
    response = submit(client, url=url, ref="main")
    assert_problem(response, 422, "git_host_not_allowed")
    assert "not a public address" in response.json()["detail"]
    assert seen == []


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("ssh://git@github.com/acme/train.git", 422),
        ("git@github.com:acme/train.git", 422),
        ("https://user:token@github.com/acme/train.git", 422),
        ("file:///etc", 403),
        ("--upload-pack=touch /tmp/x", 422),
    ],
)
def test_urls_that_cannot_be_vetted_are_refused(
    postgres_url: str, tmp_path: Path, url: str, status: int
) -> None:
    client = api_with(postgres_url, tmp_path, git_allowed_hosts=["*"])
    response = submit(client, url=url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_git_is_pinned_to_the_vetted_address() -> None:
    settings = Settings(git_allowed_hosts=["localhost"], egress_allowed_networks=["127.0.0.0/8"])
    config = git._pinned("https://localhost:8443/acme/train.git", settings)
    assert config["http.curloptResolve"] in {"localhost:8443:127.0.0.1", "localhost:8443:[::1]"}
    assert config["http.followRedirects"] == "false"
    env = git._environment(git.GitSource("https://x", password="tok3n"), config, "/tmp")
    assert "tok3n" not in " ".join(env.values())  # only base64, in git's environment
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"


def commit_to(repo: Path, work: Path, text: str) -> str:
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    (work / "train.py").write_text(text)
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", text], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", str(repo), "HEAD:main"], cwd=work, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True)
    return head.stdout.strip()


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Path, Path]:
    repo, work = tmp_path / "repo.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return repo, work


def test_the_ref_is_pinned_at_submit_and_a_retry_replays_after_the_branch_moved(
    postgres_url: str, tmp_path: Path, repository: tuple[Path, Path]
) -> None:
    repo, work = repository
    first = commit_to(repo, work, "print(1)")
    # Entered: the lifespan opens the event-loop pool, so creates take the one-statement path.
    with api_with(postgres_url, tmp_path, git_allow_file_urls=True) as client:
        tenant = make_tenant(client)
        body = {**RUN, "git": {"url": repo.as_uri(), "ref": "main"}}
        headers = {**tenant.headers, "Idempotency-Key": "submit-once"}
        created = client.post("/v1/runs", json=body, headers=headers)
        assert created.status_code == 201, created.text
        assert created.json()["spec"]["git"]["commit"] == first
        commit_to(repo, work, "print(2)")  # the branch moves before the client's retry
        retried = client.post("/v1/runs", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json()["id"] == created.json()["id"]
    assert retried.json()["spec"]["git"]["commit"] == first


def test_a_ref_the_repository_does_not_have_is_refused_at_submit(
    postgres_url: str, tmp_path: Path, repository: tuple[Path, Path]
) -> None:
    repo, work = repository
    commit_to(repo, work, "print(1)")
    client = api_with(postgres_url, tmp_path, git_allow_file_urls=True)
    response = submit(client, url=repo.as_uri(), ref="no-such-branch")
    assert_problem(response, 422, "validation_error")
    assert response.json()["errors"][0]["pointer"] == "/git/ref"
