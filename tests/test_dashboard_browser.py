"""The dashboard in a real browser: headless Chromium (Debian's, through its chromedriver) against `modelbus up --demo`.

Every page is loaded; its charts must be drawn with the demo's data, the browser console must hold no
error, hostile strings stored in the log must show as text and never run, and each page is saved as a
screenshot under test-output/screenshots/. A missing browser fails the run (scripts/ensure-chromium.sh
installs it), it is never skipped.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from modelbus.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
MODELBUS = str(Path(sys.executable).with_name("modelbus"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-token"
# Each would change the page title if it ever ran; the CSP would also refuse it and log an error.
HOSTILE_ID = "<img src=x onerror=\"document.title='pwned-id'\">"
HOSTILE_TS = "<script>document.title='pwned-ts'</script>"
HOSTILE_RAW = b"<script>document.title='pwned-raw'</script><img src=x onerror=\"document.title='pwned-raw'\">"
HOSTILE_DATASET = "<img src=x onerror=\"document.title='pwned-dataset'\">"
# Fires on the demo's answered predictions, so the alerts page has rows to show.
ALERT_RULE = {"name": "high-score", "model": "mlp", "on": "prediction", "above": 6}
# A window over the raw page views seed_hostile posts, so the windows page has rows to show.
WINDOW = {"name": "views_5m", "stream": "pageviews", "kind": "tumbling", "size": "5m",
          "aggregates": [{"name": "views", "fn": "count"}, {"name": "avg_amount", "fn": "avg", "field": "amount"}]}
# Every flag keeps Chromium off the network this machine does not have (it otherwise hangs).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`modelbus up --demo` on a free port and a fresh SQLite file, with an API token; its base URL."""
    work = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env.update(MODELBUS_DATABASE_URL=f"sqlite:///{work / 'modelbus.db'}", MODELBUS_API_TOKEN=TOKEN, PYTHONUNBUFFERED="1",
               MODELBUS_ALERTS=json.dumps([ALERT_RULE]), MODELBUS_WINDOWS=json.dumps([WINDOW]))
    proc = subprocess.Popen([MODELBUS, "up", "--demo", "--port", str(port)], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=open(work / "up.log", "w"), text=True, start_new_session=True)
    printed = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                assert proc.poll() is None, "modelbus up exited:\n" + "".join(printed) + (work / "up.log").read_text()
                continue
            printed.append(line)
            if line.strip() == "try:":
                break
        else:
            pytest.fail("modelbus up --demo printed no examples:\n" + "".join(printed))
        base = f"http://127.0.0.1:{port}"
        assert f"dashboard: http://localhost:{port}/" in "".join(printed)
        seed_hostile(base)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def seed_hostile(base: str) -> None:
    """Hostile strings where people put them: an event id and time, a dead letter's bytes, a dataset name."""
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    accepted = requests.post(f"{base}/api/events", json={"type": "training", "payload": "3,4,5,6", "id": HOSTILE_ID,
                                                          "ts": HOSTILE_TS}, headers=auth, timeout=10)
    assert accepted.status_code == 202, accepted.text
    for body in (HOSTILE_RAW, b"\xff\xfe<b>not utf-8</b>",
                 ('{"type":"training","payload":"3,4,5,6","dataset":"%s"}' % HOSTILE_DATASET.replace('"', '\\"')).encode()):
        refused = requests.post(f"{base}/api/events", data=body, headers=auth, timeout=10)
        assert refused.status_code == 400, refused.text
    # Half an hour of page views from three users: five closed 5-minute windows per user.
    views = [{"type": "raw", "stream": "pageviews", "key": f"user-{i % 3}", "ts": 1_795_000_000_000 + i * 20_000,
              "fields": {"event": "product_page", "amount": i % 7}} for i in range(100)]
    posted = requests.post(f"{base}/api/events", json=views, headers=auth, timeout=30)
    assert posted.status_code == 202, posted.text
    # The demo's feedback is joined once its predictions are recorded (pending until then).
    deadline = time.monotonic() + 60
    while requests.get(f"{base}/api/feedback?limit=1", timeout=10).json()["counts"].get("joined") != 200:
        assert time.monotonic() < deadline, "the demo's feedback was not joined"
        time.sleep(0.2)
    # Predictions for the predictions-per-second chart.
    for _ in range(20):
        assert requests.get(f"{base}/api/predict/mlp/3,4,5", timeout=10).status_code == 200
    # A second mlp version and a promotion by hand, so the model charts have a history to draw.
    built = requests.post(f"{base}/api/models/mlp/build", json={"params": {"epochs": 60, "hidden": [16], "seed": 7}},
                          headers=auth, timeout=10)
    assert built.status_code == 202, built.text
    deadline = time.monotonic() + 60
    while True:
        [mlp] = requests.get(f"{base}/api/models/mlp", timeout=10).json()["datasets"]
        if len(mlp["versions"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mlp["versions"]) == 2, mlp
    other = 1 if mlp["production"] == 2 else 2
    promoted = requests.post(f"{base}/api/models/mlp/promote", json={"version": other}, headers=auth, timeout=10)
    assert promoted.status_code == 202, promoted.text
    deadline = time.monotonic() + 30
    while requests.get(f"{base}/api/models/mlp", timeout=10).json()["datasets"][0]["production"] != other:
        assert time.monotonic() < deadline, "the promotion was not applied"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver, reading the console log; fails (never skips) without them."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are required: run scripts/ensure-chromium.sh", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads a driver here
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="modelbus-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 20, what: str = ""):
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or script}\nconsole: {driver.get_log('browser')}\n"
                             f"page: {driver.execute_script('return document.body.innerText')[:3000]}")
        time.sleep(0.2)


def points(selector: str) -> str:
    """How many data points (markers, bars, heat-map images) plotly drew in the charts under `selector`."""
    return (f"document.querySelectorAll('{selector} .scatterlayer path.point, {selector} .barlayer path, "
            f"{selector} .heatmaplayer image').length")


def visit(driver, base: str, path: str, name: str, ready: list[str]) -> list[dict]:
    """Load a page, wait until it has drawn (`ready` expressions), save a full-page screenshot; the console log."""
    driver.get(base + path)
    wait_for(driver, "document.getElementById('status').textContent.startsWith('updated')", what=f"{name} refreshed")
    for expression in ready:
        wait_for(driver, expression, what=f"{name}: {expression}")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height, 1000), 5000))
    time.sleep(0.3)  # charts follow the new width
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)
    return driver.get_log("browser")


def errors(log: list[dict]) -> list[str]:
    return [entry["message"] for entry in log if entry["level"] == "SEVERE"]


def not_pwned(driver) -> None:
    assert "pwned" not in driver.title
    assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"], main script').length") == 0


def test_every_page_draws_its_charts_without_a_console_error(server, browser):
    head = requests.get(f"{server}/healthz", timeout=10).json()["log_head"]
    pages = [
        ("overview", "/", [points("#chart-head") + " >= 2", points("#chart-ingest") + " >= 1",
                           points("#chart-lag") + " >= 2", points("#chart-reasons") + " >= 2",
                           "document.querySelectorAll('#models tbody tr').length == 2",
                           # every event: the demo's, the hostile one, the build and the promotions
                           f"Math.max(...document.getElementById('chart-head').data[0].y) == {head} && {head} > 505"]),
        ("models", "/models", [points("#model-charts") + " >= 8",
                               "document.querySelectorAll('#model-table tbody tr').length == 2"]),
        ("model-mlp", "/models/mlp", [points("#model-charts") + " >= 6",
                                      "document.querySelectorAll('#datasets tbody tr').length == 2",
                                      "document.querySelectorAll('#builds tbody tr').length == 2"]),
        ("version-mlp-1", "/models/mlp/versions/1?dataset=default",
         [points("#chart-confusion") + " >= 1", points("#chart-classes") + " >= 10",
          # the demo's 200 answers and their feedback: live metrics, and drift of the 3 features
          "document.getElementById('live').textContent.includes('feedback joined200')",
          points("#chart-drift") + " == 3"]),
        ("version-linear-1", "/models/linear/versions/1?dataset=default", []),
        ("windows", "/windows?name=views_5m", ["document.querySelectorAll('#window-table tbody tr').length == 1",
                                                 points("#chart-windows") + " >= 1", points("#chart-values") + " >= 10",
                                                 "document.querySelectorAll('#rows tbody tr').length >= 10"]),
        ("alerts", "/alerts", [points("#chart-rules") + " == 1", points("#chart-feedback") + " >= 1",
                               "document.querySelectorAll('#rows tbody tr').length >= 1"]),
        ("events", "/events", ["document.querySelectorAll('#rows tbody tr').length == 100"]),
        ("dead-letters", "/dead-letters", ["document.querySelectorAll('#rows tbody tr').length == 3"]),
    ]
    for name, path, ready in pages:
        log = visit(browser, server, path, name, ready)
        assert errors(log) == [], (name, errors(log))
        not_pwned(browser)
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000


def test_hostile_strings_in_the_log_show_as_text_and_never_run(server, browser):
    position = requests.get(f"{server}/api/events?after=500&limit=1000", timeout=10).json()
    hostile = next(e for e in position["events"] if e["id"] == HOSTILE_ID)
    log = visit(browser, server, f"/events?after={hostile['position'] - 1}&limit=5", "events-hostile",
                ["document.querySelectorAll('#rows tbody tr').length >= 1"])
    cells = browser.execute_script("return [...document.querySelectorAll('#rows td.event-id')].map(td => td.textContent)")
    assert cells[0] == HOSTILE_ID
    assert HOSTILE_TS in browser.execute_script("return document.getElementById('rows').textContent")
    assert errors(log) == [] and "pwned" not in browser.title
    not_pwned(browser)

    log = visit(browser, server, "/dead-letters", "dead-letters-hostile", ["document.querySelectorAll('pre.raw').length == 3"])
    raws = browser.execute_script("return [...document.querySelectorAll('pre.raw')].map(p => p.textContent)")
    assert raws[0] == HOSTILE_RAW.decode()
    assert "not UTF-8, shown as base64" in browser.execute_script("return document.getElementById('rows').textContent")
    assert HOSTILE_DATASET in browser.execute_script("return document.getElementById('rows').textContent")
    assert errors(log) == []
    not_pwned(browser)

    # Filtered by reason, from the overview's link.
    visit(browser, server, "/dead-letters?code=not_json", "dead-letters-not-json", ["document.querySelectorAll('pre.raw').length == 1"])
    assert browser.execute_script("return document.getElementById('code-select').value") == "not_json"


def test_verify_asks_for_the_token_and_then_rebuilds_identically(server, browser):
    from selenium.webdriver.common.by import By

    visit(browser, server, "/models/mlp/versions/1?dataset=default", "version-before-verify", [points("#chart-confusion") + " >= 1"])
    browser.find_element(By.ID, "verify-button").click()
    wait_for(browser, "!document.getElementById('notice').hidden && "
                      "document.getElementById('notice').textContent.includes('API token')", what="the token prompt")
    # The 401 the page handled is in the console as a failed request, nothing else.
    assert all("401" in message for message in errors(browser.get_log("browser")))
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    browser.find_element(By.ID, "verify-button").click()
    state = wait_for(browser, "['identical', 'MISMATCH', 'failed'].find(s => "
                              "document.getElementById('verify-state').textContent.includes(s))", timeout=90,
                     what="the verify result")
    assert state == "identical"
    browser.save_screenshot(str(SCREENSHOTS / "version-verified.png"))
    assert errors(browser.get_log("browser")) == []
