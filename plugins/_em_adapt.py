"""EM-Adapt's E-step (Papandreou, Chen, Murphy & Yuille, ICCV 2015, "Weakly- and
Semi-Supervised Learning of a DCNN for Semantic Image Segmentation", section 3.2).

With image-level labels the latent segmentation is the argmax of the network's scores plus
image- and class-specific biases ``b_l``, chosen *adaptively* so that each present class wins
a set portion of the image: at least ``bg_fraction`` of the pixels for the background and at
least ``fg_fraction`` for each present foreground class; absent classes never win. The
M-step trains the network on that argmax with the usual cross-entropy.

This follows the authors' Caffe layer ``AdaptiveBiasChannelLayer`` (deeplab-public-ver2,
``src/caffe/layers/adaptive_bias_channel_layer.cpp``), read for this port:

* absent classes are clipped to the minimum score of the present ones minus a margin
  (``suppress_others``, ``margin_others`` = 1e-5), so they never win;
* labels are visited background first, then the present foreground classes in random order,
  ``passes`` times (``num_iter``); for each, the bias added is the ``k``-th smallest gap
  ``max_present - score_l`` with ``k = portion * pixels``, so that the class then wins on at
  least ``k`` pixels (a later class may take some back, as the authors' comment says);
* the layer's final shift of every channel by one constant is left out (argmax ignores it).

One deliberate difference: Caffe adds exactly the ``k``-th gap, which leaves the class *tied*
with the previous maximum on one pixel; here the bias is the midpoint between the ``k``-th
and ``(k+1)``-th gaps, so the class wins exactly ``k`` pixels when it had fewer, with no tie.

Fractions: the paper's "rho_fg" and "rho_bg". The authors' proto defaults are 0.2 and 0.2
(``AdaptiveBiasChannelParameter``: ``bg_portion = 0.2``, ``fg_portion = 0.2``, ``num_iter =
1``); the defaults here are ``fg_fraction = 0.2`` and ``bg_fraction = 0.4``, our reading of
the paper's image-level setting (ρ_fg = 20 %, ρ_bg = 40 %). The paper text itself could not be
re-read in this environment: both are options, and the proto defaults are one flag away.
"""

from __future__ import annotations

import math

import torch


def adaptive_biases(
    scores: torch.Tensor,
    present: torch.Tensor,
    fg_fraction: float,
    bg_fraction: float,
    passes: int = 1,
    generator: torch.Generator | None = None,
    margin: float = 1e-5,
) -> torch.Tensor:
    """Biased scores of one image: ``scores`` (N, n) over n pixels, ``present`` (N,) bool.

    Row 0 is the background. Returns float64 (N, n) scores whose argmax is the E-step's
    segmentation: absent rows lie below every present row; each present row got the bias
    that makes it win its portion of the n pixels when it was visited.
    """
    s = scores.detach().to(torch.float64).clone()  # (N, n)
    n = s.shape[1]
    present = present.to(s.device).bool()
    if n == 0 or not present.any():
        return s
    floor = s[present].amin(0)  # (n,) lowest present score per pixel
    absent = ~present
    s[absent] = torch.minimum(s[absent], floor - margin)
    labels = torch.nonzero(present).flatten().tolist()
    fg = [c for c in labels if c != 0]
    for _ in range(passes):
        order = torch.randperm(len(fg), generator=generator).tolist()
        for c in ([0] if present[0] else []) + [fg[i] for i in order]:
            k = math.ceil((bg_fraction if c == 0 else fg_fraction) * n - 1e-9)
            k = min(max(k, 0), n)
            if k == 0:
                continue
            gap = s[present].amax(0) - s[c]  # (n,) >= 0, 0 where c already wins or ties
            ranked = gap.sort().values
            if k == n:
                bias = ranked[-1] + margin
            else:
                bias = 0.5 * (ranked[k - 1] + ranked[k])  # wins the k smallest gaps, strictly
            s[c] += bias.clamp(min=0.0)
    return s


def em_adapt_labels(
    logits: torch.Tensor,
    present: torch.Tensor,
    valid: torch.Tensor,
    fg_fraction: float,
    bg_fraction: float,
    passes: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The E-step for a batch: logits (B, N, h, w), present (B, N), valid (B, h, w) -> (B, h, w).

    Labels are int64 in 0..N-1, 255 outside ``valid``; the fractions count valid pixels only.
    """
    b, _, h, w = logits.shape
    out = torch.full((b, h, w), 255, dtype=torch.long, device=logits.device)
    for i in range(b):
        keep = valid[i]  # (h, w)
        scores = logits[i][:, keep]  # (N, n)
        biased = adaptive_biases(scores, present[i], fg_fraction, bg_fraction, passes, generator)
        out[i][keep] = biased.argmax(0).to(out.device)
    return out
