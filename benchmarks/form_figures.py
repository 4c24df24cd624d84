"""Figures of the clinician form in headless Chromium (issue 19 item 4): page heights of the
form for an SSc work-up and of the results at 1280 and 390 px, the printed report's A4 page
count, the fields shown for an SSc work-up, and the Tab presses from a fresh page to Evaluate.

    .venv/bin/python -m benchmarks.form_figures [--shots DIR]

The patient is ASTIS's clear candidate (tests/astis_patients.py), typed into the page's own
fields (folded or not), so the figures are those of the page a clinician gets.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from tests.astis_patients import ASTIS_CANDIDATE
from tests.e2e.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.helpers import eligo_process

WIDTHS = (1280, 390)
_SET_VALUES = """patient => {
  for (const [key, value] of Object.entries(patient)) {
    const radios = document.querySelectorAll(`input[type=radio][name="${key}"]`);
    if (radios.length) {
      for (const r of radios) r.checked = r.value === value;
      continue;
    }
    const field = document.querySelector(`[name="${key}"]`);
    if (field) field.value = value;
  }
}"""


def pdf_pages(pdf: bytes) -> int:
    """Pages of a PDF Chromium printed: its page objects (`/Type /Page`, not `/Pages`)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def posted(patient: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in patient.items():
        if isinstance(value, bool):
            out[key] = "yes" if value else "no"
        elif isinstance(value, dict):
            out[key], out[f"{key}.unit"] = str(value["value"]), str(value["unit"])
        else:
            out[key] = str(value)
    return out


def height(page: Page) -> int:
    return int(page.evaluate("() => document.documentElement.scrollHeight"))


def fields_shown(page: Page) -> int:
    """Distinct patient values the form asks (radio groups once, unit selects not counted),
    whether in view or in a folded group; hidden inputs are not fields."""
    names = page.evaluate(
        """() => [...document.querySelectorAll('form.patient [name]')]
             .filter(e => e.type !== 'hidden' && !e.name.endsWith('.unit') && !e.disabled)
             .filter(e => !e.closest('[hidden]'))
             .map(e => e.name)"""
    )
    return len(set(names))


def tabs_to_evaluate(page: Page, limit: int = 400) -> int:
    for count in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement?.textContent?.trim() === 'Evaluate'"):
            return count
    return -1


def measure(base: str, shots: Path | None) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(f"{base}/?disease=ssc")
            figures[f"form_px_{width}"] = height(page)
            if width == WIDTHS[0]:
                figures["fields_ssc"] = fields_shown(page)
                figures["tabs_to_evaluate"] = tabs_to_evaluate(page)
            if shots:
                page.screenshot(path=shots / f"form-{width}.png", full_page=True)
            page.evaluate(_SET_VALUES, posted(ASTIS_CANDIDATE))
            page.get_by_role("button", name="Evaluate").click()
            page.wait_for_url("**/?evaluation=*")
            figures[f"results_px_{width}"] = height(page)
            if shots:
                page.screenshot(path=shots / f"results-{width}.png", full_page=True)
            evaluation = page.url.rsplit("=", 1)[1]
            page.goto(f"{base}/report/{evaluation}")
            if shots:
                page.screenshot(path=shots / f"report-{width}.png", full_page=True)
            if width == WIDTHS[0]:
                page.emulate_media(media="print")
                pdf = page.pdf(format="A4")
                figures["report_pages"] = pdf_pages(pdf)
                if shots:
                    (shots / "report.pdf").write_bytes(pdf)
            page.close()
        browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, help="save screenshots and the PDF here")
    args = parser.parse_args()
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    with eligo_process() as server:
        print(json.dumps(measure(server.base, args.shots), indent=1))


if __name__ == "__main__":
    main()
