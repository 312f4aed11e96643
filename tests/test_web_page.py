"""The web page in a real headless Chromium (Debian's package, driven by Playwright) against ``affectlab serve``.

One server (a tiny model, ``--detector none`` so every image is one face) and one browser serve the module. The
webcam is Chromium's fake camera fed with a .y4m clip of demo faces made here. Every request the browser makes is
recorded, and each test checks that none left 127.0.0.1. Screenshots go to ``$AFFECTLAB_TEST_ARTIFACTS`` (else the test's temporary
folder). Without Chromium the tests skip, except under CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
from support.models import demo_faces, running, scene, serving, write_video

from affectlab.runtime.predictor import load

playwright_api = pytest.importorskip("playwright.sync_api")

TIMEOUT_MS = 300_000


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium not found: the browser tests need Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def chromium() -> str:
    """Checked before the server starts, so that a missing browser costs nothing."""
    return _chromium()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("AFFECTLAB_TEST_ARTIFACTS")
    path = Path(folder) / "web-page" if folder else tmp_path_factory.mktemp("web-page-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A demo photo, a fake-camera clip (.y4m, what Chromium reads) and a short video with a moving face."""
    root = tmp_path_factory.mktemp("web-media")
    faces = demo_faces(root, n_per_class=1)
    photo = root / "demo-face.png"
    cv2.imwrite(str(photo), faces[1])
    clip = root / "camera.y4m"
    with clip.open("wb") as stream:
        stream.write(b"YUV4MPEG2 W160 H160 F10:1 Ip A1:1 C420jpeg\n")
        for i in range(20):
            frame = cv2.resize(faces[i % len(faces)], (160, 160))
            stream.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    face = cv2.resize(faces[2], (120, 120))
    frames = [scene([face], [(20 + 5 * i, 40)], (240, 320)) for i in range(24)]
    return {"photo": photo, "camera": clip, "video": write_video(root / "walk.avi", frames)}


@pytest.fixture(scope="module")
def server(run: Path, work: Path) -> Iterator[str]:
    """``affectlab serve`` started as a user would."""
    with serving([str(run), "--detector", "none"], work / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser_page(chromium: str, server: str, media: dict[str, Path]) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page on the server with the fake camera, and the list of every URL it has requested."""
    requests: list[str] = []
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={media['camera']}",
            ],
        )
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.on("request", lambda request: requests.append(request.url))
        context.on("websocket", lambda socket: requests.append(socket.url))
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server + "/")
        page.wait_for_selector("text=affectlab: facial affect recognition")
        yield page, requests
        browser.close()


def _assert_local(requests: list[str]) -> None:
    """No request of the browser so far went beyond 127.0.0.1 (data: and blob: URLs stay in the page)."""
    assert requests, "the browser made no request at all"
    outside = sorted(
        {
            url
            for url in requests
            if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname != "127.0.0.1"
        }
    )
    assert not outside, f"the page reached beyond the machine: {outside[:5]}"


def _expected_title(server: str, path: Path) -> str:
    """What the page must show for the face in ``path``: the API's answer for the same file."""
    with path.open("rb") as stream:
        faces = httpx.post(server + "/predict", files={"file": (path.name, stream, "image/png")}, timeout=300).json()
    face = faces[0]
    return f"face 0: {face['label']} {face['confidence']:.2f}, V {face['valence']:+.2f} A {face['arousal']:+.2f}"


def test_photo_upload_shows_labels(browser_page: Any, server: str, media: dict[str, Path], artifacts: Path) -> None:
    page, requests = browser_page
    page.get_by_role("tab", name="Photos").click()
    page.locator("input[type=file]").first.set_input_files(str(media["photo"]))
    label = page.locator(".face-label").first
    label.wait_for()
    page.screenshot(path=str(artifacts / "photos.png"), full_page=True)
    assert _expected_title(server, media["photo"]) in label.inner_text()
    assert "1 photo(s), 1 face(s)" in page.locator("#photo-status").inner_text()
    shown = page.locator(".photo-result img").first.bounding_box()
    assert shown is not None and max(shown["width"], shown["height"]) >= 480, shown  # readable, not a thumbnail
    _assert_local(requests)


def test_webcam_shows_live_labels(browser_page: Any, artifacts: Path) -> None:
    page, requests = browser_page
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    page.locator("#camera").get_by_role("button", name="capture photo").click()  # Gradio's "Record": start streaming
    page.wait_for_function("document.querySelector('#live-faces').innerText.includes('face 0:')", timeout=TIMEOUT_MS)
    page.wait_for_selector("#live img")
    page.screenshot(path=str(artifacts / "webcam.png"), full_page=True)
    text = page.locator("#live-faces").inner_text()
    assert any(
        f"face 0: {name} " in text
        for name in ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
    )
    _assert_local(requests)


def test_video_upload_shows_timeline(browser_page: Any, media: dict[str, Path], artifacts: Path) -> None:
    page, requests = browser_page
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-file input[type=file]").set_input_files(str(media["video"]))
    page.wait_for_selector("#video-status:has-text('done')", timeout=TIMEOUT_MS)
    page.screenshot(path=str(artifacts / "video.png"), full_page=True)
    assert "done, 24 frame(s), 24 face(s)" in page.locator("#video-status").inner_text()
    assert page.locator("#timeline img").count() == 1  # the matplotlib timeline
    names = page.locator("#downloads").inner_text().replace("\n", "")
    assert "walk.jsonl" in names and "walk.csv" in names
    _assert_local(requests)


def test_model_card(browser_page: Any, artifacts: Path) -> None:
    page, requests = browser_page
    page.get_by_role("tab", name="Model card").click()
    card = page.locator("#model-card")
    card.wait_for()
    page.screenshot(path=str(artifacts / "model-card.png"), full_page=True)
    text = card.inner_text()
    assert "multitask" in text and "64 x 64 px" in text and "Contempt" in text
    _assert_local(requests)


def test_api_key_guards_the_page_and_the_api(run: Path) -> None:
    """With a key, the page's own endpoints need a login with the key as password, and the API its bearer header."""
    image = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    with running(load(run, detector="none"), api_key="s3cret") as url:
        assert httpx.get(url + "/config").status_code == 401
        assert httpx.post(url + "/predict", files={"file": ("a.png", image)}).status_code == 401
        with httpx.Client(base_url=url) as client:
            assert client.post("/login", data={"username": "anyone", "password": "wrong"}).status_code == 400
            assert client.post("/login", data={"username": "anyone", "password": "s3cret"}).status_code == 200
            assert client.get("/config").status_code == 200
        headers = {"Authorization": "Bearer s3cret"}
        assert httpx.post(url + "/predict", files={"file": ("a.png", image)}, headers=headers).status_code == 200
