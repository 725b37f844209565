"""The dashboard's other pages in a real browser on the live platform of tests/dashboard:
checkpoints, outputs and provenance on a run page, clone and edit, the queue, datasets, settings
(API keys, quotas), paging 1,000 runs, keyboard use, and axe-core on every page."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
import pytest
from playwright.sync_api import FilePayload, Page, expect
from sqlalchemy.engine import make_url
from ulid import ULID

from core import db
from core.db import session_scope
from core.runs.spec import RunCreate
from core.settings import Settings
from core.tenants.service import bootstrap
from tests.dashboard.live import Platform, sign_in
from tests.support.dashboard import SLEEP, TRAIN, wait_until

PY = sys.executable
CHECKPOINTED = """
import pathlib, trainport.runtime as rt
run = rt.init()
pathlib.Path("model.bin").write_bytes(b"weights")
for step in (3, 6):
    run.log(step=step, loss=1 / step)
    run.checkpoints.save_files({"model.bin": "model.bin"}, step=step, metrics={"loss": 1 / step})
pathlib.Path("out").mkdir()
pathlib.Path("out/report.txt").write_text("done")
run.close()
"""


def _dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _finished(platform: Platform, **spec: Any) -> dict[str, Any]:
    run = platform.create_run(**spec)
    wait_until(platform, str(run["id"]), {"succeeded", "failed"}, timeout=60)
    made: dict[str, Any] = platform.api.get(f"/v1/runs/{run['id']}").json()
    assert made["status"] == "succeeded", made
    return made


def _has_outputs_api(platform: Platform) -> bool:
    paths = platform.api.get("/openapi.json").json()["paths"]
    return "/v1/runs/{run_id}/outputs" in paths


def test_checkpoints_with_their_metrics_download_and_provenance_verifies_with_its_marks(
    page: Page, platform: Platform
) -> None:
    run = _finished(platform, name="ckpt", command=[PY, "-c", CHECKPOINTED])
    sign_in(page, platform, f"#/runs/{run['id']}")
    rows = page.locator("#run-checkpoints tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#run-checkpoints")).to_contain_text("loss=0.1667")
    with page.expect_download() as download:
        page.get_by_role("button", name="download checkpoint 6").click()
    assert download.value.suggested_filename == "checkpoint-6"
    assert download.value.path().read_bytes() == b"weights"

    facts = page.locator("#provenance-facts tbody tr")
    expect(facts.first).to_be_visible()
    expect(page.locator("#provenance-facts tr[data-source=observed]").first).to_be_visible()
    expect(page.locator("#provenance-facts tr[data-source=reported]").first).to_be_visible()
    expect(page.locator("#provenance-facts")).to_contain_text("/spec")
    page.click("#verify")
    expect(page.locator("#verdict")).to_have_text("✓ signature valid")


def test_a_metric_chart_zooms_shows_values_on_hover_and_switches_to_log_scale(
    page: Page, platform: Platform
) -> None:
    run = _finished(platform, name="chart", command=[PY, "-c", TRAIN], env={"STEPS": "20"})
    sign_in(page, platform, f"#/runs/{run['id']}")
    chart = page.locator(".chart[data-metric=loss]")
    expect(chart).to_have_attribute("data-points", "20")
    expect(chart).to_have_attribute("data-x-range", "0..19")
    over = chart.locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    expect(chart.locator(".u-legend .u-series").nth(1).locator(".u-value")).not_to_have_text("--")
    page.mouse.down()  # drag across the middle: zoom in on those steps
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    page.mouse.up()
    expect(chart).not_to_have_attribute("data-x-range", "0..19")
    low, high = (float(v) for v in (chart.get_attribute("data-x-range") or "").split(".."))
    assert 0 < low < high < 19
    over.dblclick()  # and back
    expect(chart).to_have_attribute("data-x-range", "0..19")
    chart.get_by_label("log scale").check()
    expect(chart).to_have_attribute("data-scale", "log")
    expect(chart.locator("canvas")).to_be_visible()


def test_without_an_outputs_api_the_run_page_has_no_outputs_section(
    page: Page, platform: Platform
) -> None:
    if _has_outputs_api(platform):
        pytest.skip("this server has GET /v1/runs/{id}/outputs: the next test covers it")
    run = _finished(platform, name="no-outputs", command=[PY, "-c", "print('hi')"])
    sign_in(page, platform, f"#/runs/{run['id']}")
    expect(page.locator("#run-attempts tbody tr")).to_have_count(1)
    expect(page.locator("#run-outputs")).to_be_hidden()
    expect(page.locator("#run-message .error")).to_have_count(0)


def test_outputs_are_listed_per_attempt_and_download(page: Page, platform: Platform) -> None:
    if not _has_outputs_api(platform):
        pytest.skip("GET /v1/runs/{id}/outputs is not on this branch (it lands with byoc-run)")
    run = _finished(platform, name="outs", command=[PY, "-c", CHECKPOINTED], outputs=["out"])
    sign_in(page, platform, f"#/runs/{run['id']}")
    expect(page.locator("#run-outputs tbody tr")).to_have_count(1)
    expect(page.locator("#run-outputs")).to_contain_text("out/report.txt")
    with page.expect_download() as download:
        page.get_by_role("button", name="download out/report.txt").click()
    assert download.value.path().read_bytes() == b"done"


def test_clone_opens_a_copy_and_edit_changes_priority_and_labels_with_if_match(
    page: Page, platform: Platform
) -> None:
    run = platform.create_run(name="to-clone", labels={"a": "1"}, command=[PY, "-c", SLEEP])
    wait_until(platform, str(run["id"]), {"running"})  # an edit on a stale copy is refused
    sign_in(page, platform, f"#/runs/{run['id']}")
    expect(page.locator("#run-status")).to_have_text("running")
    page.click("#edit-run")
    page.select_option("#edit-form select[name=priority]", "high")
    page.fill("#edit-form textarea[name=labels]", "a=2\nteam=nlp")
    page.click("#edit-form button[type=submit]")
    expect(page.locator("#run-summary")).to_contain_text("high")
    edited = platform.api.get(f"/v1/runs/{run['id']}").json()
    assert (edited["priority"], edited["labels"]) == ("high", {"a": "2", "team": "nlp"})

    page.click("#clone-run")
    expect(page).not_to_have_url(f"{platform.url}/ui/#/runs/{run['id']}")
    clone_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator("#run-summary")).to_contain_text(clone_id)  # a new name is generated
    clone = platform.api.get(f"/v1/runs/{clone_id}").json()
    assert clone["spec"]["command"] == run["spec"]["command"]
    assert clone["labels"] == {"a": "2", "team": "nlp"}
    for made in (run["id"], clone_id):
        platform.api.post(f"/v1/runs/{made}/cancel").raise_for_status()


def test_the_queue_lists_waiting_runs_in_order_with_quota_beside_usage(
    page: Page, platform: Platform
) -> None:
    org = platform.api.get("/v1/me").json()["organization"]["id"]
    platform.api.post("/v1/projects", json={"name": "parked"}).raise_for_status()
    limits = {"max_gpus": None, "max_running_runs": 0}
    platform.api.put(f"/v1/orgs/{org}/projects/parked/quota", json=limits).raise_for_status()
    runs = [
        platform.create_run(name=f"parked-{n}", project="parked", command=[PY, "-c", SLEEP])
        for n in range(2)
    ]
    for run in runs:
        wait_until(platform, str(run["id"]), {"queued"})
    sign_in(page, platform, "#/queue")
    waiting = page.locator("#queue tbody tr", has_text="parked-")
    expect(waiting).to_have_count(2)
    expect(waiting.nth(1)).to_contain_text("quota_exhausted: 0 of 0 running runs of project parked")
    rows = waiting.all_inner_texts()
    places = [int(re.findall(r"#(\d+) —", row)[0]) for row in rows]  # the first in each row
    assert places == sorted(places), rows  # in admission order
    expect(page.locator("#quota")).to_contain_text("project parked")
    expect(page.locator("#quota tr", has_text="project parked")).to_contain_text("0 of 0")
    usage = platform.api.get(f"/v1/orgs/{org}/usage", params={"group_by": "project"}).json()
    total = page.locator("#usage tr", has_text="total").locator("td")
    expect(page.locator("#usage caption")).to_contain_text(f"from {usage['from']}")
    expect(total).to_have_text(
        [f"{usage['total']['gpu_hours']:.2f}", f"{usage['total']['cost']:.2f} {usage['currency']}"]
    )
    for run in runs:
        platform.api.post(f"/v1/runs/{run['id']}/cancel").raise_for_status()


def test_a_dataset_is_created_and_uploaded_from_the_browser_and_its_files_listed(
    page: Page, platform: Platform
) -> None:
    sign_in(page, platform, "#/datasets")
    page.fill("input[name=name]", "tiny-corpus")
    page.fill("input[name=description]", "two files")
    page.click("button:text('Create dataset')")
    section = page.locator("section[data-dataset=tiny-corpus]")
    expect(section).to_contain_text("No versions yet.")
    section.locator("input[type=file]").set_input_files(
        [
            FilePayload(name="a.txt", mimeType="text/plain", buffer=b"alpha\n"),
            FilePayload(name="b.txt", mimeType="text/plain", buffer=b"bravo!\n"),
        ]
    )
    section.locator("button:text('Upload as a new version')").click()
    version = section.locator("tbody tr").first
    expect(version).to_contain_text("sha256:")
    expect(version.locator("td").nth(2)).to_have_text("2")
    version.locator("button:text('Files')").click()
    expect(section).to_contain_text("a.txt")
    expect(section).to_contain_text("b.txt")
    listed = platform.api.get("/v1/datasets/tiny-corpus").json()
    assert [v["file_count"] for v in listed["versions"]] == [2]


def test_settings_create_a_key_shown_once_revoke_it_and_save_a_quota(
    page: Page, platform: Platform
) -> None:
    sign_in(page, platform, "#/settings")
    page.fill("input[aria-label='key name']", "ci-bot")
    page.select_option("select[aria-label=role]", "viewer")
    page.click("button:text('Create key')")
    secret = page.locator("#new-key code").inner_text()
    assert secret.startswith("tp_")
    as_bot = {"Authorization": f"Bearer {secret}"}
    assert platform.api.get("/v1/me", headers=as_bot).json()["key"]["role"] == "viewer"
    row = page.locator("#api-keys tr", has_text="ci-bot")
    expect(row).to_contain_text("viewer")
    expect(page.locator("#api-keys")).not_to_contain_text(secret)  # the list shows prefixes
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button:text('Revoke')").click()
    expect(row).to_have_count(0)
    assert platform.api.get("/v1/me", headers=as_bot).status_code == 401

    org_form = page.locator("#quotas form").first
    org_form.locator("input[name=max_gpus]").fill("64")
    org_form.locator("button:text('Save')").click()
    expect(page.locator("#settings-message")).to_contain_text("Organisation: quota saved.")
    org = platform.api.get("/v1/me").json()["organization"]["id"]
    assert platform.api.get(f"/v1/orgs/{org}/quota").json()["max_gpus"] == 64
    limits = {"max_gpus": None, "max_running_runs": None}
    platform.api.put(f"/v1/orgs/{org}/quota", json=limits).raise_for_status()


def _seed_runs(platform: Platform, org: str, count: int) -> tuple[str, list[str]]:
    """`count` finished runs of a new org written straight into the database (as bench/seed.py
    does, at test size); returns its admin key and the run ids, newest first."""
    engine = db.build_engine(Settings(database_url=platform.database_url))
    try:
        with session_scope(db.make_sessionmaker(engine)) as session:
            made = bootstrap(session, org)
            key, org_id, project_id = made.secret, made.org.id, made.project.id
    finally:
        engine.dispose()
    spec = RunCreate(image="trainer:1", command=["python", "train.py"])
    body = spec.model_dump(mode="json", exclude={"project"})
    start = datetime.now(UTC) - timedelta(days=2)
    ids = [
        f"run_{str(ULID.from_datetime(start + timedelta(seconds=i))).lower()}" for i in range(count)
    ]
    with psycopg.connect(_dsn(platform.database_url)) as conn, conn.cursor() as cur:
        base = conn.execute(
            "UPDATE version_counters SET value = value + %s WHERE name = 'runs' RETURNING value",
            [count],
        ).fetchone()
        assert base is not None
        first = int(base[0]) - count
        rows = [
            (
                run_id,
                org_id,
                project_id,
                f"paged-{i:04d}",
                json.dumps({**body, "name": f"paged-{i:04d}"}),
                first + i + 1,
                start + timedelta(seconds=i),
            )
            for i, run_id in enumerate(ids)
        ]
        cur.executemany(
            "INSERT INTO runs (id, org_id, project_id, name, spec, status, status_reason,"
            " priority, attempt, labels, resource_version, created_at, updated_at, finished_at)"
            " VALUES (%s, %s, %s, %s, %s::jsonb, 'succeeded', 'completed', 'normal', 0, '{}',"
            " %s, %s, now(), now())",
            rows,
        )
    return key, ids[::-1]


def test_a_thousand_runs_page_without_duplicates_or_gaps_and_fast(
    page: Page, platform: Platform
) -> None:
    key, newest_first = _seed_runs(platform, "pager", 1000)
    sign_in(page, platform, key=key)
    seen: list[str] = []
    slowest = 0.0
    rows = page.locator("#runs-body tr[data-run-id]")
    while True:
        expect(rows.first).to_be_visible()
        ids = rows.evaluate_all("rows => rows.map((r) => r.dataset.runId)")
        assert ids
        assert ids[0] not in seen
        seen.extend(ids)
        older = page.locator("#older")
        if older.is_disabled():
            break
        started = time.perf_counter()
        older.click()
        expect(rows.first).not_to_have_attribute("data-run-id", ids[0])
        slowest = max(slowest, time.perf_counter() - started)
    assert seen == newest_first  # every run once, newest first: no duplicate, no gap
    assert slowest < 1.5, f"a page took {slowest:.2f}s"
    page.click("text=← Newer")  # and back: the page before, exactly
    expect(rows.first).to_have_attribute("data-run-id", newest_first[-100])


def test_the_dashboard_is_usable_from_the_keyboard(page: Page, platform: Platform) -> None:
    run = platform.create_run(name="keyboard", command=[PY, "-c", "print(1)"])
    page.goto(f"{platform.url}/ui/")
    expect(page.locator("#api-key")).to_be_focused()
    page.keyboard.type(platform.key)
    page.keyboard.press("Enter")
    expect(page.locator("#identity")).to_be_visible()
    expect(page.locator("#main")).to_be_focused()
    page.reload()  # signed in still (the tab's sessionStorage): Tab starts at the top
    expect(page.locator(f"tr[data-run-id='{run['id']}']")).to_be_visible()
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    link = page.locator(f"tr[data-run-id='{run['id']}'] td.name a")
    for _ in range(60):  # the run's link is reachable with Tab alone
        page.keyboard.press("Tab")
        if link.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError("the run's link was never focused")
    page.keyboard.press("Enter")
    expect(page.locator("#run-title")).to_contain_text("keyboard")


# Each page, and what shows that it has drawn what it fetched.
AXE_PAGES = {
    "#/runs": "#runs-body tr",
    "#/run": "#provenance-facts",
    "#/compare": ".chart canvas",
    "#/queue": "#quota",
    "#/datasets": "#datasets > *",
    "#/settings": "#quotas form",
}


def _axe(page: Page, axe_source: str) -> list[dict[str, Any]]:
    page.evaluate(axe_source)  # through the DevTools protocol: the page's CSP forbids inline script
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_page_has_no_serious_accessibility_violation(
    page: Page, platform: Platform, axe_source: str, theme: Literal["light", "dark"]
) -> None:
    page.emulate_media(color_scheme=theme)
    page.goto(f"{platform.url}/ui/")
    expect(page.locator("#api-key")).to_be_visible()
    found = {"sign-in": _axe(page, axe_source)}
    run = _finished(platform, name=f"a11y-{theme}", command=[PY, "-c", CHECKPOINTED])
    sign_in(page, platform)
    for where, drawn in AXE_PAGES.items():
        target = {
            "#/run": f"#/runs/{run['id']}",
            "#/compare": f"#/compare?ids={run['id']},{run['id']}",
        }.get(where, where)
        page.goto(f"{platform.url}/ui/{target}")
        expect(page.locator(drawn).first).to_be_visible()
        found[where] = _axe(page, axe_source)
    assert not any(found.values()), json.dumps(found, indent=1)
