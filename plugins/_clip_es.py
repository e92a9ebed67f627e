"""CLIP-ES (Lin et al., CVPR 2023): training-free seeds from a frozen CLIP ViT, as the authors' code
linyq2117/CLIP-ES computes them (generate_cams_voc12.py, clip_text.py, eval_cam_with_crf.py).

Per image, with the image's own classes (from its labels) and 25 background words:

1. text: ``'a clean origami {}.'`` with the class names and synonyms of ``clip_text.py``, each
   embedding L2-normalised (:func:`text_features`);
2. the image at its own size rounded up to a multiple of the patch (bicubic), CLIP's mean/std,
   the positional embedding bilinearly resized to the patch grid; blocks 1 .. L-1 without
   gradient, the last with; image feature = mean of the patch tokens after ``ln_post``, times
   ``proj`` (``forward_last_layer``, clip/model.py lines 400-422);
3. softmax over [the image's classes, background words] of ``logit_scale * cos``; Grad-CAM of
   each class's probability on the last block's ``ln_1`` output (patch tokens on the grid):
   weights = spatial mean of the gradient, ReLU, min-max (:func:`gradcam`);
4. class-aware attention affinity (CAA, generate_cams_voc12.py lines 160-197): the head-averaged
   attention of the last 8 blocks, CLS removed, Sinkhorn-normalised (columns, rows, 3 rounds),
   symmetrised, squared, its columns masked by the boxes of the class's Grad-CAM at 0.4 x max;
   refined = T @ cam, min-max, bilinear to the image size (:func:`refine`);
5. pseudo-masks (eval_cam_with_crf.py lines 97-124): background (1 - max) ** 1, dense CRF
   (``CLIP_ES_CRF``), argmax, pixels with CRF confidence < 0.95 -> 255 (:func:`pseudo_mask`).

Departures: open_clip's model classes instead of the vendored OpenAI ``clip`` package (the
same architecture and weights; no download: :func:`load_clip` reads a local file); float32
where the authors' GPU run is float16 (also the saved maps, which they store as float16);
the boxes from 8-connected components (scipy) instead of OpenCV contours, the same boxes
(tested against OpenCV when installed).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wssbench.errors import DataError, UsageError
from wssbench.methods.crf import CLIP_ES_CRF, CRFParams, crf_from_scores

TEMPLATE = "a clean origami {}."  # generate_cams_voc12.py lines 236-237
# clip_text.py lines 2-4: the VOC background words; BACKGROUND_CATEGORY_COCO (lines 56-58) drops 'keyboard' and 'sign'
BACKGROUND = ("ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water", "river", "sea", "railway",
              "railroad", "keyboard", "helmet", "cloud", "house", "mountain", "ocean", "road", "rock", "street",
              "valley", "bridge", "sign")
BACKGROUND_COCO = tuple(w for w in BACKGROUND if w not in ("keyboard", "sign"))
# clip_text.py lines 12-16 (new_class_names): VOC's 20 classes, four with synonyms
VOC_NAMES = ("aeroplane", "bicycle", "bird avian", "boat", "bottle", "bus", "car", "cat", "chair seat", "cow",
             "diningtable", "dog", "horse", "motorbike", "person with clothes,people,human", "pottedplant", "sheep",
             "sofa", "train", "tvmonitor screen")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # generate_cams_voc12.py _transform_resize
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LAST_BLOCKS = 8  # generate_cams_voc12.py line 163: torch.stack(...)[-8:]
BOX_THRESHOLD = 0.4  # line 168 (VOC); generate_cams_coco14.py line 158 uses 0.7
CONFIDENCE = 0.95  # eval_cam_with_crf.py line 123
MEAN_BGR = (104.008, 116.669, 122.675)  # eval_cam_with_crf.py line 163


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise UsageError("clip-es needs open_clip: pip install -e '.[clip]'") from None
    return open_clip


def load_clip(weights: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """An open_clip ``CLIP`` (float32, eval) from a local checkpoint: OpenAI's ``ViT-B-16.pt`` (a
    TorchScript archive: its tensors are read with ``torch.jit.load``, its code never called) or a
    state dict in OpenAI's key layout (``.pt``/``.bin`` read with ``weights_only=True``,
    ``.safetensors``; open_clip's ``open_clip_pytorch_model.bin`` of ``ViT-B-16``/``openai`` has
    that layout). Never downloads. DataError in one line when the file is missing or not a ViT CLIP."""
    open_clip = _open_clip()
    path = Path(weights)
    if not path.is_file():
        raise DataError(f"{path}: CLIP weights file not found (clip-es reads a local ViT-B-16.pt; it never downloads)")
    state = _read_clip_state(path)
    if "visual.proj" not in state or "visual.conv1.weight" not in state:
        raise DataError(f"{path}: not a ViT CLIP checkpoint (no visual.proj / visual.conv1.weight)")
    try:
        model = open_clip.model.build_model_from_openai_state_dict(dict(state)).float()
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})  # again: the builder rounds to float16
    except (RuntimeError, KeyError, ValueError) as e:
        raise DataError(f"{path}: checkpoint does not fit a CLIP ViT ({str(e).splitlines()[0]})") from None
    return model.eval().to(device).requires_grad_(False)


def _read_clip_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict checkpoint, or of a TorchScript archive (OpenAI's release)."""
    import zipfile

    from wssbench.classifier.weights import read_state_dict

    torchscript = zipfile.is_zipfile(path) and any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(path).namelist())
    if not torchscript:
        return read_state_dict(path)
    try:  # TorchScript's own loader: no Python pickle, and the module's code is never called
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated" (torch >= 2.9)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except Exception as e:
        raise DataError(f"{path}: unreadable TorchScript archive ({type(e).__name__})") from None


@torch.no_grad()
def text_features(model: nn.Module, names: Sequence[str], template: str = TEMPLATE) -> torch.Tensor:
    """``zeroshot_classifier`` (generate_cams_voc12.py lines 48-60) with one template: (len(names), E),
    each row L2-normalised."""
    tokens = _open_clip().tokenize([template.format(n) for n in names]).to(next(model.parameters()).device)
    features = model.encode_text(tokens).float()  # (n, E)
    return features / features.norm(dim=-1, keepdim=True)


def preprocess(image: np.ndarray, patch: int) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, ceil(H / p) * p, ceil(W / p) * p) normalised (``img_ms_and_flip`` at
    scale 1: PIL bicubic resize, CLIP mean/std)."""
    from PIL import Image

    h, w = image.shape[:2]
    size = (math.ceil(w / patch) * patch, math.ceil(h / patch) * patch)
    resized = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC), dtype=np.float32) / 255.0
    x = torch.from_numpy(resized).permute(2, 0, 1)
    return ((x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None])[None]


def _positional(visual: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """``upsample_pos_emb`` (clip/model.py lines 9-25): the patch positions bilinearly resized to the
    grid (align_corners=False), the CLS position kept -> (1 + gh * gw, D)."""
    pos = visual.positional_embedding  # (1 + n, D)
    side = round(math.sqrt(pos.shape[0] - 1))
    patches = pos[1:].t().reshape(1, -1, side, side)  # (1, D, side, side)
    patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False).reshape(pos.shape[1], -1).t()
    return torch.cat([pos[:1], patches])


def _block(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One open_clip ``ResidualAttentionBlock`` on batch-first tokens (1, L, D), with its
    head-averaged attention (1, L, L) and its ``ln_1`` output (1, L, D)."""
    y = block.ln_1(x)
    first = getattr(block.attn, "batch_first", False)
    q = y if first else y.transpose(0, 1)
    out, weights = block.attn(q, q, q, need_weights=True, average_attn_weights=True)
    out = out if first else out.transpose(0, 1)
    x = x + block.ls_1(out)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, weights, y


def forward(model: nn.Module, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], tuple[int, int]]:
    """The image through the ViT as CLIP-ES runs it. Returns the softmax probabilities (1, T) over
    the rows of ``text`` (T, E), the last block's ``ln_1`` output (1, L, D) (in the graph of the
    probabilities), every block's head-averaged attention (1, L, L) and the patch grid (gh, gw).
    ``image``: (1, 3, H, W) from :func:`preprocess`."""
    visual = model.visual
    blocks = visual.transformer.resblocks
    if not all(hasattr(b, "ln_1") and isinstance(getattr(b, "attn", None), nn.MultiheadAttention) for b in blocks):
        raise UsageError("clip-es needs a CLIP ViT with standard attention blocks (OpenAI's ViT-B/16)")
    with torch.no_grad():
        x = visual.conv1(image.to(visual.conv1.weight))  # (1, D, gh, gw)
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)  # (1, N, D)
        x = torch.cat([visual.class_embedding.to(x)[None, None], x], dim=1)  # (1, 1+N, D)
        x = visual.ln_pre(x + _positional(visual, grid).to(x))
        attention = []
        for block in blocks[:-1]:
            x, weights, _ = _block(block, x)
            attention.append(weights)
    with torch.enable_grad():
        x, weights, ln_1 = _block(blocks[-1], x.detach().requires_grad_(True))
        attention.append(weights)
        feature = visual.ln_post(x)[:, 1:].mean(dim=1) @ visual.proj  # (1, E)
        feature = feature / feature.norm(dim=1, keepdim=True)
        logits = model.logit_scale.exp() * feature @ text.to(feature).t()  # (1, T)
        return logits.softmax(dim=-1), ln_1, [a.detach() for a in attention], grid


def gradcam(probabilities: torch.Tensor, ln_1: torch.Tensor, grid: tuple[int, int], targets: Sequence[int]) -> torch.Tensor:
    """Grad-CAM of ``probabilities[0, t]`` for each target t on ``ln_1`` (1, 1+N, D), the CLS token
    dropped and the patch tokens on the grid: w_d = mean of the gradient over the grid, cam =
    ReLU(sum_d w_d A_d), then ``(cam - min) / (1e-7 + max)`` (the vendored pytorch_grad_cam) ->
    (len(targets), gh, gw)."""
    activations = ln_1[0, 1:].detach().t().reshape(-1, *grid)  # (D, gh, gw)
    cams = []
    for t in targets:
        (grad,) = torch.autograd.grad(probabilities[0, t], ln_1, retain_graph=True)
        weights = grad[0, 1:].t().reshape(-1, *grid).mean(dim=(1, 2))  # (D,)
        cam = torch.relu((weights[:, None, None] * activations).sum(dim=0))  # (gh, gw)
        cam = cam - cam.min()
        cams.append(cam / (1e-7 + cam.max()))
    return torch.stack(cams)


def attention_affinity(attention: Sequence[torch.Tensor], last: int = LAST_BLOCKS) -> torch.Tensor:
    """The attention of the last ``last`` blocks, averaged, CLS row and column removed -> (N, N)."""
    return torch.stack([a[0, 1:, 1:] for a in attention[-last:]]).mean(dim=0).float()


def sinkhorn(affinity: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """generate_cams_voc12.py lines 177-186: ``rounds`` times column- then row-normalised, symmetrised,
    squared once."""
    t = affinity
    for _ in range(rounds):
        t = t / t.sum(dim=0, keepdim=True)
        t = t / t.sum(dim=1, keepdim=True)
    t = (t + t.t()) / 2
    return t @ t


def box_mask(cam: np.ndarray | torch.Tensor, threshold: float = BOX_THRESHOLD) -> np.ndarray:
    """``scoremap2bbox(cam, 0.4, multi_contour_eval=True)`` then the boxes filled (utils.py lines
    115-142, generate_cams_voc12.py lines 168-173): the map as uint8 (x 255, truncated), pixels >
    int(threshold * its max), the bounding box of every 8-connected region, its end clipped to
    the last row / column minus one as the authors' ``min(x + w, width - 1)``; (gh, gw) of 0/1."""
    from scipy import ndimage

    scores = (np.asarray(cam, dtype=np.float32) * 255).astype(np.uint8)
    above = scores > int(threshold * scores.max())
    h, w = above.shape
    mask = np.zeros((h, w), np.float32)
    regions, _ = ndimage.label(above, structure=np.ones((3, 3)))
    for rows, cols in ndimage.find_objects(regions):
        mask[rows.start: min(rows.stop, h - 1), cols.start: min(cols.stop, w - 1)] = 1
    return mask


def refine(cam: torch.Tensor, transition: torch.Tensor, size: tuple[int, int], threshold: float = BOX_THRESHOLD) -> torch.Tensor:
    """One class's CAA: (transition * box mask over its columns) @ cam, min-max, bilinear to ``size``
    (H, W) -> (H, W). ``cam``: (gh, gw) Grad-CAM; ``transition``: (N, N) from :func:`sinkhorn`."""
    mask = torch.from_numpy(box_mask(cam.cpu().numpy(), threshold)).to(transition).reshape(1, -1)  # (1, N)
    refined = ((transition * mask) @ cam.reshape(-1, 1).to(transition)).reshape(cam.shape)  # (gh, gw)
    refined = refined - refined.min()
    refined = refined / (1e-7 + refined.max())
    return F.interpolate(refined[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def clip_es_maps(model: nn.Module, image: np.ndarray, classes: Sequence[int], class_text: torch.Tensor,
                 background_text: torch.Tensor, threshold: float = BOX_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP-ES's refined maps (``attn_highres``) of an image's classes -> ((K, H, W) in [0, 1], and the
    Grad-CAMs (K, gh, gw) before refinement).

    ``image``: uint8 (H, W, 3); ``classes``: the image's class indices into ``class_text`` (C, E)
    (e.g. :data:`VOC_NAMES` through :func:`text_features`), in the order wanted; ``background_text``:
    (B, E) of :data:`BACKGROUND`. The softmax runs over [class_text[classes], background_text].
    """
    if len(classes) == 0:
        raise ValueError("clip-es needs at least one class of the image")
    h, w = image.shape[:2]
    patch = model.visual.conv1.kernel_size[0]
    text = torch.cat([class_text[list(classes)], background_text])  # (K + B, E)
    probabilities, ln_1, attention, grid = forward(model, preprocess(image, patch), text)
    cams = gradcam(probabilities, ln_1, grid, range(len(classes)))  # (K, gh, gw)
    transition = sinkhorn(attention_affinity(attention))
    refined = torch.stack([refine(c, transition, (h, w), threshold) for c in cams])
    return refined, cams


def seed_labels(maps: np.ndarray, keys: Sequence[int], alpha: float) -> np.ndarray:
    """eval_cam.py lines 58-66: background (1 - max) ** alpha in front of the maps (K, H, W), argmax,
    class ids ``keys[k] + 1`` (0 background). The README's 70.8 is the better of alpha 1 and 2."""
    scores = np.concatenate([np.power(1 - maps.max(axis=0, keepdims=True), alpha), maps])
    return np.concatenate([[0], np.asarray(keys) + 1])[scores.argmax(axis=0)].astype(np.uint8)


def crf_image(image: np.ndarray) -> np.ndarray:
    """The image CLIP-ES's CRF sees (eval_cam_with_crf.py lines 100-115): BGR minus ``MEAN_BGR``,
    cast to uint8, negative values wrapping (the cast truncates towards zero, then modulo 256)."""
    bgr = image[..., ::-1].astype(np.float32) - np.asarray(MEAN_BGR, np.float32)
    return (np.trunc(bgr).astype(np.int64) % 256).astype(np.uint8)


def pseudo_mask(image: np.ndarray, maps: np.ndarray, keys: Sequence[int], params: CRFParams = CLIP_ES_CRF,
                confidence: float = CONFIDENCE, as_published: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """eval_cam_with_crf.py lines 97-124: background 1 - max, the CRF on [bg, maps], argmax to class
    ids (``keys[k] + 1``). Returns (labels, pseudo-mask): ``labels`` is the "+CRF" prediction the
    README's 75.0 scores, the pseudo-mask the same with pixels whose CRF probability is below
    ``confidence`` set to 255 (what DeepLab trains on). ``image``: uint8 RGB (H, W, 3);
    ``as_published``: the CRF sees :func:`crf_image` as the authors' code gives it, else the RGB image."""
    scores = np.concatenate([1 - maps.max(axis=0, keepdims=True), maps]).astype(np.float32)  # (K+1, H, W)
    probs = crf_from_scores(crf_image(image) if as_published else image, scores, params)
    labels = np.concatenate([[0], np.asarray(keys) + 1])[probs.argmax(axis=0)].astype(np.uint8)
    mask = labels.copy()
    mask[probs.max(axis=0) < confidence] = 255
    return labels, mask
