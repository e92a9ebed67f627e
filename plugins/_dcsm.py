"""DCSM (Shimoda & Yanai, ECCV 2016): distinct class-specific saliency maps, as the authors' code
computes them (``shimoda-uec/mat_dcsm``, ``dcsm.m``, MatConvNet; the numbers of the paper).

What ``dcsm.m`` does, and what :func:`dcsm_maps` does the same way:

1. Canvas. The image is placed in the centre of a ``canvas`` x ``canvas`` black canvas (500 in
   ``dcsm.m``; top-left corner at ``(canvas - h + h mod 2) / 2``, as there). For each scale
   ``s`` (0.8, 1.0, 1.2) the canvas is resized to ``round(s * canvas)`` square and normalised.
   "Black" is the pixel value 0 BEFORE the mean is subtracted (``dcsm.m`` fills ``zeros`` in
   0..255 and subtracts the mean after resizing). The images given here are already normalised,
   so the canvas is filled with the normalised black ``(0 - mean) / std`` read from the model's
   ``mean``/``std`` buffers (:class:`~wssbench.classifier.model.Classifier`; a model without them gets
   0, its input's zero); normalising then resizing equals resizing then normalising, the resize
   being linear with weights summing to 1. MATLAB's ``imresize`` default is bicubic (Keys,
   a = -0.5), antialiased when shrinking; the close match used here is
   ``F.interpolate(mode="bicubic", antialias=True)`` (PyTorch's antialiased bicubic uses
   a = -0.5 too, the plain one -0.75); borders are handled differently (MATLAB mirrors, PyTorch
   renormalises the truncated kernel), which matters only where the image touches the canvas
   edge. An image larger than ``canvas`` (never on VOC, whose images are at most 500 px) gets a
   canvas of its larger side.
2. Detection (:func:`detect`). Per scale, one forward pass (in :func:`dcsm_maps` the recorded
   one: all scales are recorded before any backward pass, as ``dcsm.m`` keeps ``ecnn``, so the
   graphs of the scales are held together; :func:`detect` runs them without gradients, for the
   pipeline's class selection); class ``c`` is detected at that scale
   when ``sigmoid(max_xy S_c(x, y)) > threshold`` (0.5); the classes to segment are the union
   over the scales, with no cap and no forced top-1. The evidence of a class is the sum over the
   scales of that sigmoid maximum. (A model without score maps: its pooled score instead.)
3. Contrast classes (:func:`contrast_classes`). The requested classes, padded up to ``contrast``
   (4) classes with the other classes of highest evidence (``dcsm.m`` requests exactly the
   detected classes and pads with the undetected ones, ``sort(..., 'descend')``, stable); more
   requested classes than ``contrast`` are all kept. Padded classes get no map of their own.
4. Per scale and per contrast class: the derivatives of the class's signal (``signal="map"``: 1
   on every position of its score map, ``d(:,:,c) = 1``) at the inputs of the tapped layers
   (conv3_1 ... conv5_3 on VGG-16, ``surid = [11 13 15 18 20 22 25 27 29]``), guided rule; per
   layer, the maximum over channels of the absolute derivative, bilinearly resized to the canvas
   (``imresize(..., [canvas canvas], 'bilinear')``: ``align_corners=False``, always upsampling).
5. Distinct terms (:func:`accumulate`). Per scale, per requested class ``t`` detected AT THAT
   SCALE, per layer, per other contrast class ``t2``::

       d = M_t - M_t2;  d = d / max(d);  d = tanh(3 d)
       if max(d) > 0:  d[d <= 0] = 1e-20;  S_t += d        (max over the whole canvas)

   so every layer and every scale weighs the same and each term is clipped on its own.
6. Finally (:func:`finish`) ``S_t`` is cropped to the image, divided by its maximum and squashed
   again: ``tanh(3 S_t)`` (values <= 0 set to 1e-20, as in ``dcsm.m``).

Choices where ``dcsm.m`` is silent or odd, each documented:

* The quirk: ``dcsm.m`` divides by ``max(d)`` even when it is negative (``M_t < M_t2`` on the
  whole canvas); ``d / max(d)`` then flips sign, is >= 1 everywhere, and the term is added,
  largest where ``t`` is most dominated. This is NOT followed: a term is added only when
  ``max(d) > 0``, which is what the ``if max(dsur(:)) > 0`` guard evidently intends (with
  ``max(d) = 0``, ``dcsm.m`` gets 0/0 = NaN and -Inf and skips the term, as here).
* A requested class detected at no scale, or that got no term, has an all-zero map (``dcsm.m``
  only makes maps of detected classes; its ``S / max S`` would be 0/0 there).
* Everything after the gradients is computed in float32 (float64 for a float64 model), so that
  1e-20 is representable.
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wssbench.classifier.model import upsample
from wssbench.methods.saliency.backprop import channel_max_abs, check_classes, record, trace_gradients
from wssbench.methods.saliency.multilayer import layer_paths

__all__ = [
    "SCALES",
    "accumulate",
    "canvas_box",
    "contrast_classes",
    "dcsm_maps",
    "detect",
    "finish",
    "on_canvas",
    "scale_peaks",
]

SCALES = (0.8, 1.0, 1.2)
CANVAS = 500
GAIN = 3.0  # tanh(GAIN * x): dcsm.m's tha
TINY = 1e-20  # what dcsm.m writes over values <= 0 of a kept term


def canvas_box(height: int, width: int, canvas: int) -> tuple[int, int, int]:
    """``(side, top, left)``: the canvas side (``canvas``, or the image's larger side if larger)
    and the image's top-left corner on it, 0-based (``dcsm.m``: ``(bsize - h + mod(h, 2)) / 2 + 1``)."""
    side = max(int(canvas), height, width)
    return side, (side - height + height % 2) // 2, (side - width + width % 2) // 2


def _black(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The normalised value of a black pixel, ``(1, 3, 1, 1)``: ``-mean / std`` of the model's buffers."""
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if not (isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)):
        return images.new_zeros(1, images.shape[1], 1, 1)
    return (-mean / std).to(images).reshape(1, -1, 1, 1)


def _matlab_round(x: float) -> int:
    return int(math.floor(x + 0.5))  # MATLAB rounds halves away from zero (x > 0 here)


def on_canvas(model: nn.Module, images: torch.Tensor, canvas: int, scale: float) -> torch.Tensor:
    """``images (B, 3, H, W)``, normalised, centred on the black canvas and resized to
    ``round(scale * side)`` square: ``(B, 3, n, n)``."""
    height, width = images.shape[-2:]
    side, top, left = canvas_box(height, width, canvas)
    x = _black(model, images).expand(images.shape[0], -1, side, side).clone()  # (B, 3, side, side)
    x[:, :, top : top + height, left : left + width] = images
    size = _matlab_round(scale * side)
    if size != side:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)  # (B, 3, n, n)
    return x


def _peaks(scores: torch.Tensor, score_maps: torch.Tensor | None) -> torch.Tensor:
    """``sigmoid(max_xy S_c)`` per class, ``(B, C)``; the pooled score without score maps."""
    top = score_maps.amax(dim=(2, 3)) if score_maps is not None else scores  # (B, C)
    return torch.sigmoid(top.detach().float())


def scale_peaks(model: nn.Module, images: torch.Tensor, scales: Sequence[float] = SCALES, canvas: int = CANVAS) -> torch.Tensor:
    """``sigmoid(max_xy S_c)`` at each scale of the canvas, ``(S, B, C)`` float32; one no-grad
    forward pass per scale."""
    peaks = []
    for s in scales:
        with record(model, on_canvas(model, images, canvas, s), rule=None) as trace:
            peaks.append(_peaks(trace.scores, trace.score_maps))  # (B, C)
    return torch.stack(peaks)  # (S, B, C)


def detect(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = SCALES,
    canvas: int = CANVAS,
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes ``dcsm.m`` segments: ``(present (B, C) bool, evidence (B, C) float32)``.

    ``present``: detected at one scale at least (``sigmoid(max S_c) > threshold``), no cap,
    possibly none; ``evidence``: the sum over the scales of ``sigmoid(max S_c)``.
    """
    peaks = scale_peaks(model, images, scales, canvas)  # (S, B, C)
    return (peaks > threshold).any(dim=0), peaks.sum(dim=0)


def contrast_classes(classes: torch.Tensor, evidence: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes each image's maps are contrasted against, ``(B, T)`` int (-1 = none), and for
    each requested column its position in that list, ``(B, K)`` (-1 for padding).

    Per image: its distinct requested classes (in order), padded up to ``count`` with the other
    classes of highest ``evidence (B, C)`` (ties: lower index first, as MATLAB's stable sort).

    ``dcsm.m`` pads with the *undetected* classes: the same thing when the requested classes are
    exactly the detected ones (``--detect-by saliency``, the ``dcsm`` preset). When the classes
    come from elsewhere (``--classes-from labels``, the classifier's detection), a class detected
    at some scale but not requested can be among the padding: it is contrasted against, as an
    undetected class would be, and gets no map of its own.
    """
    batch, num_classes = evidence.shape
    rows, where = [], torch.full(classes.shape, -1, dtype=torch.long)
    for b in range(batch):
        chosen: list[int] = []
        for k, c in enumerate(classes[b].tolist()):
            if c >= 0:
                if c not in chosen:
                    chosen.append(c)
                where[b, k] = chosen.index(c)
        order = torch.sort(evidence[b].float().cpu(), descending=True, stable=True).indices.tolist()
        chosen += [c for c in order if c not in chosen][: max(0, count - len(chosen))]
        rows.append(chosen)
    width = max((len(r) for r in rows), default=0)
    table = torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long).reshape(batch, width)
    return table.to(classes.device), where.to(classes.device)


def accumulate(total: torch.Tensor, maps: torch.Tensor, valid: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Add one scale's distinct terms to ``total (B, T, N, N)``, in place, and return it.

    ``maps (B, T, L, N, N)``: per contrast class and layer, the canvas map ``M``; ``valid (B, T)``
    the real contrast columns; ``targets (B, T)`` the columns that get terms at this scale
    (requested and detected here). For each target ``t``, layer and other valid ``t2``:
    ``d = tanh(3 (M_t - M_t2) / max(M_t - M_t2))`` with values <= 0 set to 1e-20, added only
    where ``max(M_t - M_t2) > 0`` (see the module docstring for the quirk not followed).
    """
    count = maps.shape[1]
    for t in range(count):
        if not bool(targets[:, t].any()):
            continue
        for t2 in range(count):
            pair = targets[:, t] & valid[:, t2]  # (B,)
            if t2 == t or not bool(pair.any()):
                continue
            d = maps[:, t] - maps[:, t2]  # (B, L, N, N)
            peak = d.amax(dim=(-2, -1), keepdim=True)  # (B, L, 1, 1)
            d = torch.tanh(GAIN * (d / peak.clamp_min(torch.finfo(d.dtype).tiny)))
            d = torch.where(d > 0, d, torch.full_like(d, TINY))
            keep = (peak > 0) & pair[:, None, None, None]  # (B, L, 1, 1)
            total[:, t] += torch.where(keep, d, torch.zeros_like(d)).sum(dim=1)  # (B, N, N)
    return total


def finish(total: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``total (B, T, N, N)`` cropped to ``box = (top, left, height, width)``, divided by its
    maximum and squashed with ``tanh(3 x)``, values <= 0 set to 1e-20: ``(B, T, H, W)``;
    a map that got no term stays all zero."""
    top, left, height, width = box
    s = total[..., top : top + height, left : left + width]  # (B, T, H, W)
    peak = s.amax(dim=(-2, -1), keepdim=True)  # (B, T, 1, 1)
    out = torch.tanh(GAIN * (s / peak.clamp_min(torch.finfo(s.dtype).tiny)))
    out = torch.where(out > 0, out, torch.full_like(out, TINY))
    return torch.where(peak > 0, out, torch.zeros_like(out))


def _canvas_maps(size: int, dtype: torch.dtype):
    """A ``reduce`` for :func:`trace_gradients`: layers' gradients -> ``(B, L, size, size)``."""

    def reduce(grads: list[torch.Tensor]) -> torch.Tensor:
        maps = [upsample(channel_max_abs(g).to(dtype)[:, None], (size, size)) for g in grads]  # L x (B, 1, N, N)
        return torch.cat(maps, dim=1)  # (B, L, N, N)

    return reduce


def dcsm_maps(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor,
    scales: Sequence[float] = SCALES,
    canvas: int = CANVAS,
    layers: Sequence[str] = (),
    contrast: int = 4,
    threshold: float = 0.5,
    signal: str = "map",
    unsupported: str = "error",
) -> torch.Tensor:
    """DCSM maps of the requested ``classes (B, K)`` of ``images (B, 3, H, W)``: ``(B, K, H, W)``,
    float32 in [0, tanh(3)] (see the module docstring). Padding classes (< 0) and requested
    classes detected at no scale get all-zero maps."""
    batch, _, height, width = images.shape
    classes = check_classes(classes, batch, images.device)  # (B, K)
    if not bool((classes >= 0).any()):  # nothing requested: no forward pass
        return images.new_zeros(batch, classes.shape[1], height, width, dtype=torch.float32)
    side, top, left = canvas_box(height, width, canvas)
    paths = layer_paths(model, layers)
    dtype = torch.promote_types(next(iter(model.parameters()), images).dtype, torch.float32)
    with contextlib.ExitStack() as stack:
        # All scales' forward passes first (dcsm.m's recognition loop): the contrast classes
        # need the evidence summed over the scales before any backward pass. Each scale's
        # graph is released as soon as its backward passes are done.
        traces = [
            stack.enter_context(record(model, on_canvas(model, images, canvas, s), "guided", paths, True, unsupported))
            for s in scales
        ]
        peaks = torch.stack([_peaks(trace.scores, trace.score_maps) for trace in traces])  # (S, B, C)
        table, where = contrast_classes(classes, peaks.sum(dim=0), contrast)  # (B, T), (B, K)
        valid = table >= 0  # (B, T)
        requested = torch.zeros_like(valid)
        for b in range(batch):
            requested[b, where[b][where[b] >= 0]] = True
        total = torch.zeros(batch, table.shape[1], side, side, dtype=dtype, device=images.device)  # (B, T, N, N)
        for i, trace in enumerate(traces):
            detected = peaks[i].gather(1, table.clamp_min(0).to(peaks.device)).to(valid.device) > threshold  # (B, T)
            targets = requested & valid & detected  # (B, T)
            if bool(targets.any()):  # else nothing gets a term at this scale: no backward pass
                maps = trace_gradients(trace, table, signal, _canvas_maps(side, dtype))  # (B, T, L, N, N)
                accumulate(total, maps, valid, targets)
                del maps
            trace.release()  # free this scale's graph now
    maps = finish(total, (top, left, height, width))  # (B, T, H, W)
    index = where.clamp_min(0)[:, :, None, None].expand(-1, -1, height, width)  # (B, K, H, W)
    out = maps.gather(1, index) if maps.shape[1] else maps.new_zeros(batch, classes.shape[1], height, width)
    return torch.where((where >= 0)[:, :, None, None], out, torch.zeros_like(out)).float()  # (B, K, H, W)
