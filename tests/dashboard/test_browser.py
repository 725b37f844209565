"""The dashboard in a real browser (Debian's chromium through Playwright) on a real platform:
a live API, embedded workers running real processes with the local executor, PostgreSQL."""

from __future__ import annotations

import re
import sys

from playwright.sync_api import Page, expect

from tests.dashboard.live import Platform, sign_in
from tests.support.dashboard import HOSTILE, SLEEP, TRAIN, wait_until

PY = sys.executable


def test_sign_in_shows_who_you_are_a_bad_key_a_clear_error_and_the_key_stays_in_the_tab(
    page: Page, platform: Platform
) -> None:
    page.goto(f"{platform.url}/")  # redirected to /ui/
    page.fill("#api-key", "tp_not-a-real-key")
    page.click("form.signin button[type=submit]")
    expect(page.locator(".error")).to_contain_text("A valid API key is required.")
    sign_in(page, platform)
    expect(page.locator("#identity")).to_have_text("acme · admin · all projects")
    assert page.evaluate("sessionStorage.getItem('trainport.apiKey')") == platform.key
    assert platform.key not in page.url
    assert page.evaluate("document.cookie") == ""
    page.click("#signout")
    expect(page.locator("#api-key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_new_run_appears_and_changes_status_live_at_one_request_a_second(
    page: Page, platform: Platform
) -> None:
    sign_in(page, platform)
    expect(page.locator("#live")).to_contain_text("Live")
    run = platform.create_run(name="sleeper", command=[PY, "-c", SLEEP])
    row = page.locator(f"tr[data-run-id='{run['id']}']")
    expect(row).to_be_visible()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/" in r.url else None)
    page.wait_for_timeout(3_000)  # an idle, open table: one feed request per second
    assert 1 <= len(asked) <= 4, asked
    platform.api.post(f"/v1/runs/{run['id']}/cancel")
    expect(row).to_have_attribute("data-status", "cancelled", timeout=20_000)


def test_filters_live_in_the_url_and_selected_runs_are_cancelled(
    page: Page, platform: Platform
) -> None:
    sleeper = {"labels": {"suite": "cancel"}, "command": [PY, "-c", SLEEP]}
    runs = [platform.create_run(name=f"batch-{n}", **sleeper) for n in "ab"]
    sign_in(page, platform)
    page.fill("#filters input[name=labels]", "suite=cancel")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"labels=suite%3Dcancel"))
    page.reload()
    expect(page.locator("#filters input[name=labels]")).to_have_value("suite=cancel")
    rows = page.locator("#runs-body tr")
    expect(rows).to_have_count(2)
    for run in runs:
        page.check(f"tr[data-run-id='{run['id']}'] input[type=checkbox]")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-selected")
    for run in runs:
        row = page.locator(f"tr[data-run-id='{run['id']}']")
        expect(row).to_have_attribute("data-status", "cancelled", timeout=20_000)


def test_a_run_page_follows_logs_grows_its_loss_chart_and_shows_payloads_as_text(
    page: Page, platform: Platform
) -> None:
    # It lingers after its last step: the page must be seen following it live, and a page
    # that loaded slowly (CI, under load) once found a 4 s run already over.
    env = {"STEPS": "40", "NOTE": HOSTILE, "LINGER": "10"}
    run = platform.create_run(name="trainer", command=[PY, "-c", TRAIN], env=env)
    sign_in(page, platform, f"#/runs/{run['id']}")
    chart = page.locator(".chart[data-metric=loss]")
    expect(chart.locator("canvas")).to_be_visible(timeout=20_000)
    first = int(chart.get_attribute("data-points") or 0)
    expect(page.locator("#log-status")).to_have_text("following…")
    expect(page.locator(".logview")).to_contain_text("step 1")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=30_000)
    expect(chart).to_have_attribute("data-points", "40", timeout=10_000)
    assert first < 40
    expect(page.locator("#log-status")).to_contain_text("end of log")
    page.fill("#log-search", "onerror")
    expect(page.locator(".logview")).to_contain_text(HOSTILE)
    expect(page.locator("#spec-yaml")).to_contain_text(HOSTILE)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#main img, #main script").count() == 0


def test_a_waiting_run_shows_its_queue_answer(page: Page, platform: Platform) -> None:
    org = platform.api.get("/v1/me").json()["organization"]["id"]
    platform.api.post("/v1/projects", json={"name": "held"}).raise_for_status()
    held = {"max_gpus": None, "max_running_runs": 0}
    platform.api.put(f"/v1/orgs/{org}/projects/held/quota", json=held).raise_for_status()
    run = platform.create_run(name="waits", project="held", command=[PY, "-c", SLEEP])
    sign_in(page, platform, f"#/runs/{run['id']}")
    answer = "#1 — quota_exhausted: 0 of 0 running runs of project held"
    expect(page.locator("#queue-answer")).to_contain_text(answer, timeout=20_000)


def test_a_revoked_key_returns_to_the_sign_in_form_with_the_reason(
    page: Page, platform: Platform
) -> None:
    made = platform.api.post("/v1/api-keys", json={"name": "soon-gone", "role": "viewer"}).json()
    sign_in(page, platform, key=made["key"])
    expect(page.locator("#identity")).to_have_text("acme · viewer · all projects")
    platform.api.delete(f"/v1/api-keys/{made['id']}").raise_for_status()
    expect(page.locator("form.signin .error")).to_contain_text("A valid API key is required.")
    assert page.evaluate("sessionStorage.length") == 0


def test_compare_overlays_the_loss_of_two_runs_and_diffs_their_specs(
    page: Page, platform: Platform
) -> None:
    runs = [
        platform.create_run(name=f"lr-{n}", command=[PY, "-c", TRAIN], env={"STEPS": "10", "LR": n})
        for n in ("1", "2")
    ]
    for run in runs:
        wait_until(platform, str(run["id"]), {"succeeded"})
    sign_in(page, platform, f"#/compare?ids={runs[0]['id']},{runs[1]['id']}")
    chart = page.locator(".chart[data-metric=loss]")
    expect(chart).to_have_attribute("data-points", "20")
    expect(chart.locator(".u-legend")).to_contain_text("lr-1")
    expect(chart.locator(".u-legend")).to_contain_text("lr-2")
    expect(page.locator("#spec-diff")).to_contain_text("/env/LR")


def test_the_api_reference_renders_without_leaving_this_server(
    page: Page, platform: Platform
) -> None:
    """Swagger UI here; /redoc's assets and CSP are checked in test_serving.py (rendering its
    1 MB bundle in a browser costs more than it tells)."""
    fetched: list[str] = []  # a request the page's CSP blocks never gets a response
    page.on("response", lambda r: fetched.append(r.url))
    page.goto(f"{platform.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Trainport API")
    elsewhere = [u for u in fetched if not u.startswith((platform.url, "data:", "blob:"))]
    assert not elsewhere
