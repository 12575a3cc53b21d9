"""The web demo in a real browser: headless Debian chromium driven by Playwright.

Starts the demo (tiny random model) on a free loopback port, uploads the shipped example video, asks a
question, waits for the streamed answer and saves a full-page screenshot to $VIDEOLLAMA_ARTIFACTS
(default <repo>/artifacts/; a temp folder if that is not writable).
Needs `chromium` (Debian package; .ci/run installs it) and `playwright` (the test extra). Never run
`playwright install`: the system chromium is used through executable_path.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

QUESTION = "What is happening in the video?"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _save_screenshot(page, tmp_path: Path) -> Path:
    """Full-page screenshot into the artifacts folder, or into tmp_path when that fails."""
    folder = Path(os.environ.get("VIDEOLLAMA_ARTIFACTS") or REPO_ROOT / "artifacts")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "webui_chat.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    except Exception:  # read-only checkout, bad env value...: still keep the picture
        path = tmp_path / "webui_chat.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def demo_url(pipe):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install -c constraints.txt -e '.[test]')")
    from videollama.serving.webui import launch

    port = _free_port()
    demo = launch(pipe, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.mark.timeout(120)
def test_upload_ask_and_see_the_answer(demo_url, example_video, tmp_path) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -c constraints.txt -e '.[test]')")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium; .ci/run installs it)")

    t0 = time.perf_counter()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith((demo_url, "blob:", "data:")) else None)
            # not "networkidle": gradio keeps connections open
            page.goto(demo_url, wait_until="domcontentloaded", timeout=30_000)
            page.wait_for_selector("#vl-video input[type=file]", state="attached", timeout=30_000)

            page.set_input_files("#vl-video input[type=file]", str(example_video))
            page.wait_for_function("document.querySelector('#vl-status').innerText.includes('example.mp4')",
                                   timeout=30_000)
            page.locator("#vl-seed textarea, #vl-seed input").first.fill("0")  # reproducible sampling
            page.fill("#vl-question textarea", QUESTION)
            page.press("#vl-question textarea", "Enter")

            # the streamed answer is complete when the status says so and the chatbot is no longer pending
            page.wait_for_function(
                """() => {
                    const bot = document.querySelectorAll('#vl-chatbot [data-testid="bot"]');
                    const chat = document.querySelector('#vl-chatbot');
                    return bot.length > 0 && bot[bot.length - 1].innerText.trim().length > 0
                        && document.querySelector('#vl-status').innerText.includes('Chatting about')
                        && !chat.querySelector('.generating, .pending');
                }""", timeout=45_000)
            page.wait_for_timeout(300)  # let the last streamed piece render before the picture
            shot = _save_screenshot(page, tmp_path)
            print(f"\nscreenshot: {shot} ({time.perf_counter() - t0:.1f} s in the browser)")

            answer = page.locator('#vl-chatbot [data-testid="bot"]').last.inner_text().strip()
            user = page.locator('#vl-chatbot [data-testid="user"]').last.inner_text().strip()
            status = page.inner_text("#vl-status")
        finally:
            browser.close()
    assert answer, "the answer is empty"
    assert user == QUESTION
    assert "encoded: audio + video" in status
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert not outside, f"the page made requests off this machine: {outside[:5]}"
