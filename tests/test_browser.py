"""The mask painter in a real browser: JupyterLab (headless, 127.0.0.1, random port, token) driven by
headless Chromium through Playwright. Opens a notebook that shows ``MaskPainter``, drags the mouse across
the canvas, clicks Save, and checks the PNG has paint exactly along the stroke. Then opens committed notebooks
and runs them top to bottom with *Run All* and their defaults (:data:`BROWSER_NOTEBOOKS`).

Needs ``make browser-deps`` (Debian ``chromium`` + ``playwright``, ``jupyterlab``, ``ipycanvas`` in .venv);
run with ``make test-browser`` or ``pytest -m browser``. Skips (with the reason) when a piece is missing.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DDS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
SIZE, SCALE, BRUSH = 32, 8, 3                  # image 32 px shown at 256 px on screen
STROKE = ((5.0, 16.0), (27.0, 16.0))           # image coordinates (x, y) of the drag


def _missing() -> str | None:
    for mod, hint in [("playwright", "pip install playwright"), ("jupyterlab", "pip install jupyterlab"),
                      ("ipycanvas", "pip install ipycanvas")]:
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not installed ({hint}, or `make browser-deps`)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or `make browser-deps`)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(save_path: Path) -> dict:
    src = (
        "import torch\n"
        "from ddsutils.widgets import MaskPainter\n"
        f"img = torch.rand(1, 3, {SIZE}, {SIZE}, generator=torch.Generator().manual_seed(0)) * 2 - 1\n"
        f"painter = MaskPainter(img, brush={BRUSH}, scale={SCALE}, save_path={str(save_path)!r})\n"
        "painter"
    )
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": "painter", "metadata": {},
                       "outputs": [], "source": src}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"jupyter lab did not answer {url} within {timeout:.0f} s")


def _open_and_run_all(browser, url: str, *, timeout_ms: int):
    """Open a notebook page, wait until its kernel is connected and idle, then start *Run All*."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    return page


@pytest.fixture
def jupyter_lab(tmp_path):
    """A JupyterLab server with isolated config/settings/runtime dirs; yields (base_url, token, root)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    root, home = tmp_path / "root", tmp_path / "home"
    (root).mkdir()
    conf = home / "config"
    conf.mkdir(parents=True)
    (conf / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "extension_manager": "readonly", "expose_app_in_browser": True},
        "ServerApp": {"terminals_enabled": False}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(conf), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               IPYTHONDIR=str(home / "ipython"), JUPYTER_PLATFORM_DIRS="1", TQDM_DISABLE="1",
               OMP_NUM_THREADS="1", DDS_RUNS_DIR=str(home / "runs"), DDS_FIG_DIR=str(home / "figures"))
    env.pop("JUPYTER_TOKEN", None)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/api/status?token={token}", proc, timeout=90)
        yield base, token, root
    finally:
        if proc.poll() is None:
            try:  # clean shutdown also stops the kernel
                req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
                urllib.request.urlopen(req, timeout=5).close()
                proc.wait(timeout=20)
            except Exception:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log.close()
        if proc.returncode not in (0, None, -15):
            print((tmp_path / "jupyter.log").read_text(errors="replace")[-4000:])


def test_mask_painter_in_jupyterlab(jupyter_lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, root = jupyter_lab
    save_path = tmp_path / "painted" / "mask.png"
    (root / "painter.ipynb").write_text(json.dumps(_notebook(save_path)))
    t0 = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = _open_and_run_all(browser, f"{base}/lab/tree/painter.ipynb?token={token}", timeout_ms=120_000)
            page.get_by_text(f"0 of {SIZE * SIZE} pixels painted").wait_for()
            canvas = page.locator(".jp-OutputArea-output canvas").first
            canvas.wait_for()
            box = canvas.bounding_box()
            assert box and round(box["width"]) == SIZE * SCALE == round(box["height"])
            (x0, y0), (x1, y1) = STROKE
            page.mouse.move(box["x"] + x0 * SCALE, box["y"] + y0 * SCALE)
            page.mouse.down()
            page.mouse.move(box["x"] + x1 * SCALE, box["y"] + y1 * SCALE, steps=25)
            page.mouse.up()
            # the kernel has handled the stroke once the status line counts painted pixels
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-OutputArea-output')].some(e =>"
                " /[1-9][0-9]* of \\d+ pixels painted/.test(e.textContent))")
            shot = canvas.screenshot()  # what the user sees: image drawn, stroke tinted
            page.locator(".jp-OutputArea-output button", has_text="Save").click()
            page.get_by_text("saved to").wait_for()
        finally:
            browser.close()
    elapsed = time.monotonic() - t0
    print(f"browser part: {elapsed:.1f} s")

    import io

    import torch
    from PIL import Image

    from ddsutils.lab.widgets import image_to_uint8

    img = image_to_uint8(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    screen = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)
    assert min(screen.shape[:2]) >= SIZE * SCALE  # element screenshots round the box outwards
    on, off = (16, 10), (4, 10)  # (row, col) of an image pixel on the stroke and one far from it
    tinted = np.round(img[on] * 0.5 + np.array([255, 48, 48]) * 0.5)
    assert np.abs(screen[on[0] * SCALE + SCALE // 2, on[1] * SCALE + SCALE // 2] - tinted).max() <= 4
    assert np.abs(screen[off[0] * SCALE + SCALE // 2, off[1] * SCALE + SCALE // 2] - img[off]).max() <= 4

    mask = np.asarray(Image.open(save_path)) > 127
    assert mask.shape == (SIZE, SIZE)
    # every pixel whose centre is within the brush radius (1.5 px) of the stroke is painted; nothing far away
    y = int(STROKE[0][1])
    assert mask[y - 1: y + 1, int(STROKE[0][0]) + 1: int(STROKE[1][0]) - 1].all()
    far = np.ones_like(mask)
    far[y - 3: y + 3, int(STROKE[0][0]) - 3: int(STROKE[1][0]) + 3] = False
    assert not mask[far].any()
    assert 40 <= mask.sum() <= 120


#: Notebooks that `test_notebook_runs_top_to_bottom_in_jupyterlab` opens and runs with their defaults (the demo
#: profile). The quick ones by default; DDS_BROWSER_NOTEBOOKS="00_setup_and_weights 03_dds_optimisation ..." for more.
BROWSER_NOTEBOOKS = os.environ.get("DDS_BROWSER_NOTEBOOKS", "00_setup_and_weights 01_load_generators").split()

_DONE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') return false;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const failed = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  return failed || cells.every(c => c.model.executionCount !== null);
}"""

_REPORT_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code')
  .map(c => ({count: c.model.executionCount,
              errors: c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                       .map(o => o.ename + ': ' + o.evalue)}))"""


@pytest.mark.parametrize("name", BROWSER_NOTEBOOKS)
def test_notebook_runs_top_to_bottom_in_jupyterlab(jupyter_lab, name):
    """A committed notebook, opened in JupyterLab and run with *Run All* and its defaults, executes every code
    cell without an error (outputs go to a temporary DDS_RUNS_DIR, set for the server and so for the kernel)."""
    from playwright.sync_api import sync_playwright

    from ddsutils.core import paths

    base, token, root = jupyter_lab
    src = paths.repo_root() / "notebooks" / f"{name}.ipynb"
    (root / src.name).write_bytes(src.read_bytes())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            t0 = time.monotonic()
            page = _open_and_run_all(browser, f"{base}/lab/tree/{src.name}?token={token}", timeout_ms=600_000)
            page.wait_for_timeout(500)
            page.wait_for_function(_DONE_JS, polling=500)
            report = page.evaluate(_REPORT_JS)
        finally:
            browser.close()
    print(f"{name}: {len(report)} code cells in {time.monotonic() - t0:.1f} s")
    errors = [(i, c["errors"]) for i, c in enumerate(report) if c["errors"]]
    assert not errors, f"{name}: cells with errors {errors}"
    assert all(c["count"] is not None for c in report), f"{name}: not every cell ran: {report}"
    assert len(report) >= 5
