"""Normal renderings of the synthetic products: pose, lighting and texture noise, drawn with numpy.

Each renderer returns the picture and a Scene recording what it drew (the background behind the product,
the bare board under the components, the parts), so defects can be drawn consistently afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from services.common.errors import InvalidArgument
from services.mmad.catalogue import CATEGORIES, SIZE, CategorySpec

# --------------------------------------------------------------------------- drawing helpers


@lru_cache(maxsize=4)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return y, x


def _smooth_noise(rng: np.random.Generator, size: int, cells: int = 6) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: lighting unevenness and texture blotches."""
    small = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def blend(img: np.ndarray, color: np.ndarray | Sequence[float], alpha: np.ndarray) -> None:
    """In place: img = img * (1 - alpha) + color * alpha (alpha HxW, color RGB or HxWx3)."""
    a = alpha[..., None]
    img *= 1.0 - a
    img += np.asarray(color, dtype=np.float32) * a


def _box_alpha(u: np.ndarray, v: np.ndarray, w: float, h: float, r: float = 0.0) -> np.ndarray:
    """Anti-aliased coverage of a (rounded) box of size w x h centred at u = v = 0."""
    qx = np.abs(u) - (w / 2 - r)
    qy = np.abs(v) - (h / 2 - r)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    inside = np.minimum(np.maximum(qx, qy), 0)
    return np.clip(0.5 - (outside + inside - r), 0, 1)


def _box_any(mask: np.ndarray, r: int, outside: bool = False) -> np.ndarray:
    """True where any pixel of the (2r+1)^2 square around it is True; `outside` fills beyond the image.

    Separable running sums: about 0.3 ms at 256 px for any r (PIL's rank filters take 5-10 ms for large r).
    """
    if r <= 0:
        return mask.astype(bool)
    m = np.pad(mask.astype(np.int32), r, constant_values=int(outside))
    c = np.zeros((m.shape[0] + 1, m.shape[1]), np.int32)
    np.cumsum(m, axis=0, out=c[1:])
    m = c[2 * r + 1 :] - c[: -2 * r - 1]
    c = np.zeros((m.shape[0], m.shape[1] + 1), np.int32)
    np.cumsum(m, axis=1, out=c[:, 1:])
    return (c[:, 2 * r + 1 :] - c[:, : -2 * r - 1]) > 0


def dilate(mask: np.ndarray, k: int = 3) -> np.ndarray:
    """Grow by k // 2 pixels (a k x k square)."""
    return _box_any(mask, k // 2)


def erode(mask: np.ndarray, k: int) -> np.ndarray:
    """Shrink by k // 2 pixels, treating outside the image as background (so defects stay inside the frame)."""
    return ~_box_any(~mask.astype(bool), k // 2, outside=True)


@dataclass
class Part:
    """A named piece of a product that a defect can remove or move (a board component, the screw tip)."""

    name: str  # e.g. "integrated-circuit chip"
    kind: str  # e.g. "chip", "resistor", "capacitor"
    footprint: np.ndarray  # bool HxW


@dataclass
class Scene:
    """What render_normal drew, so defects can be drawn consistently with the product.

    Attributes:
        background: the picture without the product (what shows through a hole or where a part is gone).
        bare: for boards, the picture without components (pads showing); else None.
        object_mask: pixels of the product surface.
        parts: pieces a missing-part or misplacement defect acts on.
        facts: answers to object questions (fact name -> value), updated by defects that change them.
        geometry: pose parameters, useful for placing defects.
    """

    category: str
    size: int
    background: np.ndarray
    object_mask: np.ndarray
    parts: list[Part] = field(default_factory=list)
    bare: np.ndarray | None = None
    facts: dict[str, str] = field(default_factory=dict)
    geometry: dict[str, float] = field(default_factory=dict)
    _interior: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def interior(self, margin: int) -> np.ndarray:
        """The object mask shrunk by `margin` pixels (cached), so defects stay on the product."""
        if margin not in self._interior:
            self._interior[margin] = erode(self.object_mask, 2 * margin + 1) if margin > 0 else self.object_mask
        return self._interior[margin]


def to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), mode="RGB")


def from_image(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


# --------------------------------------------------------------------------- normal renderings


def _render_round_part(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Scene]:
    s = size / 256
    y, x = grid(size)
    cx = size / 2 + rng.uniform(-9, 9) * s
    cy = size / 2 + rng.uniform(-9, 9) * s
    turn = rng.uniform(0, 2 * math.pi)
    big_r = rng.uniform(86, 96) * s
    small_r = big_r * rng.uniform(0.33, 0.37)
    light = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(0.07, 0.15)
    lx, ly = math.cos(light), math.sin(light)

    bg_level = rng.uniform(0.13, 0.21)
    bg = bg_level + 0.025 * _smooth_noise(rng, size) + rng.normal(0, 0.01, (size, size)).astype(np.float32)
    dx, dy = x - cx, y - cy
    r = np.hypot(dx, dy)
    shadow = np.clip(big_r + 3 - np.hypot(dx - 5 * s * lx, dy - 5 * s * ly), 0, 6) / 6
    bg = bg * (1 - 0.45 * shadow)
    background = np.repeat(bg[..., None], 3, axis=2) * np.array([0.97, 1.0, 1.05], np.float32)

    metal = (
        0.6
        + rng.uniform(-0.05, 0.05)
        - strength * (dx * lx + dy * ly) / big_r
        + 0.03 * np.sin(r * 0.85 * (1 / s) + rng.uniform(0, 6.28))
        + 0.03 * _smooth_noise(rng, size, 5)
    )
    rim = np.clip(1 - (big_r - r) / (5 * s), 0, 1) + np.clip(1 - (r - small_r) / (4 * s), 0, 1)
    cos_t = (dx * lx + dy * ly) / np.maximum(r, 1e-3)
    metal = metal - 0.14 * rim * cos_t
    tint = np.array([1.0, 0.985, 0.955], np.float32) + rng.uniform(-0.015, 0.015, 3).astype(np.float32)
    metal_rgb = metal[..., None] * tint

    alpha = np.clip(big_r + 0.5 - r, 0, 1) * np.clip(r - small_r + 0.5, 0, 1)
    ring_r = (big_r + small_r) / 2
    hole_r = 0.075 * big_r
    for k in range(4):
        a = turn + k * math.pi / 2
        hx, hy = cx + ring_r * math.cos(a), cy + ring_r * math.sin(a)
        alpha *= np.clip(np.hypot(x - hx, y - hy) - hole_r + 0.5, 0, 1)
    img = background.copy()
    blend(img, metal_rgb, alpha)
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    scene = Scene(
        category="round_part",
        size=size,
        background=background,
        object_mask=alpha > 0.5,
        facts={"mounting_holes": "4", "finish": "turned"},
        geometry={"cx": cx, "cy": cy, "r": big_r, "r_in": small_r},
    )
    return img, scene


_WARP = np.array([0.80, 0.72, 0.56], np.float32)
_WEFT = np.array([0.74, 0.66, 0.50], np.float32)


def _render_woven_fabric(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Scene]:
    s = size / 256
    y, x = grid(size)
    ang = rng.uniform(-0.12, 0.12)
    pitch = rng.uniform(7.5, 9.0) * s
    c, sn = math.cos(ang), math.sin(ang)
    u = (x - size / 2) * c + (y - size / 2) * sn + rng.uniform(0, 2 * pitch)
    v = -(x - size / 2) * sn + (y - size / 2) * c + rng.uniform(0, 2 * pitch)
    a, b = u / pitch, v / pitch
    fa, fb = a - np.floor(a), b - np.floor(b)
    weft_top = ((np.floor(a) + np.floor(b)) % 2) == 0
    across_weft, across_warp = np.sin(math.pi * fb), np.sin(math.pi * fa)
    shade = np.where(
        weft_top,
        np.sqrt(across_weft) * (0.78 + 0.22 * across_warp),
        np.sqrt(across_warp) * (0.78 + 0.22 * across_weft),
    )
    jitter = 1 + rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    col = np.where(weft_top[..., None], _WEFT * jitter, _WARP * jitter)
    light = rng.uniform(0, 2 * math.pi)
    grad = rng.uniform(0.05, 0.14) * ((x - size / 2) * math.cos(light) + (y - size / 2) * math.sin(light)) / size
    level = (0.3 + 0.7 * shade) * (1 + rng.uniform(-0.06, 0.06) + grad + 0.05 * _smooth_noise(rng, size, 7))
    level = level + rng.normal(0, 0.03, (size, size)).astype(np.float32)
    img = col * level[..., None]
    background = np.full((size, size, 3), 0.05, np.float32) + 0.02 * _smooth_noise(rng, size)[..., None]
    scene = Scene(
        category="woven_fabric",
        size=size,
        background=background,
        object_mask=np.ones((size, size), bool),
        facts={"weave": "plain", "color": "beige"},
        geometry={"pitch": pitch, "angle": ang},
    )
    return img.astype(np.float32), scene


# Board layout in board coordinates (pixels at 256 px, origin at the board centre). Component centres sit well
# inside the 3x3 localisation cells (cell borders are at about +-43 here), so "where is it?" is never a coin toss.
_CHIPS = (("chip", -66.0, -64.0, 48.0, 26.0), ("chip", 66.0, 64.0, 42.0, 24.0))
_RESISTORS = (
    ("resistor", -12.0, -70.0, 18.0, 7.0),
    ("resistor", 14.0, -70.0, 18.0, 7.0),
    ("resistor", -70.0, 12.0, 7.0, 18.0),
    ("resistor", -70.0, -14.0, 7.0, 18.0),
)
_CAPACITORS = (("capacitor", 0.0, 2.0, 9.0, 9.0), ("capacitor", 70.0, -4.0, 8.0, 8.0))
_TRACES = (
    ((-42, -64), (-28, -64), (-28, -70), (-21, -70)),
    ((-3, -70), (5, -70)),
    ((23, -70), (50, -70), (50, -4), (65, -4)),
    ((5, 2), (38, 2), (38, 64), (45, 64)),
    ((-5, 2), (-50, 2), (-50, 21), (-70, 21)),
    ((-70, -23), (-70, -44), (-66, -50)),
    ((-70, -5), (-58, -5), (-58, 3)),
    ((-70, 21), (-70, 84), (44, 84), (44, 78)),
    ((75, -4), (96, -4), (96, 40), (80, 52)),
    ((-96, -40), (-96, 60)),
)
_COMPONENTS: tuple[tuple[str, float, float, float, float], ...] = (*_CHIPS, *_RESISTORS, *_CAPACITORS)
_COMPONENT_NAMES = {"chip": "integrated-circuit chip", "resistor": "resistor", "capacitor": "capacitor"}
_BOARD_GREEN = np.array([0.12, 0.42, 0.22], np.float32)
_PAD = np.array([0.78, 0.74, 0.62], np.float32)
_SILVER = np.array([0.82, 0.84, 0.86], np.float32)


@dataclass
class _BoardFrame:
    """The board's pose: board coordinates (u, v, in 256-px units) <-> pixels."""

    size: int
    s: float
    cx: float
    cy: float
    ang: float

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> _BoardFrame:
        s = size / 256
        cx = size / 2 + rng.uniform(-6, 6) * s
        cy = size / 2 + rng.uniform(-6, 6) * s
        return cls(size, s, cx, cy, rng.uniform(-0.06, 0.06))

    def to_uv(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, sn = math.cos(self.ang), math.sin(self.ang)
        dx, dy = px - self.cx, py - self.cy
        return (dx * c + dy * sn) / self.s, (-dx * sn + dy * c) / self.s

    def to_xy(self, u: float, v: float) -> tuple[float, float]:
        c, sn = math.cos(self.ang), math.sin(self.ang)
        return self.cx + (u * c - v * sn) * self.s, self.cy + (u * sn + v * c) * self.s

    def window(self, u0: float, v0: float, rad: float) -> tuple[slice, slice]:
        """The pixel window around board point (u0, v0) holding a radius of `rad` board units."""
        px, py = self.to_xy(u0, v0)
        rr = rad * self.s + 3
        return (
            slice(max(0, int(py - rr)), min(self.size, int(py + rr) + 1)),
            slice(max(0, int(px - rr)), min(self.size, int(px + rr) + 1)),
        )


def _draw_bare_board(
    img: np.ndarray, frame: _BoardFrame, u: np.ndarray, v: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The green board with its mounting holes, copper traces, silkscreen outlines and pads; returns its alpha."""
    size = frame.size
    board = _box_alpha(u, v, 228, 212, 6)
    for hu, hv in ((-102, -94), (102, -94), (-102, 94), (102, 94)):
        board *= np.clip(np.hypot(u - hu, v - hv) - 5 + 0.5, 0, 1)
    green = _BOARD_GREEN * (1 + 0.04 * rng.normal(0, 1, (size, size, 1)).astype(np.float32))
    blend(img, green, board)

    trace_layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(trace_layer)
    for poly in _TRACES:
        draw.line([frame.to_xy(pu, pv) for pu, pv in poly], fill=255, width=max(1, round(3 * frame.s)), joint="curve")
    traces = np.asarray(trace_layer, np.float32) / 255 * board
    blend(img, _BOARD_GREEN * 1.45, traces * 0.8)

    for kind, pu, pv, w, h in _COMPONENTS:  # silkscreen outlines and pads belong to the bare board
        sy, sx = frame.window(pu, pv, max(w, h) / 2 + 9)
        uu, vv = u[sy, sx] - pu, v[sy, sx] - pv
        if kind == "capacitor":
            d = np.hypot(uu, vv)
            outline = np.clip(1 - np.abs(d - (w + 3)) / 0.9, 0, 1)
            pads = _box_alpha(uu - w * 0.55, vv, 4, 6) + _box_alpha(uu + w * 0.55, vv, 4, 6)
        else:
            box = _box_alpha(uu, vv, w + 7, h + 7)
            outline = box * (1 - _box_alpha(uu, vv, w + 5, h + 5))
            if kind == "chip":
                pin_band = _box_alpha(uu, vv, w - 6, h + 9) * (1 - _box_alpha(uu, vv, w, h - 2))
                pads = pin_band * (np.sin(uu * 2 * math.pi / 5.0) > 0)
            else:  # resistor: two end pads along its long axis
                along, across = (uu, vv) if w > h else (vv, uu)
                long_side, short_side = max(w, h), min(w, h)
                pads = _box_alpha(np.abs(along) - long_side / 2, across, 6, short_side + 2)
        blend(img[sy, sx], (0.92, 0.93, 0.9), outline * 0.9)
        blend(img[sy, sx], _PAD, np.clip(pads, 0, 1))
    return board


def _draw_component(patch: np.ndarray, kind: str, uu: np.ndarray, vv: np.ndarray, w: float, h: float) -> np.ndarray:
    """One chip, resistor or capacitor drawn into its window; returns its cover (alpha)."""
    if kind == "chip":
        pins = _box_alpha(uu, vv, w - 6, h + 7) * (1 - _box_alpha(uu, vv, w, h - 2))
        pins = pins * (np.sin(uu * 2 * math.pi / 5.0) > 0.2)
        blend(patch, _SILVER, pins)
        body = _box_alpha(uu, vv, w, h, 1.5)
        shade = 0.07 + 0.04 * (vv / h)
        blend(patch, np.stack([shade, shade, shade * 1.1], -1), body)
        dot = np.clip(2.2 - np.hypot(uu + w / 2 - 5, vv + h / 2 - 5), 0, 1)
        blend(patch, (0.75, 0.75, 0.75), dot)
        return np.maximum(body, pins)
    if kind == "resistor":
        along = uu if w > h else vv
        long_side = max(w, h)
        caps = _box_alpha(uu, vv, w, h, 1.5) * (np.abs(along) > long_side / 2 - 3.5)
        body = _box_alpha(uu, vv, w, h, 2)
        blend(patch, (0.80, 0.68, 0.50), body)
        for k, col in enumerate(((0.55, 0.25, 0.1), (0.1, 0.1, 0.1), (0.8, 0.1, 0.1))):
            band = body * (np.abs(along - (k - 1) * 3.5) < 1.0)
            blend(patch, col, band)
        blend(patch, _SILVER, caps)
        return body
    d = np.hypot(uu, vv)
    body = np.clip(w + 0.5 - d, 0, 1)
    shade = 0.85 - 0.25 * d / w
    blend(patch, np.stack([0.15 * shade, 0.22 * shade, 0.5 * shade], -1), body)
    stripe = body * (np.abs(uu - w * 0.55) < 1.6)
    blend(patch, (0.75, 0.8, 0.9), stripe)
    return body


def _render_printed_board(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Scene]:
    frame = _BoardFrame.draw(rng, size)
    y, x = grid(size)
    light = rng.uniform(0, 2 * math.pi)
    grad = rng.uniform(0.04, 0.12) * ((x - size / 2) * math.cos(light) + (y - size / 2) * math.sin(light)) / size
    lighting = 1 + rng.uniform(-0.06, 0.06) + grad + 0.03 * _smooth_noise(rng, size)

    bg = rng.uniform(0.30, 0.40) + 0.03 * _smooth_noise(rng, size) + rng.normal(0, 0.01, (size, size))
    background = np.repeat(bg[..., None], 3, axis=2).astype(np.float32)
    u, v = frame.to_uv(x, y)
    img = background.copy()
    board = _draw_bare_board(img, frame, u, v, rng)
    bare = img.copy()

    parts: list[Part] = []
    for kind, pu, pv, w, h in _COMPONENTS:
        sy, sx = frame.window(pu, pv, max(w, h) / 2 + 9)
        cover = _draw_component(img[sy, sx], kind, u[sy, sx] - pu, v[sy, sx] - pv, w, h)
        footprint = np.zeros((size, size), bool)
        footprint[sy, sx] = cover > 0.3
        parts.append(Part(name=_COMPONENT_NAMES[kind], kind=kind, footprint=dilate(footprint, 3)))

    img *= lighting[..., None]
    bare *= lighting[..., None]
    noise = rng.normal(0, 0.01, img.shape).astype(np.float32)
    img += noise
    bare += noise
    scene = Scene(
        category="printed_board",
        size=size,
        background=background * lighting[..., None],
        object_mask=board > 0.5,
        parts=parts,
        bare=bare,
        facts={"n_chips": "2", "mask_color": "green"},
        geometry={"cx": frame.cx, "cy": frame.cy, "angle": frame.ang},
    )
    return img, scene


def _render_screw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Scene]:
    s = size / 256
    y, x = grid(size)
    cx = size / 2 + rng.uniform(-10, 10) * s
    cy = size / 2 + rng.uniform(-10, 10) * s
    ang = rng.uniform(-0.35, 0.35) + (math.pi if rng.random() < 0.5 else 0.0)
    c, sn = math.cos(ang), math.sin(ang)
    dx, dy = x - cx, y - cy
    u = (dx * c + dy * sn) / s
    v = (-dx * sn + dy * c) / s
    pitch = rng.uniform(7.0, 8.0)
    head_l, head_r, shank_r, tip_l = -92.0, -64.0, 11.0, 60.0
    end = 92.0

    light = rng.uniform(0, 2 * math.pi)
    bg = (
        rng.uniform(0.78, 0.88)
        + rng.uniform(0.03, 0.08) * (dx * math.cos(light) + dy * math.sin(light)) / size
        + 0.02 * _smooth_noise(rng, size)
        + rng.normal(0, 0.01, (size, size))
    )
    background = np.repeat(bg[..., None], 3, axis=2).astype(np.float32)

    phase = (u + 0.45 * v) / pitch
    tri = np.abs(phase - np.floor(phase) - 0.5) * 2  # 0..1 saw-tooth across the threads
    thread_r = shank_r + 1.8 * tri
    head = _box_alpha(u - (head_l + head_r) / 2, v, head_r - head_l, 48, 9)
    shank = np.clip(thread_r + 0.5 - np.abs(v), 0, 1) * np.clip(u - head_r + 1, 0, 1) * np.clip(tip_l - u + 0.5, 0, 1)
    taper = np.clip((end - u) / (end - tip_l), 0, 1)
    tip = np.clip(thread_r * taper + 0.5 - np.abs(v), 0, 1) * (u >= tip_l - 0.5) * (u <= end)
    body = np.maximum(head, np.maximum(shank, tip))
    is_head = u < head_r + 0.5
    radius = np.where(is_head, 24.0, shank_r + 1.8)
    cyl = np.sqrt(np.clip(1 - (v / radius) ** 2, 0, 1))
    metal = 0.25 + 0.5 * cyl + 0.25 * np.exp(-((((v / radius) + 0.35) / 0.18) ** 2))
    metal = np.where(is_head, metal, metal * (0.78 + 0.22 * np.sin(2 * math.pi * phase)))
    metal = metal * (1 + rng.uniform(-0.08, 0.08)) + 0.03 * _smooth_noise(rng, size, 8)
    tint = np.array([0.95, 0.97, 1.0], np.float32)
    img = background.copy()
    blend(img, metal[..., None] * tint, body)
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    obj = body > 0.5
    parts = [
        Part("tip of the screw", "tip", obj & (u > 40)),
        Part("head of the screw", "head", obj & is_head),
        Part("shank of the screw", "shank", obj & (u > head_r + 2) & (u < tip_l)),
    ]
    scene = Scene(
        category="screw",
        size=size,
        background=background,
        object_mask=obj,
        parts=parts,
        facts={"head": "pan", "material": "steel"},
        geometry={"cx": cx, "cy": cy, "angle": ang, "head_r": head_r, "tip_l": tip_l, "end": end},
    )
    scene.geometry["u_scale"] = s
    return img, scene


_RENDERERS = {
    "round_part": _render_round_part,
    "woven_fabric": _render_woven_fabric,
    "printed_board": _render_printed_board,
    "screw": _render_screw,
}


def check_category(category: str) -> CategorySpec:
    if category not in CATEGORIES:
        raise InvalidArgument(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}", field="category")
    return CATEGORIES[category]


def render_scene(category: str, rng: np.random.Generator, size: int = SIZE) -> tuple[Image.Image, Scene]:
    """One normal rendering and the scene it came from (needed to draw part-level defects)."""
    check_category(category)
    arr, scene = _RENDERERS[category](rng, size)
    img = to_image(arr)
    img.info["scene"] = scene
    return img, scene


def render_normal(category: str, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """One normal rendering (random pose, lighting and texture noise); its Scene rides in `img.info["scene"]`."""
    return render_scene(category, rng, size)[0]
