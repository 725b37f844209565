"""The dashboard in Firefox ESR (issue 18: "works in current Chromium and Firefox").

The Chromium suites (test_browser*.py) cover every page in depth through Playwright; here the
same server is driven in Debian's Firefox over WebDriver BiDi (tests/dashboard/bidi.py): sign in,
the runs table with a live run, a run page with its logs, the queue page, and no script error.
"""

from __future__ import annotations

import json
import sys

from tests.dashboard.bidi import firefox
from tests.dashboard.live import Platform
from tests.support.dashboard import wait_until

PRINTS = "print('hello from firefox', flush=True)"


def test_the_dashboard_works_in_firefox(platform: Platform) -> None:
    run = platform.create_run(name="firefox-run", command=[sys.executable, "-c", PRINTS])
    run_id = str(run["id"])
    wait_until(platform, run_id, {"succeeded"})

    with firefox() as ff:
        ff.goto(f"{platform.url}/ui/#/runs")
        key = json.dumps(platform.key)
        ff.evaluate(
            f"document.querySelector('#api-key').value = {key};"
            "document.querySelector('form.signin button[type=submit]').click()"
        )
        ff.wait_for("document.querySelector('#identity') !== null")
        listed = "(document.querySelector('#runs-table')?.textContent ?? '')"
        assert "firefox-run" in ff.wait_for(f"{listed}.includes('firefox-run') && {listed}")

        ff.evaluate(f"location.hash = '#/runs/{run_id}'")
        summary = "(document.querySelector('#run-summary')?.textContent ?? '')"
        assert run_id in ff.wait_for(f"{summary}.includes('{run_id}') && {summary}")
        log = "document.body.textContent.includes('hello from firefox')"
        assert ff.wait_for(log)

        ff.evaluate("location.hash = '#/queue'")
        assert ff.wait_for("document.querySelector('#usage caption')?.textContent")
        assert ff.script_errors() == []
