"""The web inspector in a real browser: Debian's chromium driven by Playwright against a live
uvicorn server; the page's prediction and gate cells are checked against the JSON endpoint,
and a screenshot is taken (also written to /tmp/serve-screenshot.png to look at)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (Debian's chromium package)"
)


@pytest.fixture
def page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        outside: list[str] = []
        ctx.on("request", lambda r: r.url.startswith("http://127.0.0.1") or outside.append(r.url))
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        ctx.close()
        assert not errors, errors  # no JavaScript error
        assert not outside, outside  # nothing fetched from anywhere but the server


def test_the_page_shows_the_prediction_and_the_gates_of_the_json_endpoint(
    page, live_server, tmp_path
):
    text = "good fine movie"
    want = httpx.post(f"{live_server}/v1/sentiment/inspect", json={"text": text}).json()
    page.goto(live_server + "/")
    page.wait_for_selector("#run option[value=sentiment]", state="attached")
    page.select_option("#run", "sentiment")
    page.fill("#text", text)
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")
    assert page.text_content("#prediction-label") == want["prediction"]["label"]
    heads = page.eval_on_selector_all("#gates thead th", "els => els.map(e => e.textContent)")
    assert heads[1:] == want["steps"]  # the first spans the unit and gate columns
    cells = page.eval_on_selector_all(
        "#gates td[data-gate]",
        "els => els.map(e => [+e.dataset.unit, e.dataset.gate, +e.dataset.step, "
        "+e.dataset.value, e.title])",
    )
    assert len(cells) == len(want["units"]) * 4 * len(want["steps"])
    by_unit = {u["unit"]: u for u in want["units"]}
    for unit, gate, step, value, title in cells:
        assert value == pytest.approx(by_unit[unit][gate][step])
        assert f"{value:.4f}" in title and want["steps"][step] in title  # the hover text
    att = page.eval_on_selector_all(
        "#gates td[data-row=attention]", "els => els.map(e => +e.dataset.value)"
    )
    assert att == pytest.approx(want["attention"])
    shot = page.screenshot(path=str(tmp_path / "inspector.png"), full_page=True)
    assert len(shot) > 10_000
    shutil.copy(tmp_path / "inspector.png", "/tmp/serve-screenshot.png")


def test_the_page_streams_generated_text_for_a_language_model(page, live_server):
    page.goto(live_server + "/")
    page.wait_for_selector("#run option[value=lm]", state="attached")
    page.select_option("#run", "lm")
    assert page.is_visible("#generate")
    page.fill("#text", "the ")
    page.click("#generate")
    page.wait_for_function("document.getElementById('generated').textContent.length >= 200")
    assert page.is_hidden("#error")
