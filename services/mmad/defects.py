"""Defects drawn into the pixels of a normal rendering, each with its mask and a description of what was drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from services.common.errors import InvalidArgument
from services.mmad.catalogue import DEFECT_LABELS, region_of
from services.mmad.render import Scene, blend, check_category, dilate, from_image, grid, to_image

T = TypeVar("T")


def _orientation(dx: float, dy: float) -> str:
    deg = abs(math.degrees(math.atan2(dy, dx))) % 180
    if deg < 22.5 or deg > 157.5:
        return "horizontally"
    if 67.5 < deg < 112.5:
        return "vertically"
    return "diagonally"


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    """One of `items`, drawn with a single rng.integers call, so a seed always draws the same."""
    return items[int(rng.integers(len(items)))]


def _a_or_an(name: str) -> str:
    """'A chip' or 'An oscillator': the article for a part's name."""
    return f"{'An' if name[0] in 'aeiou' else 'A'} {name}"


def _pick_point(
    scene: Scene, rng: np.random.Generator, margin: int, where: np.ndarray | None = None
) -> tuple[int, int]:
    valid = scene.interior(margin)
    if where is not None:
        valid = valid & where
    ys, xs = np.nonzero(valid)
    if len(ys) == 0:
        ys, xs = np.nonzero(scene.object_mask if where is None else where)
    i = int(rng.integers(len(ys)))
    return int(xs[i]), int(ys[i])


def _line_mask(size: int, points: list[tuple[float, float]], width: int) -> np.ndarray:
    layer = Image.new("L", (size, size), 0)
    ImageDraw.Draw(layer).line(points, fill=255, width=width, joint="curve")
    return np.asarray(layer) > 127


def _blob(size: int, x0: float, y0: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Soft irregular blob (0..1) of about `radius` pixels around (x0, y0): a few Gaussians, thresholded softly."""
    y, x = grid(size)
    field_ = np.zeros((size, size), np.float32)
    r = int(radius * 2.6) + 2
    sy = slice(max(0, int(y0) - r), min(size, int(y0) + r))
    sx = slice(max(0, int(x0) - r), min(size, int(x0) + r))
    yy, xx = y[sy, sx], x[sy, sx]
    acc = np.zeros(yy.shape, np.float32)
    for _ in range(int(rng.integers(3, 6))):
        gx, gy = x0 + rng.normal(0, radius * 0.45), y0 + rng.normal(0, radius * 0.45)
        sig = radius * rng.uniform(0.45, 0.8)
        acc += np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sig * sig))
    acc += 0.08 * rng.standard_normal(acc.shape).astype(np.float32)
    field_[sy, sx] = np.clip((acc - 0.5) / 0.25, 0, 1)
    return field_


def _patch(
    scene: Scene, rng: np.random.Generator, radius: float, margin: int, names: Sequence[str], where: np.ndarray | None
) -> tuple[str, np.ndarray]:
    """A colour name and a soft blob of it at a random point on the object: where a stain or a tint goes."""
    x0, y0 = _pick_point(scene, rng, margin, where)
    name = _pick(rng, names)
    return name, _blob(scene.size, x0, y0, radius, rng) * scene.object_mask


def _scratch(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    size = scene.size
    where = None
    if scene.category == "screw":
        where = ~scene.parts[0].footprint  # keep off the very tip, where the screw is thin
    x0, y0 = _pick_point(scene, rng, 4, where)
    theta = rng.uniform(0, math.pi)
    length = rng.uniform(28, 60) * size / 256
    bend = rng.uniform(-0.25, 0.25) * length
    pts = []
    for t in np.linspace(-0.5, 0.5, 9):
        off = bend * (0.25 - t * t)
        pts.append(
            (
                x0 + t * length * math.cos(theta) - off * math.sin(theta),
                y0 + t * length * math.sin(theta) + off * math.cos(theta),
            )
        )
    width = int(rng.integers(1, 3))
    line = _line_mask(size, pts, width) & scene.object_mask
    bright = scene.category in ("printed_board", "woven_fabric") or rng.random() < 0.6
    color = (0.95, 0.95, 0.93) if bright else (0.1, 0.1, 0.1)
    if scene.category == "printed_board":
        color = (0.85, 0.78, 0.55)  # scraped through to the copper/laminate
    blend(img, color, line.astype(np.float32) * rng.uniform(0.75, 0.95))
    mask = dilate(line, 3) & scene.object_mask
    long_word = "long" if length > 42 * size / 256 else "short"
    direction = _orientation(pts[-1][0] - pts[0][0], pts[-1][1] - pts[0][1])
    shade = "bright" if bright else "dark"
    return mask, {"appearance": f"A thin {shade} {long_word} line running {direction} across the surface."}


def _crack(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    size = scene.size
    where = scene.parts[1].footprint if scene.category == "screw" else None
    x0, y0 = _pick_point(scene, rng, 6, where)
    steps = int(rng.integers(8, 14))
    step = 3.2 * size / 256 if scene.category == "screw" else 4.0 * size / 256
    heading = rng.uniform(0, 2 * math.pi)
    pts = [(float(x0), float(y0))]
    for _ in range(steps):
        heading += rng.normal(0, 0.55)
        pts.append((pts[-1][0] + step * math.cos(heading), pts[-1][1] + step * math.sin(heading)))
    line = _line_mask(size, pts, 2)
    k = int(rng.integers(steps // 3, 2 * steps // 3))
    heading2 = math.atan2(pts[k + 1][1] - pts[k][1], pts[k + 1][0] - pts[k][0]) + rng.choice([-1.0, 1.0]) * 0.9
    branch = [pts[k]]
    for _ in range(steps // 3):
        heading2 += rng.normal(0, 0.5)
        branch.append((branch[-1][0] + step * math.cos(heading2), branch[-1][1] + step * math.sin(heading2)))
    line |= _line_mask(size, branch, 1)
    line &= scene.object_mask
    blend(img, (0.04, 0.04, 0.04), line.astype(np.float32) * 0.92)
    mask = dilate(line, 3) & scene.object_mask
    long_word = "long" if steps >= 11 else "short"
    return mask, {"appearance": f"A dark, jagged {long_word} crack line with a branching fissure."}


def _hole(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    size = scene.size
    radius = rng.uniform(5, 11) * size / 256
    where = None
    if scene.category == "round_part":  # keep clear of the central opening and the rim
        g = scene.geometry
        y, x = grid(size)
        rr = np.hypot(x - g["cx"], y - g["cy"])
        where = (rr > g["r_in"] + radius + 3) & (rr < g["r"] - radius - 3)
    x0, y0 = _pick_point(scene, rng, int(radius) + 2, where)
    y, x = grid(size)
    theta = np.arctan2(y - y0, x - x0)
    ragged = scene.category == "woven_fabric"
    wobble = 0.12 * np.sin(3 * theta + rng.uniform(0, 6.28)) + 0.08 * np.sin(5 * theta + rng.uniform(0, 6.28))
    if ragged:
        wobble = wobble + 0.12 * np.sin(13 * theta + rng.uniform(0, 6.28))
    edge = radius * (1 + wobble)
    d = np.hypot(x - x0, y - y0)
    alpha = np.clip(edge + 0.5 - d, 0, 1) * scene.object_mask
    rim = np.clip(1 - np.abs(d - edge - 1.5) / 1.5, 0, 1) * scene.object_mask
    blend(img, (0.05, 0.05, 0.05), rim * (0.5 if not ragged else 0.35))
    blend(img, scene.background, alpha)
    mask = alpha > 0.5
    size_word = "large" if radius > 8 * size / 256 else "small"
    edges = "frayed, ragged" if ragged else "clean"
    return mask, {"appearance": f"A {size_word} opening with {edges} edges where the material is gone."}


_STAINS = {
    "dark brown": (0.26, 0.15, 0.07),
    "black": (0.04, 0.04, 0.04),
    "greyish-white": (0.86, 0.86, 0.82),
    "yellowish": (0.78, 0.68, 0.22),
}


def _contamination(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    size = scene.size
    radius = rng.uniform(6, 12) * size / 256
    names = ["dark brown", "black", "greyish-white"]
    if scene.category in ("screw", "woven_fabric"):
        names = ["dark brown", "black"]
    name, blob = _patch(scene, rng, radius, int(radius), names, None)
    blend(img, _STAINS[name], blob * rng.uniform(0.7, 0.9))
    mask = blob > 0.3
    return mask, {"appearance": f"An irregular {name} stain or deposit on the surface."}


_TINTS = {
    "bluish": (0.45, 0.62, 1.25),
    "reddish-brown": (1.2, 0.62, 0.38),
    "greenish": (0.55, 1.1, 0.55),
    "orange-brown": (1.25, 0.75, 0.35),
}


def _color_defect(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    size = scene.size
    radius = rng.uniform(8, 15) * size / 256
    where = None
    if scene.category == "screw":
        radius = rng.uniform(6, 10) * size / 256
        where = scene.parts[2].footprint | scene.parts[1].footprint
    names = {
        "round_part": ["bluish", "reddish-brown"],
        "woven_fabric": ["bluish", "reddish-brown", "greenish"],
        "screw": ["orange-brown", "bluish"],
    }.get(scene.category, list(_TINTS))
    name, blob = _patch(scene, rng, radius, int(radius * 0.6), names, where)
    lum = img.mean(axis=2, keepdims=True)
    tinted = np.clip(lum * np.array(_TINTS[name], np.float32), 0, 1)
    blend(img, tinted, blob * 0.85)
    mask = blob > 0.3
    return mask, {"appearance": f"A {name} discoloured patch that differs from the surrounding colour."}


def _missing_part(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    size = scene.size
    if scene.category == "printed_board":
        assert scene.bare is not None
        part = _pick(rng, scene.parts)
        mask = part.footprint.copy()
        soft = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.BoxBlur(1)), np.float32) / 255
        blend(img, scene.bare, soft)
        if part.kind == "chip":
            scene.facts["n_chips"] = str(int(scene.facts["n_chips"]) - 1)
        return mask, {"appearance": f"{_a_or_an(part.name)} is absent, leaving its bare solder pads exposed."}
    if scene.category == "screw":
        g = scene.geometry
        y, x = grid(size)
        c, sn, s = math.cos(g["angle"]), math.sin(g["angle"]), g["u_scale"]
        u = ((x - g["cx"]) * c + (y - g["cy"]) * sn) / s
        v = (-(x - g["cx"]) * sn + (y - g["cy"]) * c) / s
        if rng.random() < 0.6:
            cut = rng.uniform(40, 62) + rng.uniform(-0.4, 0.4) * v
            removed = scene.object_mask & (u > cut)
            text = "The tip of the screw is broken off; the shank ends in a flat fracture face."
        else:
            side = rng.choice([-1.0, 1.0])
            cu, cv = g["head_r"] - rng.uniform(0, 10), side * 24
            removed = scene.object_mask & (np.hypot(u - cu, v - cv) < rng.uniform(11, 15)) & (u < g["head_r"] + 1)
            text = "A chunk of the screw head is chipped away, leaving a notch in its rim."
        soft = removed.astype(np.float32)
        blend(img, scene.background, soft)
        edge = dilate(removed, 3) & ~removed & scene.object_mask
        blend(img, (0.2, 0.2, 0.2), edge.astype(np.float32) * 0.6)
        return removed, {"appearance": text}
    raise InvalidArgument(f"missing_part is not defined for {scene.category}", field="defect_type")


_SHIFT_WORDS = {(1, 0): "to the right", (-1, 0): "to the left", (0, -1): "upward", (0, 1): "downward"}


def _misplacement(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    if scene.category != "printed_board" or scene.bare is None:
        raise InvalidArgument(f"misplacement is not defined for {scene.category}", field="defect_type")
    part = _pick(rng, scene.parts)
    (sx, sy), word = _pick(rng, list(_SHIFT_WORDS.items()))
    dist = int(rng.integers(7, 12) * scene.size / 256)
    fp = part.footprint
    pixels = img.copy()
    blend(img, scene.bare, fp.astype(np.float32))
    moved = np.roll(fp, (sy * dist, sx * dist), axis=(0, 1))
    moved_pixels = np.roll(pixels, (sy * dist, sx * dist), axis=(0, 1))
    moved &= scene.object_mask
    img[moved] = moved_pixels[moved]
    mask = fp | moved
    return mask, {"appearance": f"{_a_or_an(part.name)} is shifted {word}, off its solder pads."}


_DEFECT_DRAWERS = {
    "scratch": _scratch,
    "crack": _crack,
    "hole": _hole,
    "contamination": _contamination,
    "color_defect": _color_defect,
    "missing_part": _missing_part,
    "misplacement": _misplacement,
}


def draw_defect(
    img: Image.Image,
    category: str,
    defect_type: str,
    rng: np.random.Generator,
    scene: Scene | None = None,
    *,
    min_area: int = 12,
    tries: int = 12,
) -> tuple[Image.Image, np.ndarray, dict[str, Any]]:
    """Paint one defect into a normal rendering.

    Args:
        img: a render_normal() image (its scene is read from img.info unless `scene` is given).
        category, defect_type: one of CATEGORIES and one of that category's defects.
        rng: the randomness for placement and look.
        min_area: redraw (up to `tries` times) when the mask is smaller or its centre sits on a 3x3 cell border,
            so the localisation answer is never a coin toss.

    Returns:
        (defective image, bool mask HxW, info) where info has defect_type, label, region, centroid (x, y),
        area, appearance, effect and facts (object facts after the defect, e.g. one chip fewer).
    """
    spec = check_category(category)
    if defect_type not in spec.defects:
        raise InvalidArgument(
            f"{defect_type!r} is not a defect of {category}; choose from {', '.join(spec.defects)}",
            field="defect_type",
        )
    scene = scene or img.info.get("scene")
    if not isinstance(scene, Scene) or scene.category != category:
        raise InvalidArgument("needs the Scene of a render_normal() image of this category", field="scene")
    base = from_image(img)
    size = scene.size
    best: tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, str]] | None = None
    for _ in range(tries):
        work = base.copy()
        facts = dict(scene.facts)
        trial = Scene(**{**scene.__dict__, "facts": facts})
        mask, info = _DEFECT_DRAWERS[defect_type](work, trial, rng)
        # The ground truth covers every visibly changed pixel near the defect (soft edges, rims, halos).
        changed = np.abs(work - base).max(axis=2) > 6 / 255
        mask = mask | (changed & dilate(mask, 11))
        area = int(mask.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(mask)
        cx, cy = float(xs.mean()), float(ys.mean())
        border = min(abs(3 * v / size - round(3 * v / size)) * size / 3 for v in (cx, cy))
        best = (work, mask, {**info, "centroid": (cx, cy), "area": area}, facts)
        # thin curved defects may not cover their own centroid; blobs must
        covers_centre = bool(mask[int(cy), int(cx)]) or defect_type in ("scratch", "crack")
        if area >= min_area and border >= 5 and covers_centre:
            break
    if best is None:
        raise InvalidArgument(f"could not place a {defect_type} on this {category}", field="defect_type")
    work, mask, info, facts = best
    info.update(
        defect_type=defect_type,
        label=DEFECT_LABELS[defect_type],
        region=region_of(*info["centroid"], size=size),
        effect=spec.effects[defect_type],
        facts=facts,
    )
    return to_image(work), mask, info
