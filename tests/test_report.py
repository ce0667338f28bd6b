"""Report pages and the index: self-contained HTML with escaped tables, embedded figures and
findings; rendered in headless Chromium to check that it displays without console errors."""

import base64
import os
import re
import shutil
import tempfile

import numpy as np
import pandas as pd
import pytest

from lesample.report import (
    Report,
    discover_reports,
    format_number,
    markdown,
    read_report_info,
    subplots,
    write_index,
)


def make_report(tmp_path, name="samplers"):
    df = pd.DataFrame({
        "sampler": ["ula", "<mala>", "baoab & co"],
        "L": [5, 20, 100],
        "error": [0.123456, 1.5e-5, np.nan],
        "wall_s": [1234567.8, 2.5, 0.5],
    })
    fig, ax = subplots(figsize=(4, 3))
    ax.loglog(df["L"], [1, 0.1, 0.01], marker="o")
    ax.set_xlabel("L")
    rep = Report(
        "Sampler study",
        intro="How well do *inner-loop* samplers estimate `grad f_gamma`? A second sentence.",
        details={"mode": "quick", "cells": 3},
    )
    rep.add_findings(["BAOAB needs **5x** fewer gradients than ULA.", "MALA is <unbiased>."])
    rep.add_heading("Gradient error")
    rep.add_text("Paragraph one.\n\n- item a\n- item b\n\nSee [the data](results.csv).")
    rep.add_table(df, caption="Relative error by sampler", float_format={"error": ".2e"})
    rep.add_heading("Against L")
    rep.add_figure(fig, caption="Error against L")
    rep.add_heading("Raw")
    rep.add_table(df.set_index("sampler"), caption="Indexed")
    path = rep.write(tmp_path / name / "report.html")
    return path


def test_report_page(tmp_path):
    path = make_report(tmp_path)
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # Self-contained: no network reference of any kind, no script.
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link rel=\"stylesheet\"" not in html
    # Findings, stated in words, escaped.
    assert 'class="findings"' in html
    assert "<strong>5x</strong>" in html and "MALA is &lt;unbiased&gt;." in html
    # Tables: escaped cells, numbered captions, formatted numbers, index shown when named.
    assert html.count("<table>") == 2
    assert "&lt;mala&gt;" in html and "baoab &amp; co" in html and "<mala>" not in html
    assert "Table 1.</strong> Relative error by sampler" in html
    assert "1.23e-01" in html and "1.50e-05" in html  # per-column float format
    assert "1.235e+06" in html  # default: 4 significant digits, scientific when large
    assert '<th scope="col">sampler</th>' in html
    # The figure: a decodable PNG in a data URI.
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == 1
    assert base64.b64decode(imgs[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "Figure 1.</strong> Error against L" in html
    # Contents list from the level-2 headings; Markdown subset rendered.
    assert '<a href="#gradient-error">' in html
    assert "<ul><li>item a</li><li>item b</li></ul>" in html
    assert '<a href="results.csv">the data</a>' in html
    assert read_report_info(path)[:2] == (
        "Sampler study",
        "How well do inner-loop samplers estimate grad f_gamma?",
    )


def test_format_number():
    cases = {3: "3", 20.0: "20", 0.1234567: "0.1235", 1.5e-5: "1.500e-05",
             2.5e7: "25000000", 2.5e7 + 0.5: "2.500e+07", float("nan"): "–",
             float("inf"): "∞", np.int64(7): "7", True: "True"}
    for x, s in cases.items():
        assert format_number(x) == s, x


def test_markdown_escapes_html():
    out = markdown("# Title\n\n<script>alert(1)</script> and `a<b`")
    assert out.startswith("<h2>Title</h2>")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<code>a&lt;b</code>" in out


def test_index_links_every_report(tmp_path):
    make_report(tmp_path, "samplers")
    make_report(tmp_path, "kmeans")
    (tmp_path / "stray").mkdir()  # a directory without a report is not listed
    entries = discover_reports(tmp_path, order=("samplers", "kmeans"))
    assert [e.href for e in entries] == ["samplers/report.html", "kmeans/report.html"]
    assert entries[0].title == "Sampler study" and entries[0].generated
    path = write_index(tmp_path)
    html = path.read_text()
    assert path == tmp_path / "index.html"
    assert '<a href="samplers/report.html">' in html and '<a href="kmeans/report.html">' in html
    assert "http://" not in html and "https://" not in html
    # Explicit entries: (title, href, summary); escaped.
    html = write_index(tmp_path, [("A <b>", "a/report.html", "one & two")]).read_text()
    assert "A &lt;b&gt;" in html and "one &amp; two" in html


# --------------------------------------------------------------------------- in a browser


def _chromium():
    """(browser, driver) paths, or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    return (browser, driver) if browser and driver else None


def _need_chromium():
    """Skip without Chromium, except on CI, which installs it: there it is a failure."""
    missing = None
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "selenium is not installed (pip install -e '.[test]')"
    paths = _chromium()
    if missing is None and paths is None:
        missing = "chromium/chromedriver not found (apt-get install chromium chromium-driver)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    return paths


def test_missing_chromium_skips_locally_and_fails_on_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        _need_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        _need_chromium()


def test_report_renders_in_chromium(tmp_path):
    browser, driver_path = _need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    report = make_report(tmp_path)
    write_index(tmp_path)

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions"):
        options.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given: selenium must never try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(report.resolve().as_uri())
        assert driver.title == "Sampler study"
        state = driver.execute_script("""
            const imgs = Array.from(document.images);
            return {
              tables: document.querySelectorAll('table').length,
              rows: document.querySelectorAll('table tbody tr').length,
              images: imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight,
                                     i.getBoundingClientRect().width]),
              findings: document.querySelectorAll('.findings li').length,
              resources: performance.getEntriesByType('resource').map(r => r.name),
            };
        """)
        assert state["tables"] == 2 and state["rows"] == 6
        assert state["findings"] == 2
        assert len(state["images"]) == 1
        complete, width, height, shown = state["images"][0]
        assert complete and width > 0 and height > 0 and shown > 0  # decoded and laid out
        assert state["resources"] == []  # nothing fetched besides the page itself
        # The index page too, and its link leads to the report.
        driver.get((tmp_path / "index.html").resolve().as_uri())
        links = driver.execute_script(
            "return Array.from(document.links).map(a => a.getAttribute('href'))")
        assert links == ["samplers/report.html"]
        logs = driver.get_log("browser")
    finally:
        driver.quit()
    errors = [e for e in logs if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == [], errors
