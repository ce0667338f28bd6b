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


def _chrome(tmp_path, width=1280, height=900):
    """A headless Chromium driver at a desktop window size (the caller quits it)."""
    browser, driver_path = _need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given: selenium must never try to download one.
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def test_report_renders_in_chromium(tmp_path):
    driver = _chrome(tmp_path)
    report = make_report(tmp_path)
    write_index(tmp_path)
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


# --------------------------------------------------------------------------- layout


def efficiency_like_table(rows=14):
    """A wide results table as the sampler study writes it: constant bookkeeping columns
    (``kind``, ``num_draws``, ``nuts_draws``, ``version``) beside the measured ones."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "kind": "efficiency", "num_draws": 2000, "nuts_draws": 250, "nuts_chain_counts": "[4]",
        "version": 3,
        "sampler": [f"lesample baoab ({'gaussian' if i % 2 else 'rademacher'} noise)"
                    for i in range(rows)],
        "chains": np.where(np.arange(rows) < rows // 2, 4, 64), "draws": 2000,
        "ess_min": rng.uniform(8, 9700, rows), "tail_ess_min": rng.uniform(30, 19000, rows),
        "seconds": rng.uniform(0.03, 3.5, rows), "ess_per_second": rng.uniform(40, 44000, rows),
        "ess_per_grad": rng.uniform(0.001, 0.08, rows),
        "cov_rel_bias": -rng.uniform(4e-4, 0.12, rows), "mean_err_sd": rng.uniform(0.02, 0.4, rows),
        "family_best": np.arange(rows) % 3 == 0,
        "best_ours_over_this": rng.uniform(1, 90, rows),
    })


def test_table_states_constant_columns_in_its_caption():
    from lesample.report import html_table

    html = html_table(efficiency_like_table(), caption="ESS/s")
    heads = re.findall(r"<th scope=\"col\"[^>]*>(.*?)</th>", html)
    names = [h.replace("<wbr>", "") for h in heads]
    for constant in ("kind", "num_draws", "nuts_draws", "nuts_chain_counts", "version", "draws"):
        assert constant not in names
    assert "ess_per_second" in names and "sampler" in names and "chains" in names
    caption = re.search(r"<figcaption>(.*?)</figcaption>", html, re.S).group(1)
    assert caption.startswith('ESS/s <span class="same">In every row: ')
    for text in ("<code>kind</code> efficiency", "<code>num_draws</code> 2000",
                 "<code>version</code> 3", "<code>nuts_chain_counts</code> [4]"):
        assert text in caption
    # One row: every column holds one value, nothing is folded; and the option turns it off.
    one = html_table(efficiency_like_table().iloc[:1])
    assert "In every row" not in one and "<th" in one and ">kind</th>" in one
    assert ">kind</th>" in html_table(efficiency_like_table(), fold_constants=False)


def test_one_number_format_per_column():
    from lesample.report import column_format, html_table

    mixed = [0.0161, 1.69112, 0.5, np.nan]  # the k-means table's std beside its energies
    fmt = column_format(mixed)
    texts = [fmt(v) for v in mixed[:3]]
    assert "e" not in "".join(texts)
    assert len({len(t.split(".")[1]) for t in texts}) == 1  # the same decimals throughout
    assert all(abs(float(t) - v) <= 0.5 * 10.0 ** -len(t.split(".")[1])
               for t, v in zip(texts, mixed, strict=False))
    # Spanning 1e-5 to 2: one scientific format for the whole column, none rounded to 0.
    wide = [1.5e-5, 2.0, 0.3]
    assert [column_format(wide)(v) for v in wide] == ["1.500e-05", "2.000e+00", "3.000e-01"]
    assert column_format([20.0, 0.5])(20.0) == "20.0"  # trailing zeros every value shares go
    assert column_format([3.0, 7.0])(3.0) == "3" and column_format([np.nan])(np.nan) == "–"
    # In a rendered table: every cell of a float column has the same number of decimals.
    html = html_table(efficiency_like_table())
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    cells = [c for c in (re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows) if c]
    assert len(cells) == 14
    for column in zip(*cells, strict=True):
        numeric = [c for c in column if re.fullmatch(r"-?[0-9.]+(e[-+][0-9]+)?", c)]
        if numeric and any("." in c for c in numeric):
            decimals = {len(c.split("e")[0].split(".")[1]) if "." in c else 0 for c in numeric}
            scientific = {"e" in c for c in numeric}
            assert len(decimals) == 1 and len(scientific) == 1, column


def test_index_names_the_mode_and_the_headlines(tmp_path):
    for name, mode in (("samplers", "quick"), ("samplers-full", "full"), ("kmeans", "quick")):
        rep = Report("Sampler study" if name.startswith("samplers") else "k-means",
                     intro="Which sampler?", details={"mode": mode})
        rep.add_findings([f"{mode} finding {i}" for i in range(5)])
        rep.write(tmp_path / name / "report.html")
    Report("Explicit", headlines=["**One** line"]).add_findings(["a", "b"]).write(
        tmp_path / "other" / "report.html")
    info = read_report_info(tmp_path / "samplers-full" / "report.html")
    assert info.mode == "full"
    assert info.headlines == ("full finding 0", "full finding 1", "full finding 2")
    assert read_report_info(tmp_path / "other" / "report.html").headlines == ("**One** line",)
    entries = discover_reports(tmp_path, order=("samplers", "kmeans"))
    assert [e.href.split("/")[0] for e in entries] == ["samplers", "samplers-full", "kmeans",
                                                      "other"]
    html = write_index(tmp_path, entries).read_text()
    items = re.findall(r'<ul class="studies">(.*)</ul>', html, re.S)[0].split("\n<li>")[1:]
    quick, full = items[0], items[1]
    assert '<span class="mode quick">quick</span>' in quick
    assert '<span class="mode full">full</span>' in full
    assert "<li>quick finding 0</li>" in quick and "quick finding 3" not in quick
    assert "<li>full finding 2</li>" in full
    assert "<li><strong>One</strong> line</li>" in html


def test_index_reads_mode_and_headlines_of_pages_written_before_it_stored_them(tmp_path):
    rep = Report("Old", details={"mode": "full"})
    rep.add_findings(["**a** `x` & y", "b", "c", "d"])
    old = re.sub(r'<meta name="lesample:(mode|headline)"[^>]*>', "", rep.to_html())
    assert "lesample:mode" not in old
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.html").write_text(old)
    info = read_report_info(tmp_path / "old" / "report.html")
    assert info.mode == "full" and info.headlines == ("**a** `x` & y", "b", "c")


def test_layout_problems_finds_overlaps_and_covered_lines():
    from lesample.report import layout_problems

    # A log axis over 1..1.12 labels its minor ticks on top of each other (the old k-means
    # figure).
    fig, ax = subplots(figsize=(3, 2))
    ax.plot([1.0, 1.12], [0, 1])
    ax.set_xscale("log")
    problems = layout_problems(fig)
    assert problems and all("x tick labels" in p for p in problems)
    # A legend drawn over the lines.
    fig, ax = subplots(figsize=(3, 2))
    x = np.linspace(0, 1, 50)
    for k in range(6):
        ax.plot(x, np.full_like(x, k), label=f"series number {k}")
    ax.legend(loc="center")
    assert layout_problems(fig) == ["axes 1: the legend covers plotted lines"]
    fig, ax = subplots(figsize=(4, 3))
    ax.plot(x, x, label="line")
    ax.legend(loc="upper left")
    assert layout_problems(fig) == []


def test_robust_boxplot_keeps_boxes_readable_and_outliers_visible():
    from lesample.report import robust_boxplot

    rng = np.random.default_rng(1)
    groups = [1 + 0.02 * rng.random(10), 1.1 + 0.05 * rng.random(10)]
    groups[0][3] = 4.13  # one far outlier
    fig, ax = subplots(figsize=(4, 2))
    clipped = robust_boxplot(ax, groups, ["a", "b"])
    assert clipped == [4.13]
    lo, hi = ax.get_xlim()
    assert hi < 1.3 and lo > 0.95  # the axis is set by the boxes, not by the outlier
    assert any(t.get_text() == "4.13" for t in ax.texts)  # ... which is still shown
    with pytest.raises(ValueError, match="labels"):
        robust_boxplot(ax, groups, ["a"])


def kmeans_results():
    rng = np.random.default_rng(2)
    labels = ["ours (random)", "ours (k-means++)", "KMeans (random)", "KMeans (k-means++)",
              "MiniBatch 1000 (random)", "MiniBatch 1000 (k-means++)"]
    rows = []
    for inst, spread in (("unequal", 0.2), ("pair", 0.05), ("groups", 1.0)):
        for label in labels:
            for trial in range(10):
                rows.append(dict(instance=inst, label=label, trial=trial,
                                 energy=2.0 * (1 + spread * rng.random())))
    results = pd.DataFrame(rows)
    results.loc[(results.instance == "unequal") & (results.trial == 0), "energy"] = 2.0 * 4.13
    refs = pd.DataFrame({"instance": ["unequal", "pair", "groups"], "energy": 2.0})
    return results, refs


def test_kmeans_figure_is_legible():
    from lesample.report import layout_problems
    from studies.kmeans.report import _figure

    results, refs = kmeans_results()
    fig = _figure(results, refs)
    assert layout_problems(fig) == []
    unequal = fig.axes[0]
    assert unequal.get_xlim()[1] < 2  # the 4.13 outlier does not set the range ...
    assert any(t.get_text().endswith("4.13") for t in unequal.texts)  # ... and is marked


def sampler_summary():
    """A summary table like ``studies.samplers.report.summarise``'s, for one target."""
    rows = []
    Ls = [5, 10, 20, 50, 100, 200]
    for sampler, h, est, scale in (("ula", 0.1, "exponential", 1.0), ("mala", 0.1, "last", 0.8),
                                   ("baoab", 0.6, "uniform", 0.3), ("hj", 0.15, "last", 0.5)):
        for L in Ls:
            err = scale * 0.6 * (5 / L) ** 0.7
            rows.append(dict(target="gauss-d100", sampler=sampler, step_size=h, friction=np.nan,
                             estimator=est, L=L, seeds=2, grad_rel_error=err,
                             err_ci95=0.3 * err, w2=0.3 * (5 / L) ** 0.5 + 0.03,
                             w2_floor=0.03, rhat=1.01, ess_per_grad=0.2, divergences=0,
                             grads_per_chain=L, seconds=0.01))
    return pd.DataFrame(rows)


def test_sampler_figure_draws_its_error_bars_and_keeps_the_legend_off_the_curves():
    from matplotlib.container import ErrorbarContainer

    from lesample.report import layout_problems
    from studies.samplers.report import error_figure

    summary = sampler_summary()
    fig = error_figure(summary, "gauss-d100")
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == summary.sampler.nunique()  # the 95% intervals the caption promises
    assert layout_problems(fig) == []
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1


def test_reports_fit_the_page_in_chromium(tmp_path):
    """At a desktop width no table is wider than its container (no sideways scrolling)."""
    summary = sampler_summary()
    rep = Report("Layout", details={"mode": "quick"})
    rep.add_table(efficiency_like_table(), caption="ESS/s on the Gaussian rho.")
    rep.add_table(summary.assign(target="gauss-d100-k100-g10-b10000"), caption="All settings.")
    rep.add_table(pd.DataFrame({
        "target": ["dwell-g4-b4", "gauss-d100-k100-g10-b10000"],
        "reference_error": ["0.619 ± 1.8", "0.244 ± 0.063"],
        "best_setting": ["baoab h=0.457, c=0.3, exponential", "baoab h=0.601, c=0.3, uniform"],
        "best_error": ["0.141 ± 0.31", "0.033 ± 0.02"], "ratio_to_reference": [0.2278, 0.1357],
        "verdict": ["not resolved", "meets"], "resolved": [False, True]}), caption="L = 20.")
    path = rep.write(tmp_path / "layout" / "report.html")
    write_index(tmp_path)
    driver = _chrome(tmp_path, width=1280)
    try:
        for page in (path, tmp_path / "index.html"):
            driver.get(page.resolve().as_uri())
            widths = driver.execute_script("""
                return Array.from(document.querySelectorAll('table')).map(t => [
                  t.getBoundingClientRect().width, t.scrollWidth,
                  t.parentElement.clientWidth]);""")
            too_wide = [w for w in widths if max(w[0], w[1]) > w[2] + 0.5]
            assert too_wide == [], (page.name, too_wide)
            page_width = driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert page_width[0] <= page_width[1], page.name
        assert len(widths) == 0  # the index has no table; the report's three were checked
    finally:
        driver.quit()


# --------------------------------------------------------------------------- verdicts


def deepnets_results(seeds, curves):
    """Per-epoch rows of the deep-nets study: ``curves`` maps an algorithm to its validation
    errors at effective epochs 1, 2, 3 (seed s adds 0.001 s)."""
    rows = []
    for algo, errors in curves.items():
        for seed in range(seeds):
            for epoch, err in enumerate(errors, start=1):
                rows.append(dict(model="lenet", algo=algo, seed=seed, epoch=epoch,
                                 effective_epochs=float(epoch), val_error=err + 0.001 * seed,
                                 train_loss=1.0 / epoch, train_seconds=1.0, eval_seconds=0.1,
                                 noise="rademacher"))
    return pd.DataFrame(rows)


def deepnets_findings(tmp_path, results):
    from studies.deepnets.report import write_report

    settings = dict(epochs=3, batch_size=32, drop_every=2)
    path = write_report(results, pd.DataFrame(), tmp_path, mode="quick", settings=settings,
                        dataset="digits", num_train=100)
    html = path.read_text()
    return re.findall(r"<li>(.*?)</li>", re.search(
        r'<section class="findings".*?</section>', html, re.S).group(0))


def test_deepnets_one_seed_gives_no_interval_and_no_verdict(tmp_path):
    # Entropy-SGD below SGD at every epoch: with one seed there is still no verdict.
    curves = {"entropy_sgd": [0.25, 0.2212, 0.2212], "sgd": [0.30, 0.26, 0.2250]}
    (line,) = deepnets_findings(tmp_path, deepnets_results(1, curves))
    assert "one seed: no interval" in line
    assert "agrees" not in line and "does not agree" not in line
    assert "± 0.00" not in line and "22.12%" in line


def test_deepnets_verdict_only_where_the_intervals_resolve_it(tmp_path):
    # Two seeds, errors 10 points apart with 0.1-point spread: resolved. Entropy-SGD reaches
    # SGD's final error at epoch 1 on both seeds, SGD at epoch 2.
    resolved = {"entropy_sgd": [0.15, 0.12, 0.10], "sgd": [0.30, 0.19, 0.20]}
    (line,) = deepnets_findings(tmp_path / "a", deepnets_results(2, resolved))
    assert "This agrees with the paper" in line
    # Errors 0.05 points apart with a 0.1-point spread between seeds: not resolved.
    close = {"entropy_sgd": [0.25, 0.1995, 0.1995], "sgd": [0.30, 0.19, 0.20]}
    (line,) = deepnets_findings(tmp_path / "b", deepnets_results(2, close))
    assert "No verdict" in line and "not resolved" in line and "agree" not in line
    worse = {"entropy_sgd": [0.35, 0.32, 0.30], "sgd": [0.30, 0.19, 0.20]}
    (line,) = deepnets_findings(tmp_path / "c", deepnets_results(2, worse))
    assert "This does not agree with" in line


def l20_summary(best_error, best_ci, ref_error, ref_ci, seeds=2):
    base = dict(target="gauss", friction=np.nan, L=20, seeds=seeds, divergences=0,
                grads_per_chain=20)
    return pd.DataFrame([
        dict(base, sampler="ula", step_size=0.1, estimator="exponential",
             grad_rel_error=ref_error, err_ci95=ref_ci),
        dict(base, sampler="baoab", step_size=0.6, estimator="uniform",
             grad_rel_error=best_error, err_ci95=best_ci),
    ])


def test_sampler_l20_verdict_only_where_the_intervals_resolve_it():
    from studies.samplers.report import l20_findings

    def finding(*args, **kw):
        (line,), table = l20_findings(l20_summary(*args, **kw))
        return line, table.verdict.iloc[0]

    # Ratio 0.4, but the bounds (0.05/0.30 = 0.17 to 0.15/0.20 = 0.75) straddle 0.5.
    line, verdict = finding(0.10, 0.05, 0.25, 0.05)
    assert verdict == "not resolved" and "meets" not in line and "misses" not in line
    assert "the 0.5x target is not resolved (95% intervals over 2 seeds)" in line
    # Bounds 0.04/0.55 to 0.06/0.45 = 0.13: wholly below 0.5.
    line, verdict = finding(0.05, 0.01, 0.50, 0.05)
    assert verdict == "meets" and "meets the 0.5x target" in line
    # Bounds 0.39/0.55 = 0.71 to 0.41/0.45: wholly above 0.5.
    line, verdict = finding(0.40, 0.01, 0.50, 0.05)
    assert verdict == "misses" and "misses the 0.5x target" in line
    # One seed: no interval, no verdict, whatever the ratio.
    line, verdict = finding(0.01, np.nan, 0.50, np.nan, seeds=1)
    assert verdict == "not resolved" and "one seed: no interval" in line and "meets" not in line


def test_intervals():
    from scipy import stats

    from lesample.report import (
        binomial_interval,
        decide,
        difference_interval,
        mean_interval,
        t_halfwidth,
    )

    assert np.isnan(t_halfwidth(1.0, 1))
    # t_{0.975, 1} = 12.706: the half-width of two values one apart (sd 1/sqrt 2).
    assert t_halfwidth(1 / np.sqrt(2), 2) == pytest.approx(12.7062 / 2, rel=1e-4)
    m = mean_interval([1.0, 2.0, np.nan])
    assert (m.estimate, m.n) == (1.5, 2) and m.hi - m.estimate == pytest.approx(6.3531, 1e-4)
    assert not mean_interval([3.0]).resolved and mean_interval([3.0]).estimate == 3.0
    # Welch with equal sizes and variances: dof 2(n-1), se sqrt(2 s^2 / n).
    d = difference_interval([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    assert d.estimate == -1.0
    assert d.hi + 1.0 == pytest.approx(stats.t.ppf(0.975, 4) * np.sqrt(2 / 3))
    assert not difference_interval([1.0], [1.0, 2.0]).resolved
    # Clopper-Pearson at k = 0 and k = n: closed forms 1 - (alpha/2)^(1/n) and its mirror.
    b = binomial_interval(0, 10)
    assert (b.lo, b.estimate) == (0.0, 0.0) and b.hi == pytest.approx(1 - 0.025 ** 0.1)
    assert binomial_interval(10, 10).lo == pytest.approx(0.025 ** 0.1)
    b = binomial_interval(6, 10)  # P(X >= 6 | lo) = P(X <= 6 | hi) = 2.5%
    assert stats.binom.sf(5, 10, b.lo) == pytest.approx(0.025)
    assert stats.binom.cdf(6, 10, b.hi) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="trials"):
        binomial_interval(3, 2)
    assert decide(0.1, 0.4, 0.5) == "below" and decide(0.6, 0.9, 0.5) == "above"
    assert decide(0.4, 0.6, 0.5) is None and decide(np.nan, np.nan, 0.5) is None


def test_self_tuned_runs_are_judged_against_their_hand_set_algorithm(tmp_path):
    from studies.deepnets.report import epochs_to_sgd, final_table, self_tuning_verdict

    sgd = [0.30, 0.19, 0.20]
    cases = {  # auto scope: reaches SGD's error at epoch 1 / 3 / never; the hand-set at 2
        "met": [0.15, 0.12, 0.10], "missed": [0.40, 0.30, 0.195], "never": [0.5, 0.45, 0.40]}
    for name, tuned in cases.items():
        results = deepnets_results(2, {"sgd": sgd, "hj": [0.25, 0.19, 0.18], "hj+auto": tuned})
        final = final_table(results)
        errors = results[results.epoch == 3]
        verdict, evidence = self_tuning_verdict(errors, epochs_to_sgd(results, final),
                                                "lenet", "hj+auto")
        assert verdict == {"never": "missed"}.get(name, name), (name, evidence)
    # the hand-set run reaches SGD's error on seed 0 only (0.200 <= 0.2005 < 0.201), the
    # tuned one never, and ends higher: missed; the same with neither reaching: no verdict
    for hand, verdict in (([0.25, 0.22, 0.200], "missed"), ([0.25, 0.22, 0.21], "not resolved")):
        results = deepnets_results(2, {"sgd": sgd, "hj": hand, "hj+auto": cases["never"]})
        hits = epochs_to_sgd(results, final_table(results))
        assert self_tuning_verdict(results[results.epoch == 3], hits, "lenet",
                                   "hj+auto")[0] == verdict
    # one seed: no interval, no verdict
    results = deepnets_results(1, {"sgd": sgd, "hj": [0.25, 0.19, 0.18],
                                   "hj+auto": cases["met"]})
    (*_, line) = deepnets_findings(tmp_path, results)
    assert "HJ, auto scope" in line and "not resolved" in line


def test_cells_with_other_budgets_are_cut_at_the_same_share_of_theirs():
    from studies.deepnets.report import reached

    def cell(algo, epochs, done):
        return pd.DataFrame(dict(model="lenet", algo=algo, seed=0, epoch=range(1, done + 1),
                                 epochs=epochs))

    # everything finished: nothing is cut, whatever the budgets
    full = pd.concat([cell("sgd", 4, 4), cell("hj+auto", 2, 2)])
    assert len(reached(full)) == 6
    # SGD stopped at half its budget: the self-tuned cell is cut to half of its own
    half = pd.concat([cell("sgd", 4, 2), cell("hj+auto", 2, 2)])
    assert reached(half).groupby("algo").epoch.max().to_dict() == {"hj+auto": 1, "sgd": 2}
