"""The HTML report opened in Chromium: every figure loads, the sections are there in order,
and the page stays readable (no section runs to thousands of pixels)."""

from __future__ import annotations

import time
import warnings

import pytest

pytest.importorskip("selenium", reason="browser UI tests need the ui extra: make test-ui")

from selenium.webdriver.common.by import By  # noqa: E402

SECTIONS = ("failure-note", "recommendation", "overview", "summary", "figures", "stages", "frontier",
            "significance", "failures", "manifest")


def test_report_in_chromium(browser, tmp_path, artifacts, synthetic):
    run = synthetic.make_run()
    run.manifest["pipelines"] = [{"id": "pipe-1", "name": "adi",
                                  "retrieval_config": {"ltr_model": {"weights": [0.1] * 200}}}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = run.report(tmp_path / "report.html")
    browser.get(path.as_uri())
    time.sleep(1)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert len(images) >= 4 and all(ok for _alt, ok in images), images
    order = [browser.execute_script(f"const e = document.getElementById('{s}'); "
                                    "return e ? e.getBoundingClientRect().top + window.scrollY : null") for s in SECTIONS]
    assert None not in order, dict(zip(SECTIONS, order))
    assert order == sorted(order)
    assert "Ship " in browser.find_element(By.ID, "recommendation").text
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    manifest = browser.find_element(By.ID, "manifest").size["height"]
    assert manifest < 2000, f"the manifest section is {manifest} px tall when opened"
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1366, min(height + 50, 12000))
    browser.save_screenshot(str(artifacts / "report.png"))
    browser.set_window_size(1366, 900)
    assert browser.execute_script("return document.body.scrollWidth") <= 1366
