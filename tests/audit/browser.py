"""The audit's report.html in headless Chromium (Debian's, through Playwright, set up as tests/monitoring/browser.py
does): what a reader sees, measured, and optionally a full-page screenshot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from tests.monitoring.browser import CHROMIUM_FLAGS, chromium

READ = """() => ({
  images: [...document.querySelectorAll('img')].map(i => ({alt: i.alt, naturalWidth: i.naturalWidth,
    naturalHeight: i.naturalHeight, width: i.getBoundingClientRect().width,
    height: i.getBoundingClientRect().height})),
  subgroups: [...document.querySelectorAll('#subgroups tr')].slice(1).map(r => r.cells[0].innerText),
  plotted: [...document.querySelectorAll('#subgroups tr.plotted')].map(r => r.cells[0].innerText),
  counterfactual_groups: document.querySelectorAll('#counterfactual-groups tr').length - 1,
  pairs: document.querySelectorAll('#pairs tr').length - 1,
  flagged: [...document.querySelectorAll('#pairs tr.significant')].map(r => [...r.cells].map(c => c.innerText)),
  p_cells: [...document.querySelectorAll('#pairs tr')].slice(1).flatMap(r => [r.cells[6].innerText,
    r.cells[7].innerText]),
  pairs_note: (document.querySelector('#pairs-note') || {}).innerText || '',
  status: document.querySelector('#status').innerText,
  title: document.title,
  body: document.body.innerText,
})"""


def audit_page(page_file: Path, screenshot: Optional[Path] = None) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(Path(page_file).resolve().as_uri())
            page.wait_for_load_state("load")
            result = page.evaluate(READ)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    return result
