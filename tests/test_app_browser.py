"""The dashboard in a real browser: `streamlit run` on a free loopback port, headless Debian
Chromium loads every page, waits for it to render, saves a screenshot and checks the title
and that no error box is shown. Screenshots go to $RECSYS_SCREENSHOT_DIR (docs/screenshots
when refreshing the README's pictures), else to the test's tmp folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.app_fixture import make_project
from tests.conftest import PROJECT_ROOT
from tests.test_app import PAGES

APT = ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

pytestmark = pytest.mark.slow


def find_binaries() -> tuple[str | None, str | None]:
    """A Chromium-family browser and chromedriver: Debian's chromium first, else a Chrome
    already there (GitHub's ubuntu runners ship google-chrome, chromedriver in $CHROMEWEBDRIVER)."""
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver_dir = os.environ.get("CHROMEWEBDRIVER", "")
    driver = shutil.which("chromedriver") or shutil.which("chromedriver", path=driver_dir)
    return browser, driver


def browser_binaries() -> tuple[str, str]:
    """chromium and chromedriver; installed with apt-get as root when missing, else skip."""
    found = find_binaries()
    why = "not root" if os.geteuid() != 0 else "no apt-get" if not shutil.which("apt-get") else ""
    if None in found and not why:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = subprocess.run(APT, capture_output=True, text=True, env=env)
        last = ((apt.stderr or apt.stdout).strip().splitlines() or ["no output"])[-1]
        why = f"apt-get exited {apt.returncode}: {last}"
        found = find_binaries()
    if None in found:
        pytest.skip(f"chromium / chromedriver absent and not installable here ({why}); run "
                    "`apt-get install -y chromium chromium-driver` as root")  # fmt: skip
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    """Wait for Streamlit's health endpoint; fail with the server's output if it died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"streamlit did not answer at {url} within {seconds} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """The app served on a free loopback port over a project with all 20 days built (or over
    $RECSYS_BROWSE_ROOT, e.g. `.` after `make demo`, to check and picture the real outputs)."""
    if os.environ.get("RECSYS_BROWSE_ROOT"):
        repo = Path(os.environ["RECSYS_BROWSE_ROOT"]).resolve()
    else:
        repo, _ = make_project(tmp_path_factory.mktemp("browser") / "full", 20, experiments=True)
    port = free_port()
    env = {**os.environ, "RECSYS_ROOT": str(repo), "PREFECT_API_URL": "",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}  # fmt: skip
    cmd = [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py",
           "--server.port", str(port), "--server.headless", "true",
           "--server.address", "127.0.0.1"]  # fmt: skip
    server = subprocess.Popen(
        cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by selenium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--window-size=1400,1800"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


def wait_rendered(driver, title: str, seconds: float = 60) -> None:
    """Wait until the page's h1 shows `title` and the script has stopped running."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d) -> bool:
        heads = d.find_elements(By.CSS_SELECTOR, "h1")
        running = d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"] *')
        return bool(heads) and heads[0].text.startswith(title) and not running

    WebDriverWait(driver, seconds, poll_frequency=0.3).until(ready)
    time.sleep(1.5)  # charts (vega) draw after the script finishes
    WebDriverWait(driver, seconds, poll_frequency=0.3).until(ready)


def full_height(driver, width: int = 1400, most: int = 4000) -> None:
    """Make the window as tall as the page (Streamlit scrolls inside its main section)."""
    script = "return document.querySelector('[data-testid=\"stMain\"]').scrollHeight"
    height = min(int(driver.execute_script(script)) + 40, most)
    if height > driver.get_window_size()["height"]:
        driver.set_window_size(width, height)
        time.sleep(1.0)  # charts re-lay out at the new size


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_in_chromium(served, browser, tmp_path, page):
    from selenium.webdriver.common.by import By

    browser.set_window_size(1400, 1000)
    browser.get(f"{served}/{page}")
    wait_rendered(browser, PAGES[page])
    shots = Path(os.environ.get("RECSYS_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    full_height(browser)
    assert browser.save_screenshot(str(shots / f"{page}.png"))
    assert browser.find_element(By.CSS_SELECTOR, "h1").text.startswith(PAGES[page])
    errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not errors, errors[0].text
    assert browser.title.startswith(PAGES[page])  # st.Page's title names the browser tab
