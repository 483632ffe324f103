"""The headless-Chromium renderer: isolation of untrusted pages, concurrent renders."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from glmkit.eval.render import ChromiumRenderer, chromium_unavailable_reason

chromium = pytest.mark.skipif(
    chromium_unavailable_reason() is not None,
    reason=f"needs headless Chromium: {chromium_unavailable_reason()}",
)


def _count_rgb(shot: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(shot.astype(int) - np.array(rgb)).max(axis=-1) < 30).sum())


@pytest.mark.chromium
@chromium
def test_candidate_pages_cannot_load_local_files(tmp_path: Path) -> None:
    from PIL import Image

    secret = tmp_path / "secret.html"
    secret.write_text(
        "<body style='margin:0;background:rgb(255,0,0)'><p>LOCALSECRET42</p></body>", encoding="utf-8"
    )
    Image.new("RGB", (200, 200), (0, 255, 0)).save(tmp_path / "green.png")
    html = f"""<html><body><p>visible</p>
<iframe src="{secret.as_uri()}" width="400" height="300"></iframe>
<img src="{(tmp_path / "green.png").as_uri()}">
<script>
try {{
  const x = new XMLHttpRequest();
  x.open("GET", "{secret.as_uri()}", false);
  x.send();
  const p = document.createElement("p");
  p.textContent = x.responseText;
  document.body.appendChild(p);
}} catch (e) {{}}
</script></body></html>"""
    with ChromiumRenderer(timeout=10.0) as renderer:
        page = renderer.render_html(html)
        trusted = renderer.render_file(secret)  # reference pages are local files and still render
    assert [b.text for b in page.blocks] == ["visible"]
    assert _count_rgb(page.screenshot, (255, 0, 0)) == 0  # the iframe showed nothing of the file
    assert _count_rgb(page.screenshot, (0, 255, 0)) == 0  # nor did the image
    assert [b.text for b in trusted.blocks] == ["LOCALSECRET42"]
    assert _count_rgb(trusted.screenshot, (255, 0, 0)) > 0


def _wait_until_held_by_another_thread(lock: threading.RLock, worker: threading.Thread) -> None:
    """Return once ``worker`` holds ``lock`` (polling, no sleep whose length matters)."""
    while worker.is_alive():
        if not lock.acquire(blocking=False):
            return  # another thread holds it
        lock.release()
        time.sleep(0.01)
    raise AssertionError("the worker finished without ever holding the renderer")


# slow: the hanging page runs into the renderer's 2 s page-load timeout, which is what it tests.
@pytest.mark.slow
@pytest.mark.chromium
@chromium
def test_a_failing_render_does_not_break_a_concurrent_one() -> None:
    renderer = ChromiumRenderer(timeout=2.0)
    errors: list[Exception] = []

    def hang() -> None:
        try:
            renderer.render_html("<html><body><script>while(true){}</script>")
        except Exception as exc:  # the page-load timeout; the renderer restarts the browser
            errors.append(exc)

    try:
        renderer.start()
        worker = threading.Thread(target=hang)
        worker.start()
        # The hanging render holds the browser; this one waits for it, then gets a fresh browser.
        _wait_until_held_by_another_thread(renderer._lock, worker)
        page = renderer.render_html("<p>still rendering</p>")
        worker.join()
    finally:
        renderer.close()
    assert len(errors) == 1
    assert [b.text for b in page.blocks] == ["still rendering"]
