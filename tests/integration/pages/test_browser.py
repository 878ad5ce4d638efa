"""The pages as a person sees them: served, opened in a real headless chromium, checked on
the rendered DOM (verdict, one plot per drawn product, no console message at all — the
pages have no script, so any message is an error or a blocked fetch) and photographed
(screenshots under the test's temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forecastguard.report.check_page import pick_products
from tests.integration.pages.conftest import Site
from tests.support.browser import Browser, ensure_chromium

pytestmark = pytest.mark.slow

_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def browser() -> Browser:
    return Browser(ensure_chromium())


def _count(dom: str, css_class: str) -> int:
    return len(re.findall(rf'<figure class="plot {css_class}">\s*<svg', dom))


def test_a_checks_report_renders_its_verdict_and_one_plot_per_product(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    result = site.second
    url = f"{site.url}checks/{result.check_id}"
    page = browser.load(url)
    verdict = "HEALTHY" if result.healthy else "UNHEALTHY"
    assert re.search(rf'id="verdict">{verdict}<', page.dom)
    assert not result.healthy  # a fifth of the products sell 1.6 times more
    drawn = pick_products(result.products)
    drifted = [p for p, why in drawn if why == "drifted"]
    assert drifted, "the drifted products are drawn"
    panels = re.findall(r'<section class="panel" data-product="([^"]+)"', page.dom)
    assert panels == [p for p, _ in drawn]
    assert _count(page.dom, "product-plot") == len(drawn)
    assert _count(page.dom, "product-errors") == len(drawn)
    assert _count(page.dom, "summary-plot") == 2
    for reason in result.reasons:
        assert reason.split(" (")[0] in page.dom
    assert page.console == [], page.console
    assert not _EXTERNAL.search(page.dom), "the page refers to something outside itself"
    shot = browser.screenshot(url, tmp_path / "check-report.png")
    assert shot.stat().st_size > 20_000


def test_the_history_shows_both_checks_trends_and_links(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    page = browser.load(site.url)
    newest = "HEALTHY" if site.second.healthy else "UNHEALTHY"
    assert re.search(rf'id="verdict">{newest}<', page.dom)
    assert len(re.findall(r'<figure class="plot trend-plot">\s*<svg', page.dom)) == 4
    links = re.findall(r'href="/checks/([^"]+)" class="report-link"', page.dom)
    assert links == [site.second.check_id, site.first.check_id]
    assert "retrain finished" in page.dom and "promoted m2" in page.dom
    assert page.console == [], page.console
    browser.screenshot(site.url, tmp_path / "history.png")


def test_a_products_history_marks_the_windows_it_drifted_in(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    product = site.second.drifted_products()[0]
    url = f"{site.url}products/{product}"
    page = browser.load(url)
    assert f"<h1>Product {product}</h1>" in page.dom
    assert len(re.findall(r'<figure class="plot product-history">\s*<svg', page.dom)) == 1
    assert page.dom.count(">drifted</text>") >= 1  # the shaded windows' labels
    assert page.dom.count(">DRIFT<") >= 1
    assert page.console == [], page.console
    browser.screenshot(url, tmp_path / "product.png", height=1200)


def test_the_report_file_opens_offline(site: Site, browser: Browser) -> None:
    path = site.artifacts / "health" / site.second.check_id / "report.html"
    page = browser.load(path.as_uri())
    assert 'id="verdict">' in page.dom
    assert page.console == [], page.console


def test_the_console_check_catches_a_blocked_fetch(browser: Browser, tmp_path: Path) -> None:
    """The detector itself: a page that tries to load an outside image under a strict
    policy produces a console line, so the assertions above can fail."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><head><meta http-equiv="Content-Security-Policy" content="default-src '
        '\'none\'"></head><body><img src="https://cdn.example.invalid/x.png"></body></html>'
    )
    assert browser.load(bad.as_uri()).console
