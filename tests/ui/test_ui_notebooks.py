"""Each shipped notebook run in a real JupyterLab in headless Chromium: it finishes without an
error, no output is taller than a sane bound, and the widgets answer their controls.

Screenshots (one per notebook, one per widget before/after) and the measured output heights
go to test-artifacts/ui/ (see conftest.ARTIFACTS).
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("selenium", reason="browser UI tests need the ui extra: make test-ui")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

#: The tallest output a cell may have, in CSS pixels at 1366 px wide (the dashboard is ~1,000).
MAX_OUTPUT_PX = 2000
RUN_TIMEOUT_S = 420

JS_PROMPTS = ("return Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))"
              ".map(e => e.textContent.trim())")
JS_HEIGHTS = ("return Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).map((c, i) => {"
              "const o = c.querySelector('.jp-OutputArea'); "
              "return [i, o ? Math.round(o.getBoundingClientRect().height) : 0]})")
JS_ERRORS = ("return Array.from(document.querySelectorAll("
             "'.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]'))"
             ".map(e => e.textContent).filter(t => t.includes('Traceback') || t.includes('Error:'))")
JS_BROKEN_IMAGES = ("return Array.from(arguments[0].querySelectorAll('img'))"
                    ".filter(i => i.offsetParent !== null && (!i.complete || i.naturalWidth === 0)).length")


def _wait(predicate, timeout: float, what: str, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_notebook(browser, lab, name: str, artifacts) -> dict:
    """Open ``name``, run all cells, wait for the last; returns {"seconds", "heights"}."""
    browser.get(lab.url(name))
    _wait(lambda: browser.execute_script(
        "return !!(window.jupyterapp && document.querySelector('.jp-NotebookPanel .jp-Notebook .jp-CodeCell'))"),
        90, "the notebook to open")
    _wait(lambda: browser.execute_script(
        "const s = document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-KernelStatus');"
        "return !!window.jupyterapp.shell.currentWidget && !!window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session && "
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel && "
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"),
        90, "the kernel")
    # drop the stored outputs so what we measure is what this run rendered
    browser.execute_script("return window.jupyterapp.commands.execute('editmenu:clear-all')")
    started = time.monotonic()
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def finished():
        prompts = browser.execute_script(JS_PROMPTS)
        return prompts and all(p.startswith("[") and "*" not in p and p != "[ ]:" for p in prompts)

    time.sleep(2)
    _wait(finished, RUN_TIMEOUT_S, f"{name} to run")
    seconds = time.monotonic() - started
    time.sleep(1.5)  # widgets render after the last execute_reply
    heights = browser.execute_script(JS_HEIGHTS)
    browser.save_screenshot(str(artifacts / f"{name.removesuffix('.ipynb')}.png"))
    return {"seconds": round(seconds, 1), "heights": heights, "errors": browser.execute_script(JS_ERRORS)}


def _record(artifacts, name: str, result: dict) -> None:
    path = artifacts / "heights.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = {"seconds": result["seconds"], "output_px": dict(result["heights"])}
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def _check(result: dict, name: str) -> None:
    assert not result["errors"], f"{name}: error output: {result['errors'][0][:500]}"
    tall = [(i, h) for i, h in result["heights"] if h > MAX_OUTPUT_PX]
    assert not tall, f"{name}: output taller than {MAX_OUTPUT_PX} px in code cell(s) {tall}"


def _widget_output(browser, text: str):
    """The output area (a widget view) whose text holds ``text``."""
    for el in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-vbox"):
        if text in el.text:
            return el
    raise AssertionError(f"no widget showing {text!r}")


def _select(container, label: str):
    """The <select> of the ipywidgets control whose description is ``label``."""
    for box in container.find_elements(By.CSS_SELECTOR, ".widget-dropdown, .widget-select-multiple"):
        if box.find_element(By.CSS_SELECTOR, "label").text.strip() == label:
            return box.find_element(By.CSS_SELECTOR, "select")
    raise AssertionError(f"no control labelled {label!r}")


def _shot(browser, element, path) -> None:
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
    time.sleep(0.3)
    element.screenshot(str(path))


def test_01_explorer_and_records(browser, lab, artifacts):
    result = run_notebook(browser, lab, "01_exploring_pipelines.ipynb", artifacts)
    _record(artifacts, "01", result)
    _check(result, "01")
    page = browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
    assert "Pipeline adi" in page and "5 results" in page  # the record card and the retrieve table
    explorer = _widget_output(browser, "refresh")
    _shot(browser, explorer, artifacts / "01-explorer.png")
    before = explorer.text
    tabs = explorer.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab")
    jobs = next(t for t in tabs if t.text.strip() == "jobs")
    jobs.click()
    _wait(lambda: "completed" in explorer.text and explorer.text != before, 20, "the jobs tab")
    _shot(browser, explorer, artifacts / "01-explorer-jobs.png")
    assert "AuthenticationError" not in explorer.text


def test_02_dashboard_and_inspector(browser, lab, artifacts):
    result = run_notebook(browser, lab, "02_benchmarking_modes_and_top_k.ipynb", artifacts)
    _record(artifacts, "02", result)
    _check(result, "02")
    page = browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
    assert "Ship " in page and "BenchmarkRun adi" in page

    dash = _widget_output(browser, "Ctrl/⌘-click")
    _shot(browser, dash, artifacts / "02-dashboard.png")
    assert "Ship " in dash.text and browser.execute_script(JS_BROKEN_IMAGES, dash) == 0
    table_before = dash.text
    Select(_select(dash, "metric")).select_by_visible_text("recall")
    _wait(lambda: "recall@10" in dash.text and dash.text != table_before, 60, "the dashboard to follow the metric")
    modes = Select(_select(dash, "modes"))
    modes.deselect_all()
    _wait(lambda: "select at least one mode" in dash.text, 30, "the empty-selection message")
    assert browser.execute_script(JS_BROKEN_IMAGES, dash) == 0  # the chart is hidden, not broken
    _shot(browser, dash, artifacts / "02-dashboard-empty.png")
    modes.select_by_visible_text("fast")
    _wait(lambda: "Ship fast" in dash.text, 60, "the recommendation for fast alone")
    _shot(browser, dash, artifacts / "02-dashboard-fast.png")
    width = browser.execute_script("return arguments[0].scrollWidth", dash)
    assert width <= 1366, f"the dashboard is {width} px wide"

    inspector = _widget_output(browser, "found ")
    first = inspector.text
    query = Select(_select(inspector, "query"))
    query.select_by_index(3)
    _wait(lambda: inspector.text != first, 30, "the inspector to follow the query")
    assert "found " in inspector.text and "relevant" in inspector.text
    _shot(browser, inspector, artifacts / "02-inspector.png")


def test_03_compare_and_report(browser, lab, artifacts):
    result = run_notebook(browser, lab, "03_comparing_and_reporting.ipynb", artifacts)
    _record(artifacts, "03", result)
    _check(result, "03")
    page = browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
    assert "adi-convex" in page and "adi-rrf" in page and "Ship " in page
    assert "-4" not in page.split("Ship ")[0][-40:]  # names, not UUIDs, in the recommendation


def test_04_simulated_queries_and_the_judging_widget(browser, lab, artifacts):
    result = run_notebook(browser, lab, "04_your_own_documents.ipynb", artifacts)
    _record(artifacts, "04", result)
    _check(result, "04")
    page = browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
    assert "pooled documents judged" in page and "same text as the source: True" in page
    judge = browser.find_element(By.CSS_SELECTOR, ".le-judge")
    _shot(browser, judge, artifacts / "04-judge-done.png")
    done = judge.text
    undo = next(b for b in judge.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "undo")
    undo.click()  # the last grade is taken back: the widget shows that document again
    _wait(lambda: judge.text != done, 30, "the judging widget to follow undo")
    _shot(browser, judge, artifacts / "04-judge-undone.png")
    again = judge.text
    grade = next(b for b in judge.find_elements(By.CSS_SELECTOR, "button") if b.text.strip().startswith("0 "))
    grade.click()  # judged again: back to done
    _wait(lambda: judge.text != again, 30, "the judging widget to follow a grade")
