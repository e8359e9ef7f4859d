"""The examples in a real browser: headless Chromium, driven through chromedriver's W3C
WebDriver HTTP API with the standard library only.

Chromium and chromedriver come from Debian's ``chromium`` and ``chromium-driver``
packages (``$CHROMIUM`` and ``$CHROMEDRIVER`` override their paths).  Without them the
tests are skipped, unless ``$CI`` is set: there they must run, and fail.
Set ``$CFWS_SCREENSHOTS`` to a directory to keep the screenshots.
"""

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.redis_server import running_redis
from tests.servers import free_port, wait_for_port
from tests.test_examples import example

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,760"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element key


@pytest.fixture
def browser(tmp_path):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = "not installed: %s (apt-get install chromium chromium-driver)" % missing
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with Browser(tmp_path) as chrome:
        yield chrome


class Browser:
    """One Chromium, through one chromedriver session."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        port = free_port()
        self.base = "http://127.0.0.1:%d" % port
        self.log = open(tmp_path / "chromedriver.log", "wb")
        self.driver = subprocess.Popen([CHROMEDRIVER, "--port=%d" % port], stdout=self.log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.session = None

    def __enter__(self):
        try:
            wait_for_port(int(self.base.rsplit(":", 1)[1]), self.driver)
            options = {"binary": CHROMIUM,
                       "args": FLAGS + ["--user-data-dir=%s" % (self.tmp_path / "profile")]}
            capabilities = {"alwaysMatch": {"browserName": "chrome",
                                            "goog:chromeOptions": options}}
            answer = self._call("POST", "/session", {"capabilities": capabilities}, timeout=60)
            self.session = "/session/" + answer["sessionId"]
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.session:
                self._call("DELETE", self.session, timeout=30)
        finally:
            self._stop()

    def _stop(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.driver.pid, signal.SIGTERM)  # chromedriver and its Chromium
        try:
            self.driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.driver.pid, signal.SIGKILL)
            self.driver.wait(timeout=10)
        self.log.close()

    def _call(self, method, path, body=None, timeout=30):
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            with error:
                raise AssertionError("WebDriver %s %s: %s" % (method, path, error.read()))

    def cmd(self, method, path, body=None):
        return self._call(method, self.session + path, body)

    # -- what the tests use --------------------------------------------------------------

    def go(self, url):
        self.cmd("POST", "/url", {"url": url})

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def type(self, css, text):
        self.cmd("POST", "/element/%s/value" % self.find(css), {"text": text})

    def click(self, css):
        self.cmd("POST", "/element/%s/click" % self.find(css))

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def text(self, css):
        return self.js("return document.querySelector(arguments[0]).innerText;", css)

    def wait_for_text(self, css, wanted, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted in (self.text(css) or ""):
                return
            time.sleep(0.05)
        raise AssertionError("%r never showed %r; it shows %r" % (css, wanted, self.text(css)))

    def new_window(self):
        handle = self.cmd("POST", "/window/new", {"type": "window"})["handle"]
        self.switch(handle)
        return handle

    def window(self):
        return self.cmd("GET", "/window")

    def switch(self, handle):
        self.cmd("POST", "/window", {"handle": handle})

    def screenshot(self, name):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        (self.tmp_path / name).write_bytes(png)
        keep = os.environ.get("CFWS_SCREENSHOTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            with open(os.path.join(keep, name), "wb") as f:
                f.write(png)
        return png


def join(chrome, port, name):
    chrome.go("http://127.0.0.1:%d/" % port)
    chrome.type("#name", name)
    chrome.click("#join")
    chrome.wait_for_text("#status", "online")


def say(chrome, text):
    chrome.type("#text", text + "\ue007")  # Enter submits the form


def test_chat_in_two_windows(browser, tmp_path):
    with example("chat", tmp_path) as port:
        join(browser, port, "alice")
        alice = browser.window()
        browser.wait_for_text("#messages", "alice joined")
        bob = browser.new_window()
        join(browser, port, "bob")
        browser.wait_for_text("#status", "2 online")
        say(browser, "hello from bob")
        browser.wait_for_text("#messages", "bobhello from bob")
        browser.switch(alice)
        browser.wait_for_text("#messages", "bob joined")
        browser.wait_for_text("#messages", "bobhello from bob")  # name, then the text
        browser.wait_for_text("#status", "2 online")
        say(browser, "hi bob, alice here")
        browser.wait_for_text("#messages", "alicehi bob, alice here")
        assert browser.js("return document.querySelector('#chat').hidden;") is False
        assert browser.js("return document.querySelectorAll('#messages .mine').length;") == 1
        browser.screenshot("chat.png")
        browser.switch(bob)
        browser.wait_for_text("#messages", "alicehi bob, alice here")
        browser.cmd("DELETE", "/window")  # bob closes his window
        browser.switch(alice)
        browser.wait_for_text("#messages", "bob left")
        browser.wait_for_text("#status", "1 online")


def test_chat_across_two_processes_through_redis(browser, tmp_path):
    # Two chat servers share one Room through Redis: a browser on each sees the other.
    with running_redis() as redis, \
            example("chat", tmp_path, "--redis", redis.url) as first, \
            example("chat", tmp_path, "--redis", redis.url) as second:
        join(browser, first, "alice")
        alice = browser.window()
        browser.new_window()
        join(browser, second, "bob")
        say(browser, "hello across processes")
        browser.wait_for_text("#messages", "bobhello across processes")
        browser.switch(alice)
        browser.wait_for_text("#messages", "bob joined")
        browser.wait_for_text("#messages", "bobhello across processes")
        say(browser, "alice on the first process")
        browser.wait_for_text("#messages", "alicealice on the first process")


def test_echo_page(browser, tmp_path):
    with example("echo", tmp_path) as port:
        browser.go("http://127.0.0.1:%d/" % port)
        browser.wait_for_text("#log", "connected")
        browser.type("#text", "hi there\ue007")
        browser.wait_for_text("#log", "← hi there")
        browser.type("#text", "ünïcødé ✓\ue007")
        browser.wait_for_text("#log", "← ünïcødé ✓")
        browser.screenshot("echo.png")
        browser.type("#text", "close\ue007")  # the server closes with 4000
        browser.wait_for_text("#log", 'closed: code 4000, reason "You asked me to close"')
        browser.go("http://127.0.0.1:%d/" % port)
        browser.wait_for_text("#log", "connected")
        browser.click("#close")  # the page closes; the server answers with its code (B1)
        browser.wait_for_text("#log", 'closed: code 1000, reason "bye from the page"')
