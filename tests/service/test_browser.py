"""The explorer page in a real browser: Debian's headless chromium, driven by selenium through chromedriver,
against real gunicorn serving a model built with planted neighbours and a planted analogy. Every view is
compared with the JSON the endpoints answer; the browser's console must stay free of errors."""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.service.conftest import Gunicorn
from trainer import artifact

pytestmark = pytest.mark.slow
K = 10  # what the page asks for
SUGGESTIONS = 8
KEY = "page-key-1"
ROYAL = ["king", "queen", "prince", "princess"]
PEOPLE = ["man", "woman", "boy", "girl"]
FRUIT = ["apple", "pear", "plum", "peach", "cherry", "apricot"]
COFFEE = ["café", "espresso", "latte", "mocha", "cappuccino"]
# Most frequent first (the row order); "p" starts six words, "pr" two, "caf" one.
WORDS = ["man", "woman", "king", "queen", "apple", "café", "pear", "boy", "girl", "prince", "princess", "plum",
         "peach", "cherry", "apricot", "espresso", "latte", "mocha", "cappuccino", "pâtisserie",
         *[f"w{i}" for i in range(180)]]


def planted_vectors(dim: int = 24, seed: int = 5) -> np.ndarray:
    """king = royal + male, queen = royal + female, man = person + male, woman = person + female (the
    analogy's answer is queen); the fruit and the coffee words each a tight group; the rest random."""
    rng = np.random.default_rng(seed)
    royal, person, male, female, fruit, coffee = rng.standard_normal((6, dim))
    noise = lambda scale: scale * rng.standard_normal(dim)  # noqa: E731
    planted = {"king": royal + male, "queen": royal + female + noise(0.05), "man": person + male,
               "woman": person + female, "prince": royal + male + noise(0.5), "princess": royal + female + noise(0.5),
               "boy": person + male + noise(0.5), "girl": person + female + noise(0.5),
               "pâtisserie": coffee + fruit + noise(0.4)}
    planted |= {w: 2 * fruit + noise(0.4) for w in FRUIT} | {w: 2 * coffee + noise(0.4) for w in COFFEE}
    return np.array([planted[w] if w in planted else noise(1.0) for w in WORDS], np.float32)


def save_planted(folder: Path, with_output: bool) -> Path:
    vectors = planted_vectors()
    output = (0.5 * np.random.default_rng(6).standard_normal(vectors.shape)).astype(np.float32)
    counts = np.arange(len(WORDS), 0, -1) * 7
    return artifact.save(folder, WORDS, counts if with_output else np.zeros(len(WORDS)), vectors,
                         output if with_output else None,
                         {"objective": "negative-sampling" if with_output else None})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The planted model under gunicorn (two workers, as deployed)."""
    folder = save_planted(tmp_path_factory.mktemp("models") / "planted", with_output=True)
    yield from serving(Gunicorn(folder, tmp_path_factory.mktemp("explorer")))


@pytest.fixture(scope="module")
def keyed_imported(tmp_path_factory):
    """The planted vectors without output vectors (as imported from a word2vec file), behind an API key."""
    folder = save_planted(tmp_path_factory.mktemp("models") / "imported", with_output=False)
    yield from serving(Gunicorn(folder, tmp_path_factory.mktemp("explorer-keyed"), WEB_CONCURRENCY="1",
                                SKIPGRAM_API_KEY=KEY))


def serving(running: Gunicorn):
    """The fixture's server once ready, stopped afterwards (also when it never became ready)."""
    try:
        running.wait_ready()
    except BaseException:
        running.stop()
        raise
    yield running
    assert running.stop() == 0


@contextlib.contextmanager
def chromium():
    """Headless chromium under chromedriver, quit on leaving."""
    chromium_path, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium_path and chromedriver):
        message = "Debian's chromium and chromium-driver are not installed (`make test` installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    # --no-sandbox: chromium refuses to run as root with its sandbox; the pages are the project's own.
    for argument in ("--headless", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


# Each browser depends on the server it talks to, so it quits (closing its idle connections) before that
# server stops: a sync worker holding a browser's idle connection only stops when gunicorn's
# graceful_timeout kills it.
@pytest.fixture(scope="module")
def browser(served):
    with chromium() as driver:
        yield driver


@pytest.fixture
def keyed_browser(keyed_imported):
    with chromium() as driver:
        yield driver


class Page:
    """The explorer page of one server in the browser, with the server's own JSON answers to compare."""

    def __init__(self, driver, base: str, key: str | None = None):
        self.driver, self.base, self.key = driver, base, key
        driver.get_log("browser")  # what earlier tests left

    def open(self, path: str = "/") -> Page:
        self.driver.get(self.base + path)
        self.settle(lambda: self.text("#facts").startswith("Asking"), False)
        return self

    def api(self, path: str, **params) -> dict:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        response = requests.get(self.base + path, params=params, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def find(self, selector: str):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def text(self, selector: str) -> str:
        return self.find(selector).text

    def texts(self, selector: str) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, selector)]

    def shown(self, selector: str) -> bool:
        return self.find(selector).is_displayed()

    def query(self) -> dict[str, str]:
        return {name: values[0] for name, values in parse_qs(urlsplit(self.driver.current_url).query).items()}

    def settle(self, value, expected, timeout: float = 10):
        """Poll value() until it equals `expected`, then assert it (a diff when it never did)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = value()
            except StaleElementReferenceException:  # replaced while read: read again
                got = None
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == expected
        return got

    def assert_neighbours(self, word: str) -> list[dict]:
        """The page shows exactly the neighbours /similar answers, in order, with their cosines."""
        expected = self.api("/similar", word=word, k=K)["neighbors"]
        self.settle(lambda: self.texts("#neighbours .bars .word"), [n["word"] for n in expected])
        shown = [float(v) for v in self.texts("#neighbours .bars .value")]
        assert shown == pytest.approx([n["score"] for n in expected], abs=0.0005 + 1e-9)
        assert self.find("#word").get_attribute("value") == word
        return expected

    def console(self, allowed: tuple[str, ...] = ()) -> list[dict]:
        """The browser's console since the last call: no entry at all but network answers the test
        provoked (the browser reports a 404 or 401 answer itself, whatever the page does with it)."""
        entries = self.driver.get_log("browser")
        unexpected = [e for e in entries if not (e["source"] == "network" and any(a in e["message"] for a in allowed))]
        assert unexpected == []
        return entries


@pytest.fixture
def page(browser, served):
    return Page(browser, served.base)


def screenshot(driver, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


# ------------------------------------------------------------------------------------------ tests

def test_a_word_shows_its_neighbours_map_and_context_words(page, tmp_path):
    page.open("/?word=apple")
    neighbours = page.assert_neighbours("apple")
    assert {n["word"] for n in neighbours[:5]} == set(FRUIT) - {"apple"}  # the planted group first
    expected = ["apple"] + [n["word"] for n in neighbours]
    page.settle(lambda: sorted(page.texts("#map svg text")), sorted(expected))  # k + 1 labelled points
    assert len(page.driver.find_elements(By.CSS_SELECTOR, "#map svg circle")) == K + 1
    assert page.text("#map svg .centre text") == "apple"
    context = page.api("/context-probs", word="apple", k=K)["context"]
    page.settle(lambda: page.texts("#context .bars .word"), [c["word"] for c in context])
    assert "not calibrated probabilities" in page.text("#context .caveat")
    ready = page.api("/readyz")
    facts = page.text("#facts")
    for fact in ("planted", f"{ready['vocab_size']} words", f"{ready['dim']} dimensions", "flat index (exact)",
                 ready["digest"]):
        assert fact in facts
    assert page.driver.title == "apple · skipgram explorer"
    # Each answer is drawn as it arrives: the last one arrived within a second of the navigation's start
    # (loaded again: a browser's first page includes the browser's own start-up).
    page.open("/?word=apple").assert_neighbours("apple")
    arrived = page.driver.execute_script(
        "return performance.getEntriesByType('resource').filter((e) => /[/](similar|map|context-probs)[?]/"
        ".test(e.name)).map((e) => e.responseEnd)")
    assert len(arrived) == 3 and max(arrived) < 1000, arrived
    screenshot(page.driver, tmp_path, "explorer-apple")
    page.console()


def test_typing_a_prefix_shows_suggestions_and_the_keyboard_picks_one(page):
    page.open("/")
    box = page.find("#word")
    box.send_keys("p")
    expected = [w for w in WORDS if w.startswith("p")][:SUGGESTIONS]  # most frequent first
    assert page.api("/words", prefix="p", limit=SUGGESTIONS)["words"] == expected
    page.settle(lambda: page.texts("#suggestions li"), expected)
    box.send_keys("r")
    page.settle(lambda: page.texts("#suggestions li"), ["prince", "princess"])
    box.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN, Keys.ARROW_DOWN, Keys.ARROW_UP)  # wraps round, then back
    assert page.texts("#suggestions li.active") == ["princess"]
    assert box.get_attribute("aria-activedescendant") == "suggestion-1"
    box.send_keys(Keys.ENTER)
    page.settle(page.query, {"word": "princess"})
    assert not page.shown("#suggestions")
    page.assert_neighbours("princess")
    page.console()


def test_a_non_ascii_prefix_and_a_click_on_a_suggestion(page):
    page.open("/")
    page.find("#word").send_keys("caf")
    page.settle(lambda: page.texts("#suggestions li"), ["café"])
    page.find("#suggestions li").click()
    page.settle(page.query, {"word": "café"})
    assert {n["word"] for n in page.assert_neighbours("café")[:4]} == set(COFFEE) - {"café"}
    page.console()


def test_the_url_restores_the_view_and_the_back_button_returns(page):
    page.open(f"/?word={quote('café')}")
    page.assert_neighbours("café")
    first = page.texts("#neighbours .bars .word")[0]
    page.find("#neighbours .bars .word").click()  # a neighbour explores itself
    page.settle(page.query, {"word": first})
    page.assert_neighbours(first)
    page.driver.back()
    page.settle(page.query, {"word": "café"})
    page.assert_neighbours("café")
    page.driver.forward()
    page.settle(page.query, {"word": first})
    page.assert_neighbours(first)
    page.console()


def test_the_analogy_form_finds_the_planted_answer(page):
    page.open("/")
    for name, word in (("a", "man"), ("b", "king"), ("c", "woman")):
        page.find(f"#{name}").send_keys(word)
    page.find("#c").send_keys(Keys.ENTER)
    page.settle(lambda: page.text("#analogy .status"), "man is to king as woman is to queen.")
    expected = page.api("/similar", positive="king,woman", negative="man", k=K)["neighbors"]
    assert expected[0]["word"] == "queen"
    assert page.texts("#analogy .bars .word") == [n["word"] for n in expected]
    assert page.query() == {"a": "man", "b": "king", "c": "woman"}
    page.driver.refresh()  # the URL holds the analogy too
    page.settle(lambda: page.texts("#analogy .bars .word"), [n["word"] for n in expected])
    page.console()


def test_an_unknown_word_and_empty_input_are_said_on_the_page(page):
    page.open("/?word=apple")
    page.assert_neighbours("apple")
    box = page.find("#word")
    box.clear()
    box.send_keys("zzzz")
    page.settle(lambda: page.text("#hint"), "No word of this model starts with “zzzz”.")
    box.send_keys(Keys.ENTER)
    page.settle(lambda: page.text("#message"), "“zzzz” is not in this model's vocabulary.")
    for section in ("#neighbours", "#map", "#context"):
        page.settle(lambda: page.shown(section), False)
    assert page.query() == {"word": "zzzz"}
    entries = page.console(allowed=("word=zzzz&k=10 - Failed to load resource: the server responded with a "
                                    "status of 404",))
    assert entries  # the 404 answers, reported by the browser, not by the page
    box.clear()
    box.send_keys(Keys.ENTER)
    page.settle(lambda: page.text("#message"), "Type a word to explore it.")
    page.find("#analogy button").click()
    assert page.text("#analogy .status") == "Fill in the three words."
    page.find("#a").send_keys("man")
    page.find("#b").send_keys("nope")
    page.find("#c").send_keys("woman", Keys.ENTER)
    page.settle(lambda: page.text("#analogy .status"), "“nope” is not in this model's vocabulary.")
    page.console(allowed=("negative=man&k=10 - Failed to load resource: the server responded with a status of 404",))


def test_a_failing_endpoint_is_said_in_its_section_while_the_others_render(page):
    page.driver.execute_cdp_cmd("Network.enable", {})
    page.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/similar?*"]})
    try:
        page.open("/?word=pear")
        page.settle(lambda: page.text("#neighbours .status"), "Could not load this: The service cannot be reached.")
        page.settle(lambda: len(page.texts("#map svg text")), K + 1)  # not held back by the failure
        page.settle(lambda: len(page.texts("#context .bars .word")), K)
    finally:
        page.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    page.console(allowed=("net::ERR_BLOCKED_BY_CLIENT",))


def test_the_page_reads_at_200_percent_zoom(page, tmp_path):
    # 200 % zoom of a 1280-pixel window: a 640-pixel-wide layout drawn at twice the density
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": 640, "height": 1000, "deviceScaleFactor": 2, "mobile": False})
    try:
        page.open("/?word=king&a=man&b=king&c=woman")
        page.assert_neighbours("king")
        page.settle(lambda: page.text("#analogy .status"), "man is to king as woman is to queen.")
        overflow = page.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0  # nothing to scroll sideways
        size = page.driver.execute_script("return getComputedStyle(document.querySelector('.bars .word')).fontSize")
        assert float(size.removesuffix("px")) >= 16
        screenshot(page.driver, tmp_path, "explorer-zoom-200")
    finally:
        page.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    page.console()


def test_with_an_api_key_the_page_asks_for_it_once(keyed_browser, keyed_imported):
    page = Page(keyed_browser, keyed_imported.base, key=KEY)
    page.open("/?word=king")
    assert "imported vectors" in page.text("#facts")  # /readyz needs no key
    page.settle(lambda: page.shown("#keyform"), True)
    assert "needs an API key" in page.text("#keynote")
    page.find("#key").send_keys("wrong-key", Keys.ENTER)
    page.settle(lambda: page.text("#keynote"), "The service refused that key. Enter its API key again.")
    page.find("#key").send_keys(KEY, Keys.ENTER)
    page.settle(lambda: page.shown("#keyform"), False)
    page.assert_neighbours("king")
    page.settle(lambda: page.text("#context .status"),
                "This model has no output vectors (imported word vectors), so it defines no context words.")
    assert page.texts("#context .bars li") == []
    page.console(allowed=("status of 401",))
    page.driver.refresh()  # the key is kept for the tab: no second prompt
    page.assert_neighbours("king")
    assert not page.shown("#keyform")
    page.find("#word").clear()
    page.find("#word").send_keys("pr")
    page.settle(lambda: page.texts("#suggestions li"), ["prince", "princess"])
    page.console()
