"""obsctl serve in a real browser: Debian's chromium, headless, driven through Selenium.

A support agent's visit end to end (sign in, search a prefix, read the summary, follow an error
row to its trace, sign out) against a real ``obsctl serve`` process, and a hostile-log corpus
that must run no script and break no layout. Screenshots of each page are kept under
``var/artifacts/serve`` of the checkout (or ``$OBS_ARTIFACT_DIR``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.obsctl.logdata import (
    CID_A,
    CID_B,
    access,
    app_error,
    line,
    order_request,
)
from tests.obsctl.logdata import write as write_log
from tests.support import missing_backend, stop_process

pytestmark = pytest.mark.proc

TOKEN = "browser-test-token-0123456789"
HOSTILE_CID = "5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"
HOSTILE = [
    "<script>window.pwned = 1</script>",
    '<img src=x onerror="window.pwned = 2">',
    '"><svg onload="window.pwned = 3">',
    "javascript:window.pwned=4",
    "\u202etxt.exe",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "</td></tr></table></main><h1>broken layout</h1>",
]
ARTIFACTS = Path(os.environ.get("OBS_ARTIFACT_DIR") or Path(__file__).parents[2] / "var")
SHOTS = ARTIFACTS / "artifacts" / "serve" if "OBS_ARTIFACT_DIR" not in os.environ else ARTIFACTS


def _browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        missing_backend("chromium and chromedriver are not installed (Debian chromium-driver)")
    return chromium, driver


def _logs(root: Path) -> Path:
    hostile = [
        line(3.0 + i / 100, "WARNING", HOSTILE_CID, text, logger="shop.hostile", link=text)
        for i, text in enumerate(HOSTILE)
    ]
    hostile.append(
        app_error(
            3.2, HOSTILE_CID, 30101, 409, HOSTILE[0], HOSTILE[1], "Boom", traceback=HOSTILE[6]
        )
    )
    hostile.append(access(3.3, HOSTILE_CID, "GET", HOSTILE[3], "/x", 409, 3.0))
    crash = "1f2e3d4c5b6a79880796a5b4c3d2e1f0"
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3/dist-packages/starlette/routing.py", line 70, in app\n'
        "    response = await func(request)\n"
        '  File "/srv/shop/app.py", line 88, in receipt\n'
        "    vat = VAT_RATES[user.country]\n"
        "KeyError: 'CH'\n"
    )
    write_log(
        root / "shop.jsonl",
        *order_request(0.0),
        line(1.0, "INFO", CID_B, "charged", logger="shop.payments"),
        access(1.01, CID_B, "POST", "/charges", "/charges", 201, 4.2),
        line(2.0, "INFO", crash, "building receipt", logger="shop.receipts", order_id=40),
        app_error(
            2.02,
            crash,
            10500,
            500,
            "Unhandled KeyError",
            "Internal server error.",
            "KeyError",
            traceback=traceback,
        ),
        access(2.03, crash, "GET", "/orders/40/receipt", "/orders/{order_id}/receipt", 500, 22.9),
        *hostile,
    )
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _browser()
    logs = _logs(tmp_path_factory.mktemp("serve-logs"))
    env = {**os.environ, "OBSCTL_SERVE_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "obsctl.cli.entry", "serve", str(logs), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the URL comes before the server accepts anything
        found = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert found, f"serve printed {first!r}"
        yield found.group(0)
    finally:
        stop_process(process)
        assert process.stderr is not None
        with process.stderr:
            said = process.stderr.read()
        assert process.returncode == 0, said  # SIGTERM: a clean stop
        assert "stopped" in said


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _wait_for(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def test_a_support_agent_signs_in_finds_a_request_and_signs_out(server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server)
    _wait_for(browser, "#token")
    _shot(browser, "1-sign-in")
    browser.find_element(By.ID, "name").send_keys("Ana (support)")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "signin").click()
    _wait_for(browser, "#id")
    assert "Ana (support)" in _text(browser, ".who")
    assert "30101" in _text(browser, "table.errors")
    _shot(browser, "2-search")

    browser.find_element(By.ID, "id").send_keys(CID_A[:10])
    browser.find_element(By.ID, "find").click()
    _wait_for(browser, ".sentence")
    assert browser.current_url.endswith(f"/trace/{CID_A[:10]}")
    assert _text(browser, ".sentence") == (
        "Request POST /orders answered 409 Conflict after 12.3 ms: "
        "This product is out of stock. (code 30101)"
    )
    assert "This product is out of stock." in _text(browser, ".facts")
    assert f"Request ID: {CID_A}" in _text(browser, "#ticket")
    _shot(browser, "3-trace")

    browser.get(server + "errors")
    _wait_for(browser, "table.errors")
    _shot(browser, "4-errors")
    row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "table.errors tbody tr")
        if r.find_element(By.CSS_SELECTOR, "td.key").text == "10500"
    )
    row.find_element(By.CSS_SELECTOR, "a.sample").click()
    _wait_for(browser, ".sentence")
    assert "answered 500 Internal Server Error" in _text(browser, ".sentence")
    traceback = _text(browser, "pre.traceback")
    assert "… 1 framework frame …" in traceback and "VAT_RATES[user.country]" in traceback
    _shot(browser, "5-trace-500")

    browser.find_element(By.ID, "signout").click()
    _wait_for(browser, "#token")
    browser.get(server)
    _wait_for(browser, "#token")  # signed out: the sign-in page again
    assert "Find a request" not in browser.page_source


def test_hostile_log_lines_run_no_script_and_break_no_layout(server: str, browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get(server + "login")
    _wait_for(browser, "#token")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "signin").click()
    _wait_for(browser, "#id")
    browser.get(server + f"trace/{HOSTILE_CID}")
    _wait_for(browser, "table.timeline")
    time.sleep(0.3)  # an injected onerror/onload would have fired by now
    _shot(browser, "6-hostile")
    assert browser.execute_script("return window.pwned === undefined") is True
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert len(browser.find_elements(By.TAG_NAME, "h1")) == 1  # the log's <h1> stayed text
    assert len(browser.find_elements(By.TAG_NAME, "img")) == 0
    assert len(browser.find_elements(By.TAG_NAME, "svg")) == 0
    body = _text(browser, "table.timeline")
    assert "<script>window.pwned = 1</script>" in body
    assert "\\u202etxt.exe" in body and "\u202e" not in body
    rows = browser.find_elements(By.CSS_SELECTOR, "table.timeline tbody tr")
    assert len(rows) == len(HOSTILE) + 2  # every line in its own row, none swallowed
