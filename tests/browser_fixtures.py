"""Console test helpers: signing in over HTTP, and a real headless Chromium driven by Playwright.

Playwright cannot download its own browser here, so it drives Debian's
``chromium`` package (``apt-get install -y chromium``). Where neither is
installed the browser tests skip and say how to install them. Every browser
test saves a PNG screenshot under one folder per run, printed at the start.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("SYNDICATE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ADMIN_TOKEN = "test-admin-token"


def sign_in(http, base: str, token: str = ADMIN_TOKEN):
    """Sign a requests.Session in to the console; returns the sign-in answer (not followed)."""
    form = http.get(f"{base}/console/login")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return http.post(f"{base}/console/login", data={"csrf": login_csrf, "token": token}, allow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


_FOLDER: list[Path] = []


def screenshot_folder(config) -> Path:
    """One folder per run, made and printed the first time a browser test needs it."""
    if not _FOLDER:
        folder = Path(os.environ.get("SYNDICATE_TEST_SCREENSHOTS") or tempfile.mkdtemp(prefix="syndicate-screens-"))
        folder.mkdir(parents=True, exist_ok=True)
        # Through the terminal reporter: a print would be captured and shown only on failure.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"\nconsole browser screenshots: {folder}")
        _FOLDER.append(folder)
    return _FOLDER[0]


# Module scope: each test module imports these fixtures, which makes each import a fixture of
# its own, and Playwright's sync API allows one running instance at a time.
@pytest.fixture(scope="module")
def browser(request):
    """A headless Chromium (the system one) per test module, or a skip that says how to get it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: .venv/bin/pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium: install it with `apt-get install -y chromium` (or set SYNDICATE_TEST_CHROMIUM)")
    folder = screenshot_folder(request.config)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        chromium.screenshots = folder
        yield chromium
        chromium.close()


@pytest.fixture()
def phone(browser, request):
    """A fresh browser page 375 px wide (a phone); saves a screenshot named after the test at the end."""
    context = browser.new_context(viewport={"width": 375, "height": 800})
    # The tests talk to loopback only: anything else a page asks for (an archived edition's
    # remote pictures) is refused inside the browser, so no test reaches the internet.
    context.route("**/*", _loopback_only)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    page.screenshot(path=str(browser.screenshots / f"{request.node.name}.png"), full_page=True)
    context.close()


def _loopback_only(route) -> None:
    host = urlsplit(route.request.url).hostname or ""
    if host in ("127.0.0.1", "::1", "localhost") or host.startswith("127."):
        route.continue_()
    else:
        route.abort()


def browser_sign_in(page, base: str) -> None:
    page.goto(f"{base}/console")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()
