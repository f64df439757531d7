"""Notebook widgets: a brush mask painter for labelling one generated image (the segmenter's one shot), and a
DDS panel that reruns one toy-world pair (:class:`DDSPanel`).

- :class:`MaskEditor`: the painting logic in plain Python / numpy (no widget import): brush strokes rasterised
  into a binary mask, paint / erase, a bounded undo stack, clear, overlay rendering, an atomic PNG save.
- :class:`MaskPainter`: the JupyterLab UI around it: an ``ipycanvas.Canvas`` with the mask overlaid (mouse drag
  paints), paint / erase toggle, brush size, Undo, Clear, a save path and Save. ``ipywidgets`` and
  ``ipycanvas`` are imported only when a painter is created.
- :class:`PhotoUpload`: an ``ipywidgets.FileUpload`` that keeps the chosen image file on disk (its
  :meth:`~PhotoUpload.receive` checks and writes the bytes without any widget).

Saved masks are 8-bit greyscale PNGs (0 / 255) at the image's resolution; load them with
:func:`ddsutils.core.segmenter.load_mask_png`, or take ``painter.mask`` (``[1, 1, H, W]`` float {0, 1}).

    img = G(z)                                            # [1, 3, 64, 64] in [-1, 1]
    painter = MaskPainter(img, brush=4, save_path="runs/masks/hair.png")
    painter                                               # paint, then click Save
    seg = segmenter.train_segmenter(G, z, painter.mask, part="hair")

Used in: notebooks/02_oneshot_segmenter.ipynb, notebooks/03_dds_optimisation.ipynb (DDSPanel),
notebooks/09_your_own_image.ipynb (PhotoUpload, MaskPainter).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MaskEditor", "MaskPainter", "DDSPanel", "PhotoUpload", "image_to_uint8"]

BBox = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open, in image pixels


def image_to_uint8(img: Any) -> np.ndarray:
    """An image as uint8 ``[H, W, 3]``.

    Accepts a torch tensor ``[3, H, W]`` / ``[1, 3, H, W]`` in [-1, 1] (generator output; clamped), a
    numpy array ``[H, W, 3]`` (uint8, or float in [0, 1]) or ``[H, W]`` grey, or a PIL image.
    """
    if hasattr(img, "detach"):  # torch tensor, without importing torch here
        from .viz import to_uint8

        t = img.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"pass one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"image tensor must be [3, H, W] or [1, 3, H, W], got {list(t.shape)}")
        return np.ascontiguousarray(to_uint8(t))
    if hasattr(img, "convert") and hasattr(img, "size"):  # PIL
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image array must be [H, W, 3], got {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(np.asarray(arr, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


class MaskEditor:
    """Binary mask painting with a round brush, erase, undo and save (no widgets).

    Coordinates ``(x, y)`` are continuous image pixels: ``x`` = column, ``y`` = row; pixel ``(row i,
    col j)`` covers ``[j, j + 1) x [i, i + 1)`` and its centre is ``(j + 0.5, i + 0.5)``. A stroke paints
    every pixel whose centre lies within ``max(brush / 2, sqrt(1/2))`` of the polyline through its points
    (so a 1-px brush always paints the pixel under the pointer).

    Args:
        height, width: mask size (the image's).
        brush: brush diameter in image pixels (> 0).
        mask: optional initial mask ``[H, W]`` (anything > 0 counts as painted).
        max_undo: snapshots kept for undo (each is ``H*W`` bytes).

    Attributes:
        mask: uint8 ``[H, W]`` with values in {0, 1} (the live array; use :meth:`to_tensor` for a copy).

    Used in: notebooks/02_oneshot_segmenter.ipynb (through :class:`MaskPainter`).
    """

    def __init__(self, height: int, width: int, *, brush: float = 5.0, mask: Any = None, max_undo: int = 100):
        if height < 1 or width < 1:
            raise ValueError(f"mask size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        self.brush = float(brush)
        self.max_undo = int(max_undo)
        self.mask = np.zeros((self.height, self.width), dtype=np.uint8)
        if mask is not None:
            m = np.squeeze(mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask))
            if m.shape != self.mask.shape:
                raise ValueError(f"initial mask is {m.shape}, expected {self.mask.shape}")
            self.mask[:] = m > 0
        self._undo: list[np.ndarray] = []
        self._last: tuple[float, float] | None = None
        self._value = 1

    # -- state ------------------------------------------------------------------------------------

    @property
    def brush(self) -> float:
        """Brush diameter in image pixels."""
        return self._brush

    @brush.setter
    def brush(self, value: float) -> None:
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"brush must be a positive number of pixels, got {value}")
        self._brush = float(value)

    @property
    def painted(self) -> int:
        """Number of painted pixels."""
        return int(self.mask.sum())

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def stroking(self) -> bool:
        """Whether a stroke is in progress."""
        return self._last is not None

    def _push(self) -> None:
        self._undo.append(self.mask.copy())
        if len(self._undo) > self.max_undo:
            del self._undo[0]

    # -- strokes ----------------------------------------------------------------------------------

    def _stamp(self, x0: float, y0: float, x1: float, y1: float) -> BBox | None:
        """Set every pixel whose centre is within the brush radius of segment (x0,y0)-(x1,y1)."""
        r = max(self.brush / 2.0, math.sqrt(0.5))
        c0 = max(int(math.floor(min(x0, x1) - r)), 0)
        c1 = min(int(math.ceil(max(x0, x1) + r)) + 1, self.width)
        r0 = max(int(math.floor(min(y0, y1) - r)), 0)
        r1 = min(int(math.ceil(max(y0, y1) + r)) + 1, self.height)
        if c0 >= c1 or r0 >= r1:
            return None
        px = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
        py = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
        dx, dy = x1 - x0, y1 - y0
        len2 = dx * dx + dy * dy
        if len2 > 0:
            t = np.clip(((px - x0) * dx + (py - y0) * dy) / len2, 0.0, 1.0)
        else:
            t = np.zeros((1, 1))
        d2 = (px - (x0 + t * dx)) ** 2 + (py - (y0 + t * dy)) ** 2
        hit = d2 <= r * r
        if not hit.any():
            return None
        region = self.mask[r0:r1, c0:c1]
        region[hit] = self._value
        return r0, r1, c0, c1

    def begin_stroke(self, x: float, y: float, *, erase: bool = False) -> BBox | None:
        """Start a stroke at ``(x, y)`` (paints a dot; one undo step per stroke). Returns the changed bbox."""
        if self.stroking:
            self.end_stroke()
        self._push()
        self._value = 0 if erase else 1
        self._last = (float(x), float(y))
        return self._stamp(x, y, x, y)

    def extend_stroke(self, x: float, y: float) -> BBox | None:
        """Continue the stroke to ``(x, y)`` (no-op without :meth:`begin_stroke`). Returns the changed bbox."""
        if self._last is None:
            return None
        x0, y0 = self._last
        self._last = (float(x), float(y))
        return self._stamp(x0, y0, x, y)

    def end_stroke(self) -> None:
        """Finish the current stroke."""
        self._last = None

    def stroke(self, points: Any, *, erase: bool = False) -> None:
        """Paint a whole polyline ``[(x, y), ...]`` as one undoable stroke."""
        pts = [tuple(map(float, p)) for p in points]
        if not pts:
            return
        self.begin_stroke(*pts[0], erase=erase)
        for p in pts[1:]:
            self.extend_stroke(*p)
        self.end_stroke()

    def undo(self) -> bool:
        """Revert the last stroke or clear; returns False when there is nothing to undo."""
        self.end_stroke()
        if not self._undo:
            return False
        self.mask[:] = self._undo.pop()
        return True

    def clear(self) -> None:
        """Erase everything (undoable)."""
        self.end_stroke()
        if self.mask.any():
            self._push()
            self.mask[:] = 0

    # -- output -----------------------------------------------------------------------------------

    def overlay(self, img: np.ndarray, *, colour: tuple[int, int, int] = (255, 48, 48), alpha: float = 0.5,
                bbox: BBox | None = None) -> np.ndarray:
        """The image with painted pixels tinted: uint8 ``[h, w, 3]`` (the ``bbox`` region, or all of it)."""
        y0, y1, x0, x1 = bbox if bbox is not None else (0, self.height, 0, self.width)
        base = img[y0:y1, x0:x1].astype(np.float32)
        m = self.mask[y0:y1, x0:x1, None].astype(np.float32) * float(alpha)
        out = base * (1.0 - m) + np.asarray(colour, dtype=np.float32)[None, None] * m
        return np.clip(np.round(out), 0, 255).astype(np.uint8)

    def to_png_bytes(self) -> bytes:
        """The mask as an 8-bit greyscale PNG (0 / 255), no metadata."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray((self.mask * 255).astype(np.uint8)).save(buf, format="PNG", optimize=False)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the mask PNG atomically (folders are created); returns the path."""
        from .viz import atomic_write_bytes

        if not str(path).strip():
            raise ValueError("no save path given")
        return atomic_write_bytes(self.to_png_bytes(), Path(path).expanduser())

    def to_tensor(self):
        """A copy of the mask as a float32 torch tensor ``[1, 1, H, W]`` in {0, 1}."""
        import torch

        return torch.from_numpy(self.mask.astype(np.float32).copy())[None, None]


class MaskPainter:
    """Paint a part mask on an image in JupyterLab (ipywidgets + ipycanvas).

    Drag on the image to paint (or erase, with the toggle); the slider sets the brush diameter in image
    pixels; Undo reverts the last stroke or Clear; Save writes a 0/255 PNG to the path in the text box.
    Display the painter by leaving it as the last expression of a cell (or ``display(painter)``).

    Args:
        img: the image to label: tensor ``[3, H, W]`` / ``[1, 3, H, W]`` in [-1, 1], uint8 array
            ``[H, W, 3]`` or a PIL image.
        brush: initial brush diameter in image pixels.
        save_path: initial save path (editable in the UI).
        scale: screen pixels per image pixel (default: about 512 px on screen).
        colour, alpha: overlay colour (RGB 0-255) and opacity of painted pixels.
        mask: optional initial mask ``[H, W]`` / ``[1, 1, H, W]``.

    Attributes:
        editor: the :class:`MaskEditor` holding the mask.
        widget: the ``ipywidgets.VBox`` that is displayed.

    Raises:
        ImportError: ipywidgets or ipycanvas is missing (the message says what to install).

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """

    def __init__(self, img: Any, *, brush: int = 5, save_path: str | os.PathLike | None = None,
                 scale: int | None = None, colour: tuple[int, int, int] = (255, 48, 48), alpha: float = 0.5,
                 mask: Any = None):
        try:
            import ipywidgets as W
            from ipycanvas import Canvas
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"MaskPainter needs ipywidgets and ipycanvas ({exc}); install them with "
                              "`pip install ipywidgets ipycanvas` (JupyterLab 4 picks up the prebuilt "
                              "extensions; reload the browser tab)") from exc
        self.image = image_to_uint8(img)
        h, w = self.image.shape[:2]
        self.scale = int(scale) if scale else max(1, round(512 / max(h, w)))
        self.colour, self.alpha = tuple(int(c) for c in colour), float(alpha)
        self.editor = MaskEditor(h, w, brush=brush, mask=mask)
        s = self.scale
        self.canvas = Canvas(width=w * s, height=h * s, layout=W.Layout(width=f"{w * s}px", height=f"{h * s}px"))
        self.mode = W.ToggleButtons(options=["paint", "erase"], value="paint", description="mode",
                                    style={"button_width": "64px"})
        self.brush_slider = W.IntSlider(value=int(brush), min=1, max=max(8, max(h, w) // 4), description="brush",
                                        continuous_update=True)
        self.undo_button = W.Button(description="Undo", icon="undo", tooltip="undo the last stroke / clear")
        self.clear_button = W.Button(description="Clear", icon="trash", tooltip="erase everything (undoable)")
        self.path = W.Text(value=str(save_path) if save_path is not None else "", placeholder="mask.png",
                           description="save to", layout=W.Layout(width="360px"))
        self.save_button = W.Button(description="Save", icon="save", button_style="primary",
                                    tooltip="write the mask as a 0/255 PNG")
        self.status = W.HTML(value=self._status_text())
        self.widget = W.VBox([
            self.canvas,
            W.HBox([self.mode, self.brush_slider]),
            W.HBox([self.undo_button, self.clear_button, self.path, self.save_button]),
            self.status,
        ])
        self.brush_slider.observe(self._on_brush, names="value")
        self.undo_button.on_click(lambda _: self.undo())
        self.clear_button.on_click(lambda _: self.clear())
        self.save_button.on_click(lambda _: self._on_save())
        self.canvas.on_mouse_down(self._on_down)
        self.canvas.on_mouse_move(self._on_move)
        self.canvas.on_mouse_up(self._on_up)
        self.canvas.on_mouse_out(self._on_up)
        self.canvas.on_client_ready(self.redraw)
        self.last_saved: Path | None = None
        self.redraw()

    # -- display ----------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def mask(self):
        """The current mask as float32 ``[1, 1, H, W]`` in {0, 1} (a copy)."""
        return self.editor.to_tensor()

    def _status_text(self, extra: str = "") -> str:
        h, w = self.editor.height, self.editor.width
        msg = f"{self.editor.painted} of {h * w} pixels painted ({h}x{w})"
        return msg + (f" &mdash; {extra}" if extra else "")

    def _draw(self, bbox) -> None:
        if bbox is None:
            return
        from ipycanvas import hold_canvas

        y0, y1, x0, x1 = bbox
        s = self.scale
        patch = self.editor.overlay(self.image, colour=self.colour, alpha=self.alpha, bbox=bbox)
        if s > 1:
            patch = patch.repeat(s, axis=0).repeat(s, axis=1)
        rgba = np.concatenate([patch, np.full(patch.shape[:2] + (1,), 255, np.uint8)], axis=2)  # PNG, lossless
        with hold_canvas():
            self.canvas.put_image_data(rgba, x0 * s, y0 * s)

    def redraw(self, *_: Any) -> None:
        """Draw the whole image and mask."""
        self._draw((0, self.editor.height, 0, self.editor.width))

    # -- actions ----------------------------------------------------------------------------------

    def undo(self) -> bool:
        """Undo the last stroke or clear (also bound to the Undo button)."""
        done = self.editor.undo()
        self.redraw()
        self.status.value = self._status_text("undone" if done else "nothing to undo")
        return done

    def clear(self) -> None:
        """Erase the mask (undoable; also bound to the Clear button)."""
        self.editor.clear()
        self.redraw()
        self.status.value = self._status_text("cleared")

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the mask PNG to ``path`` (default: the path box); returns the path."""
        target = path if path is not None else self.path.value
        out = self.editor.save(target)
        self.last_saved = out
        self.status.value = self._status_text(f"saved to {out}")
        return out

    def _on_save(self) -> None:
        try:
            self.save()
        except Exception as exc:  # show, don't raise into the widget callback
            self.status.value = self._status_text(f"<b>not saved</b>: {exc}")

    def _on_brush(self, change: dict) -> None:
        self.editor.brush = change["new"]

    def _on_down(self, x: float, y: float) -> None:
        s = self.scale
        self._draw(self.editor.begin_stroke(x / s, y / s, erase=self.mode.value == "erase"))

    def _on_move(self, x: float, y: float) -> None:
        if self.editor.stroking:
            s = self.scale
            self._draw(self.editor.extend_stroke(x / s, y / s))

    def _on_up(self, x: float, y: float) -> None:
        if self.editor.stroking:
            s = self.scale
            self._draw(self.editor.extend_stroke(x / s, y / s))
            self.editor.end_stroke()
            self.status.value = self._status_text()


def _ipywidgets(owner: str) -> Any:
    """The ``ipywidgets`` module, or an ImportError naming the widget that needs it and the fix."""
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{owner} needs ipywidgets ({exc}); `pip install ipywidgets`") from exc
    return ipywidgets


class DDSPanel:
    """Rerun DDS on one toy-world pair from a notebook: mode, mask, blend layer, dilation, weights, seed.

    :meth:`run` does the work without any widget (tested headless): it draws ``z* ~ N(0, I)`` from ``seed``,
    takes the judge parser's masks of ``x_s = G_s(z*)`` and ``x_t = G_t(z*)``, runs :func:`ddsutils.dds.optimise`
    and scores the result with the domain judge next to the paste (:func:`ddsutils.scoring.score_cell`).
    Displaying the panel (last expression of a cell) shows ipywidgets controls, a Run button and the images
    ``x_s, x_t, paste, x̂`` with the scores; blend mode reruns on every change (it takes well under a second).

    Args:
        G_s, G_t: toy-world generators of the same architecture.
        source, target: their styles (:data:`ddsutils.toyworld.STYLES`), for the judge.
        num_steps: Adam steps of the optimising modes (paper, release, refine).
        backbone_weights: ``"imagenet"`` or ``"random"`` (VGG-16 for paper / release mode).
        device: where DDS runs.
        scale: screen pixels per image pixel.

    Used in: notebooks/03_dds_optimisation.ipynb.
    """

    MODES = ("blend", "refine", "paper", "release")

    def __init__(self, G_s: Any, G_t: Any, *, source: str, target: str, num_steps: int = 50,
                 backbone_weights: str = "imagenet", device: str = "cpu", scale: int = 3):
        self.G_s, self.G_t, self.source, self.target = G_s, G_t, source, target
        self.num_steps, self.backbone_weights, self.device, self.scale = num_steps, backbone_weights, device, scale
        self.last: dict[str, Any] | None = None
        self._ui: Any = None

    def run(self, *, mode: str = "blend", mask: str = "hair", blend_start: int | None = None, dilation: int = 1,
            alpha: float = 0.9, beta: float = 1.0, gamma: float = 0.5, seed: int = 0) -> dict[str, Any]:
        """One DDS run; returns ``{"images": [4, 3, H, W] (x_s, x_t, paste, x̂), "scores": {...}, "seconds"}``."""
        import time

        import torch

        from ..core import dds
        from ..toy import scoring

        z = torch.randn(1, self.G_s.style_dim, generator=torch.Generator().manual_seed(int(seed)))
        p = scoring.oracle_pair(self.G_s, self.G_t, z.to(self.device), mask)
        t0 = time.perf_counter()
        r = dds.optimise(self.G_s, self.G_t, z_star=p["z"], x_s=p["x_s"], x_t=p["x_t"], y_s=p["y_s"], y_t=p["y_t"],
                         mode=mode, blend_start=blend_start, dilation=dilation, alpha=alpha, beta=beta, gamma=gamma,
                         num_steps=self.num_steps, snapshot_every=None, backbone_weights=self.backbone_weights,
                         n_mean_latent=2048, seed=int(seed), device=self.device, progress=False)
        seconds = time.perf_counter() - t0
        paste = p["x_s"] * p["y_s"] + p["x_t"] * (1 - p["y_s"])
        scores = scoring.score_cell({"paste": paste, mode: r.image}, x_t=p["x_t"], y_s=p["y_s"], y_t=p["y_t"],
                                    source=self.source, target=self.target)
        images = torch.cat([p["x_s"].cpu(), p["x_t"].cpu(), paste.cpu(), r.image])
        self.last = {"images": images, "scores": scores, "seconds": seconds, "result": r}
        return self.last

    def _build(self) -> Any:
        W = _ipywidgets("DDSPanel")
        n_layers = self.G_t.num_layers
        c = {
            "mode": W.Dropdown(options=self.MODES, value="blend", description="mode"),
            "mask": W.Dropdown(options=["eyes_nose_mouth", "hair"], value="hair", description="mask"),
            "blend_start": W.IntSlider(value=n_layers - 2, min=0, max=n_layers, description="blend layer"),
            "dilation": W.IntSlider(value=1, min=0, max=4, description="dilation"),
            "alpha": W.FloatSlider(value=0.9, min=0, max=5, step=0.1, description="α"),
            "beta": W.FloatSlider(value=1.0, min=0, max=5, step=0.1, description="β"),
            "gamma": W.FloatSlider(value=0.5, min=0, max=5, step=0.1, description="γ"),
            "seed": W.IntText(value=0, description="seed"),
        }
        button = W.Button(description="Run", button_style="primary", icon="play")
        image, text = W.Image(format="png"), W.HTML()

        def show(*_: Any) -> None:
            text.value = f"running {c['mode'].value} …"
            out = self.run(**{k: w.value for k, w in c.items()})
            image.value = self._png(out["images"])
            rows = "".join(f"<tr><td>{m}</td><td>{s['inside_source']:.2f}</td><td>{s['relative_inside']:.2f}</td>"
                           f"<td>{s['outside_target']:.2f}</td><td>{s['outside_lpips']:.3f}</td></tr>"
                           for m, s in out["scores"].items())
            text.value = (f"<b>x_s, x_t, paste, x̂</b> ({out['seconds']:.1f} s)<table><tr><th>method</th>"
                          "<th>in-mask source</th><th>÷ paste</th><th>outside target</th><th>outside LPIPS</th>"
                          f"</tr>{rows}</table>")

        button.on_click(show)
        for w in c.values():
            w.observe(lambda ch: show() if c["mode"].value == "blend" else None, names="value")
        show()
        return W.VBox([W.HBox([W.VBox(list(c.values())[:4]), W.VBox(list(c.values())[4:]), button]), image, text])

    def _png(self, images: Any) -> bytes:
        from PIL import Image

        from .viz import image_grid, to_uint8

        arr = to_uint8(image_grid(images, nrow=len(images)))
        arr = arr.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a frontend
        from IPython.display import display

        if self._ui is None:
            self._ui = self._build()
        display(self._ui)


class PhotoUpload:
    """Upload an image file from a notebook (JupyterLab): an ``ipywidgets.FileUpload`` that keeps the file on disk.

    :meth:`receive` does the work without any widget (tested headless): it checks that Pillow can read the bytes,
    writes them atomically to ``save_dir/<file name>`` (the name reduced to letters, digits, ``.``, ``-``, ``_``)
    and sets :attr:`path`. Displaying the object (last expression of a cell) shows the upload button, a status
    line and a preview; each upload calls :meth:`receive` (an error is shown, not raised). In a batch run
    (papermill, CI) nobody uploads, :attr:`path` stays ``None`` and ``upload.path or image_path`` falls back to
    the notebook's parameter.

    Args:
        save_dir: folder for the uploaded files (created on the first upload), e.g. ``run.out / "uploads"``.
        max_bytes: refuse larger files.

    Attributes:
        path: the last uploaded file, or ``None``.

    Used in: notebooks/09_your_own_image.ipynb.
    """

    def __init__(self, save_dir: str | os.PathLike, *, max_bytes: int = 20_000_000):
        self.save_dir, self.max_bytes = Path(save_dir), int(max_bytes)
        self.path: Path | None = None
        self._ui: Any = None

    def receive(self, name: str, content: bytes) -> Path:
        """Check and save one uploaded file; returns its path (also :attr:`path`).

        Raises:
            ValueError: the file is empty, larger than ``max_bytes`` or not an image Pillow reads.
        """
        import re

        from PIL import Image, UnidentifiedImageError

        from ..core.files import atomic_write_bytes

        data = bytes(content)
        if not data or len(data) > self.max_bytes:
            raise ValueError(f"{name}: {len(data)} bytes; upload an image file of 1 byte to {self.max_bytes} bytes")
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"{name} is not an image Pillow can read ({type(exc).__name__}); upload a PNG or "
                             "JPEG") from None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip(".") or "upload"
        self.path = atomic_write_bytes(data, self.save_dir / safe)
        return self.path

    def _build(self) -> Any:
        W = _ipywidgets("PhotoUpload")
        button = W.FileUpload(accept="image/*", multiple=False, description="Upload a photo")
        status = W.HTML("no file yet: the notebook uses <code>image_path</code> (empty: a toy render)")
        preview = W.Image(layout=W.Layout(max_width="256px"))

        def on_upload(change: dict) -> None:
            for f in change["new"]:  # ipywidgets 8: a tuple of {"name", "content", ...}
                try:
                    path = self.receive(f["name"], f["content"])
                except ValueError as exc:
                    status.value = f"<b>not used</b>: {exc}"
                    continue
                preview.format, preview.value = path.suffix.lstrip(".").lower() or "png", path.read_bytes()
                status.value = f"saved to {path}; run the next cells again to use it"

        button.observe(on_upload, names="value")
        return W.VBox([button, status, preview])

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a frontend
        from IPython.display import display

        if self._ui is None:
            self._ui = self._build()
        display(self._ui)
