"""Open a local HTML file in headless Chromium (Debian's, driven by Playwright) and read what it rendered."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Chromium is not installed: run scripts/setup.sh (Debian package chromium)")
    return path


def rendered(page_file: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(Path(page_file).resolve().as_uri())
            page.wait_for_load_state("load")
            result = {
                "title": page.title(),
                "status": page.inner_text("#status"),
                "images": page.eval_on_selector_all("img", "imgs => imgs.length"),
                "image_widths": page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)"),
                "rows": page.eval_on_selector_all("#checks tr", "rows => rows.length"),
                "flagged_rows": page.eval_on_selector_all("#checks tr.flagged", "rows => rows.length"),
                "errors": errors,
            }
        finally:
            browser.close()
    assert not result["errors"], result["errors"]
    return result
