"""How the API serves the dashboard and the API reference: same origin, strict CSP, no CDN."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

import dashboard

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "dashboard" / "static"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        self.inline_script |= self._in_script and bool(data.strip())


def _tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def test_the_root_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


def test_the_dashboard_page_has_a_strict_csp_and_no_inline_script(client: TestClient) -> None:
    response = client.get("/ui/")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    page = _tags(response.text)
    assert not page.inline_script
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], f"inline handler on <{tag}>"
        assert not (attrs.get("src") or "").startswith(("http:", "https:", "//")), tag


def test_every_asset_the_page_names_is_served_by_the_api(client: TestClient) -> None:
    page = _tags(client.get("/ui/").text)
    named = [a.get("src") or a.get("href") for t, a in page.tags if t in {"script", "link"}]
    for path in named:
        assert path
        assert client.get(f"/ui/{path}").status_code == 200, path


def test_api_reference_pages_load_their_assets_from_this_server(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            assert client.get(asset).status_code == 200, asset
        page_tags = _tags(html)
        assert not page_tags.inline_script, page
        csp = client.get(page).headers["content-security-policy"]
        assert "script-src 'self'" in csp, page
        assert "default-src 'self'" in csp, page
        assert "img-src 'self' data:" in csp, page  # ReDoc's "powered by" logo is on a CDN


def test_the_dashboard_builds_no_html_from_strings() -> None:
    """API strings (run names, labels, log lines) must only ever become text nodes."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(")
    for module in (STATIC / "js").rglob("*.js"):
        assert not sinks.search(module.read_text()), module


def test_vendored_assets_are_the_locked_npm_packages() -> None:
    """static/vendor/ is written by `npm run vendor` from package-lock.json, never by hand."""
    lock = json.loads((ROOT / "dashboard" / "package-lock.json").read_text())
    manifest = json.loads((STATIC / "vendor" / "manifest.json").read_text())
    assert set(manifest) == set(
        json.loads((ROOT / "dashboard" / "package.json").read_text())["devDependencies"]
    )
    for name, entry in manifest.items():
        assert entry["version"] == lock["packages"][f"node_modules/{name}"]["version"], name
        for file, digest in entry["files"].items():
            data = (STATIC / "vendor" / name / file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest, f"{name}/{file} was edited"
        assert "LICENSE" in entry["files"], f"{name} ships without its licence"


def test_the_package_serves_its_own_folder() -> None:
    assert dashboard.STATIC_DIR == STATIC
