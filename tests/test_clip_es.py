"""CLIP-ES building blocks on a tiny randomly initialised ViT CLIP built through open_clip's own
model classes (no weights exist on these machines): shapes, the softmax over the image's own
classes, Grad-CAM against pytorch-grad-cam, the attention against a hand computation, Sinkhorn
against a literal loop, the boxes against the authors' OpenCV calls, the CRF post-processing."""

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

from wssbench.errors import DataError, UsageError
from wssbench.methods.crf import CLIP_ES_CRF
from wssbench_plugins import _clip_es as ce

needs_open_clip = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None,
                                     reason="open_clip is not installed (pip install -e '.[clip]')")
needs_cv2 = pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="OpenCV (the authors' box code) is not installed")


@pytest.fixture(scope="module")
def tiny_clip():
    """A 3-block ViT CLIP (width 32, 2 heads, patch 16, 64 px) with a 1-block text tower, QuickGELU as OpenAI's."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(16, vision_cfg=CLIPVisionCfg(layers=3, width=32, head_width=16, patch_size=16, image_size=64),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1), quick_gelu=True)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def texts(tiny_clip):
    return ce.text_features(tiny_clip, ce.VOC_NAMES), ce.text_features(tiny_clip, ce.BACKGROUND)


def save_tiny_clip(path):
    """A tiny random ViT CLIP in OpenAI's key layout (64-wide heads: the builder reads the head count
    from the width), saved as a state dict at ``path``; returns ``path``."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(1)
    model = CLIP(16, vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=64, patch_size=16, image_size=32),
                 text_cfg=CLIPTextCfg(width=64, heads=1, layers=1), quick_gelu=True)
    torch.save(model.state_dict(), path)
    return path


def image(h=50, w=70, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_prompts_are_the_authors():
    assert ce.TEMPLATE == "a clean origami {}."
    assert len(ce.BACKGROUND) == 25 and ce.BACKGROUND[13] == "keyboard" and ce.BACKGROUND[-1] == "sign"
    assert len(ce.BACKGROUND_COCO) == 23
    assert len(ce.VOC_NAMES) == 20 and ce.VOC_NAMES[2] == "bird avian" and ce.VOC_NAMES[14] == "person with clothes,people,human"
    assert (ce.LAST_BLOCKS, ce.BOX_THRESHOLD, ce.CONFIDENCE) == (8, 0.4, 0.95)


@needs_open_clip
def test_text_features_are_unit_rows(tiny_clip, texts):
    classes, background = texts
    assert classes.shape == (20, 16) and background.shape == (25, 16)
    torch.testing.assert_close(classes.norm(dim=1), torch.ones(20))


@needs_open_clip
def test_forward_matches_open_clip_at_native_size(tiny_clip, texts):
    """At the model's own 64 px the resized positions are the originals: the tokens, pooled as
    CLIP-ES pools (ln_post, mean of patch tokens, proj), give the probabilities computed here
    through open_clip's own embedding and transformer."""
    text = torch.cat([texts[0][[3, 7]], texts[1]])
    x = torch.randn(1, 3, 64, 64)
    probs, ln_1, attention, grid = ce.forward(tiny_clip, x, text)
    visual = tiny_clip.visual
    with torch.no_grad():
        tokens = visual.transformer(visual._embeds(x))  # (1, 17, 32)
        feature = visual.ln_post(tokens)[:, 1:].mean(dim=1) @ visual.proj
        feature = feature / feature.norm(dim=1, keepdim=True)
        want = (tiny_clip.logit_scale.exp() * feature @ text.t()).softmax(dim=-1)
    torch.testing.assert_close(probs.detach(), want, rtol=1e-5, atol=1e-6)
    assert grid == (4, 4) and ln_1.shape == (1, 17, 32) and len(attention) == 3
    assert probs.shape == (1, 27) and float(probs.detach().sum()) == pytest.approx(1.0, abs=1e-6)


@needs_open_clip
def test_attention_by_hand(tiny_clip):
    """A block's head-averaged attention, from its projection weights: softmax(q k^T / sqrt(d))."""
    block = tiny_clip.visual.transformer.resblocks[1]
    x = torch.randn(1, 17, 32)
    _, weights, y = ce._block(block, x)
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    q, k = (y[0] @ w[i * 32: (i + 1) * 32].t() + b[i * 32: (i + 1) * 32] for i in (0, 1))  # (17, 32)
    heads = [torch.softmax(q[:, h * 16: (h + 1) * 16] @ k[:, h * 16: (h + 1) * 16].t() / math.sqrt(16), dim=-1) for h in (0, 1)]
    torch.testing.assert_close(weights[0], (heads[0] + heads[1]) / 2, rtol=1e-5, atol=1e-6)
    out_block = block(x)  # open_clip's own block forward, the same output
    torch.testing.assert_close(ce._block(block, x)[0], out_block, rtol=1e-5, atol=1e-6)


def test_attention_affinity_averages_the_last_blocks():
    maps = [torch.full((1, 5, 5), float(i)) for i in range(10)]
    for a in maps:
        a[0, 0, :] = -1.0  # the CLS row and column are dropped
        a[0, :, 0] = -1.0
    got = ce.attention_affinity(maps)
    assert got.shape == (4, 4)
    torch.testing.assert_close(got, torch.full((4, 4), float(np.mean(range(2, 10)))))  # blocks 3 .. 10 of 10


def test_sinkhorn_against_a_literal_loop():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.01, 1, size=(6, 6))
    t = a.copy()
    for _ in range(3):  # generate_cams_voc12.py: one column-row round, then two more
        for j in range(6):
            t[:, j] = t[:, j] / sum(t[i, j] for i in range(6))
        for i in range(6):
            t[i, :] = t[i, :] / sum(t[i, j] for j in range(6))
    sym = [[(t[i, j] + t[j, i]) / 2 for j in range(6)] for i in range(6)]
    want = [[sum(sym[i][k] * sym[k][j] for k in range(6)) for j in range(6)] for i in range(6)]
    np.testing.assert_allclose(ce.sinkhorn(torch.from_numpy(a)).numpy(), want, rtol=1e-12)


def test_box_mask_by_hand():
    cam = np.zeros((6, 8), np.float32)
    cam[1:3, 2:5] = 1.0
    cam[4, 1] = 0.5  # 0.5 * 255 = 127 > int(0.4 * 255) = 102: a second region
    cam[5, 6] = 0.3  # 76 < 102: below the threshold
    want = np.zeros((6, 8), np.float32)
    want[1:3, 2:5] = 1
    want[4:5, 1:2] = 1
    np.testing.assert_array_equal(ce.box_mask(cam), want)
    # a region touching the last column or row loses it: the authors' min(x + w, width - 1)
    edge = np.zeros((6, 8), np.float32)
    edge[2:6, 5:8] = 1.0
    want = np.zeros((6, 8), np.float32)
    want[2:5, 5:7] = 1
    np.testing.assert_array_equal(ce.box_mask(edge), want)
    assert not ce.box_mask(np.zeros((4, 4), np.float32)).any()  # nothing above 0: no box


def _authors_boxes(scoremap, threshold):
    """utils.py scoremap2bbox and the box filling of generate_cams_voc12.py, with OpenCV."""
    import cv2

    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    _, binary = cv2.threshold(src=image, thresh=int(threshold * np.max(image)), maxval=255, type=cv2.THRESH_BINARY)
    contours = cv2.findContours(image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
    mask = np.zeros((height, width), np.float32)
    boxes = [[0, 0, 0, 0]] if len(contours) == 0 else []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


@needs_cv2
@pytest.mark.parametrize("seed", range(6))
def test_box_mask_matches_the_authors_opencv_code(seed):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    cam = ndimage.gaussian_filter(rng.uniform(0, 1, size=(14, 19)), 1.2)  # blobs, some touching the borders, some with holes
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    np.testing.assert_array_equal(ce.box_mask(cam), _authors_boxes(cam, 0.4))
    ring = np.zeros((9, 9), np.float32)
    ring[1:8, 1:8] = 1
    ring[3:6, 3:6] = 0  # a hole: RETR_TREE adds its contour, inside the outer box
    np.testing.assert_array_equal(ce.box_mask(ring), _authors_boxes(ring, 0.4))


def test_refine_by_hand():
    cam = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # only pixel 0 in the box
    t = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.3, 0.4, 0.1, 0.2], [0.2, 0.1, 0.4, 0.3], [0.1, 0.2, 0.3, 0.4]])
    got = ce.refine(cam, t, size=(2, 2))
    # (T * mask) @ cam = T[:, 0] * 1 = (0.4, 0.3, 0.2, 0.1); min-max -> (1, 2/3, 1/3, 0)
    torch.testing.assert_close(got, torch.tensor([[1.0, 2 / 3], [1 / 3, 0.0]]), rtol=1e-5, atol=1e-6)
    # the mask is over the columns (the sources): a cam pixel outside every box contributes nothing
    cam2 = torch.tensor([[1.0, 0.2], [0.0, 0.0]])  # box: pixel 0 only (0.2 * 255 = 51 < 102)
    torch.testing.assert_close(ce.refine(cam2, t, size=(2, 2)), got)


@pytest.mark.slow  # importing pytorch_grad_cam takes seconds
@needs_open_clip
@needs_cv2
def test_gradcam_matches_pytorch_grad_cam(tiny_clip, texts):
    import cv2
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    text = torch.cat([texts[0][[4, 11]], texts[1]])
    x = ce.preprocess(image(48, 80), 16)  # (1, 3, 48, 80): a 3 x 5 grid

    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = tiny_clip

        def forward(self, images):
            return ce.forward(self.clip, images, text)[0]

    def tokens_to_grid(t):
        return t[:, 1:].reshape(t.shape[0], 3, 5, t.shape[2]).permute(0, 3, 1, 2)

    probs, ln_1, _, grid = ce.forward(tiny_clip, x, text)
    ours = ce.gradcam(probs, ln_1, grid, [0, 1])  # (2, 3, 5)
    # the library's hooks stay on the shared model until released: the context manager releases them
    with GradCAM(Probabilities(), [tiny_clip.visual.transformer.resblocks[-1].ln_1], reshape_transform=tokens_to_grid) as library:
        for t in (0, 1):
            want = library(x, targets=[ClassifierOutputTarget(t)])[0]  # min-max, resized to 80 x 48, min-max again
            resized = cv2.resize(ours[t].numpy(), (80, 48))
            resized = (resized - resized.min()) / (1e-7 + resized.max() - resized.min())
            np.testing.assert_allclose(resized, want, atol=1e-4)


@needs_open_clip
def test_softmax_runs_over_the_images_own_classes(tiny_clip, texts):
    classes, background = texts
    img = image()
    maps, cams = ce.clip_es_maps(tiny_clip, img, [2, 14], classes, background)
    assert maps.shape == (2, 50, 70) and cams.shape == (2, 4, 5)  # 50 x 70 -> 64 x 80 -> 4 x 5 patches
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1 and torch.isfinite(maps).all()
    # an absent class's prompt does not take part ...
    other = classes.clone()
    other[5] = -other[5]
    torch.testing.assert_close(ce.clip_es_maps(tiny_clip, img, [2, 14], other, background)[1], cams)
    # ... a present one does, and so do the background words
    other[14] = other[5]
    assert not torch.allclose(ce.clip_es_maps(tiny_clip, img, [2, 14], other, background)[1], cams)
    assert not torch.allclose(ce.clip_es_maps(tiny_clip, img, [2, 14], classes, background[:5])[1], cams)
    # the order of the classes is the order of the maps
    swapped = ce.clip_es_maps(tiny_clip, img, [14, 2], classes, background)[0]
    torch.testing.assert_close(swapped, maps.flip(0))


@needs_open_clip
def test_softmax_probabilities_by_hand(tiny_clip, texts):
    text = torch.cat([texts[0][[0]], texts[1][:3]])
    x = ce.preprocess(image(32, 32), 16)
    probs = ce.forward(tiny_clip, x, text)[0].detach()
    logits = torch.log(probs)
    # log-softmax differences are the scaled cosine differences: logit_scale * (cos_i - cos_j)
    scale = float(tiny_clip.logit_scale.exp())
    diffs = (logits[0, 1:] - logits[0, 0]) / scale
    assert torch.all(diffs.abs() <= 2 + 1e-5)  # cosines lie in [-1, 1]
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)


def test_seed_labels_by_hand():
    maps = np.array([[[0.9, 0.2, 0.0]], [[0.1, 0.5, 0.0]]], np.float32)
    # alpha 1: bg = 0.1, 0.5, 1.0 -> class 4+1, then tie 0.5/0.5 -> bg (first), then bg
    assert ce.seed_labels(maps, [4, 11], alpha=1).tolist() == [[5, 0, 0]]
    # alpha 2: bg = 0.01, 0.25, 1 -> 5, 12, 0
    assert ce.seed_labels(maps, [4, 11], alpha=2).tolist() == [[5, 12, 0]]


def test_crf_image_wraps_like_the_authors_cast():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [130, 120, 110]]], np.uint8)
    bgr = rgb[..., ::-1].astype(np.float32) - np.array(ce.MEAN_BGR, np.float32)
    with np.errstate(invalid="ignore"):
        want = bgr.astype(np.uint8)  # eval_cam_with_crf.py line 115 (wraps on x86-64)
    np.testing.assert_array_equal(ce.crf_image(rgb), want)
    assert ce.crf_image(rgb)[0, 0].tolist() == [256 - 104, 256 - 116, 256 - 122]  # B, G, R: -104.008 -> -104 -> 152


def test_pseudo_mask_through_the_crf():
    side = 16
    img = np.zeros((side, 2 * side, 3), np.uint8)
    img[:, :side] = (220, 30, 30)
    img[:, side:] = (20, 40, 210)
    maps = np.zeros((1, side, 2 * side), np.float32)
    maps[:, :, :side] = 1.0
    labels, mask = ce.pseudo_mask(img, maps, keys=[7])
    assert (labels[:, :side] == 8).all() and (labels[:, side:] == 0).all()
    np.testing.assert_array_equal(mask, labels)  # all sure


def test_pseudo_mask_confidence_rule(monkeypatch):
    """What happens after the CRF, on CRF probabilities written by hand (eval_cam_with_crf.py 117-124)."""
    seen = {}

    def fake_crf(image, scores, params):
        seen.update(image=image, scores=scores, params=params)
        return np.array([[[0.96, 0.02, 0.50]], [[0.03, 0.94, 0.45]], [[0.01, 0.04, 0.05]]], np.float32)

    monkeypatch.setattr(ce, "crf_from_scores", fake_crf)
    img = np.array([[[0, 0, 0], [255, 255, 255], [130, 120, 110]]], np.uint8)
    maps = np.array([[[0.2, 0.9, 0.5]], [[0.1, 0.3, 0.4]]], np.float32)
    labels, mask = ce.pseudo_mask(img, maps, keys=[3, 17])
    assert labels.tolist() == [[0, 4, 0]] and mask.tolist() == [[0, 255, 255]]
    np.testing.assert_allclose(seen["scores"][0], 1 - maps.max(axis=0))  # background (1 - max) ** 1 first
    np.testing.assert_array_equal(seen["image"], ce.crf_image(img))
    assert seen["params"] == CLIP_ES_CRF
    ce.pseudo_mask(img, maps, keys=[3, 17], as_published=False)
    np.testing.assert_array_equal(seen["image"], img)


@needs_open_clip
@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_load_clip(tmp_path):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    with pytest.raises(DataError, match="not found") as e:
        ce.load_clip(tmp_path / "ViT-B-16.pt")
    assert "\n" not in str(e.value)
    saved = save_tiny_clip(tmp_path / "tiny.pt")
    model = CLIP(16, vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=64, patch_size=16, image_size=32),
                 text_cfg=CLIPTextCfg(width=64, heads=1, layers=1), quick_gelu=True)
    model.load_state_dict(torch.load(saved, weights_only=True))
    loaded = ce.load_clip(saved)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))  # no float16 rounding
    assert loaded.visual.conv1.weight.dtype == torch.float32 and not loaded.training
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3)}, other)
    with pytest.raises(DataError, match="not a ViT CLIP"):
        ce.load_clip(other)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))  # OpenAI's release is a TorchScript archive
    assert set(ce._read_clip_state(scripted)) == {"weight", "bias"}
    with pytest.raises(DataError, match="not a ViT CLIP"):
        ce.load_clip(scripted)


def test_missing_open_clip_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(UsageError, match=r"pip install -e '\.\[clip\]'"):
        ce.load_clip(tmp_path / "x.pt")


def test_clip_es_crf_is_the_authors():
    assert CLIP_ES_CRF.gaussian_sxy == 1 and CLIP_ES_CRF.gaussian_compat == 3
    assert (CLIP_ES_CRF.bilateral_sxy, CLIP_ES_CRF.bilateral_srgb, CLIP_ES_CRF.bilateral_compat) == (67, 3, 4)


# ---- the registered class-map producer 'clip-es' ----------------------------------------------------

@needs_open_clip
def test_classmap_plugin_gives_the_steps_maps(tmp_path, resnet18_classifier, tiny_dataset):
    from wssbench.host.registry import default_registry

    weights = save_tiny_clip(tmp_path / "tiny.pt")
    producer = default_registry().create("classmap", "clip-es", weights=str(weights))
    model = resnet18_classifier(tiny_dataset.num_classes - 1)
    producer.fit(model, tiny_dataset, "train", "key")
    photos = [tiny_dataset.load_image(i) for i in tiny_dataset.ids("val")[:2]]
    classes = torch.tensor([[2, 0], [1, -1]])
    maps = producer(model, model.preprocess(photos), classes)  # (2, 2, 64, 64)
    clip = ce.load_clip(weights)
    text = ce.text_features(clip, [c.replace("_", " ") for c in tiny_dataset.classes[1:]])  # not VOC's: its own names
    background = ce.text_features(clip, ce.BACKGROUND)
    for b, wanted in enumerate(([2, 0], [1])):
        want, _ = ce.clip_es_maps(clip, photos[b], wanted, text, background)
        want = want / want.amax(dim=(1, 2), keepdim=True)
        torch.testing.assert_close(maps[b, : len(wanted)], want, atol=1e-5, rtol=1e-4)
    assert (maps[1, 1] == 0).all()  # padding


def test_classmap_plugin_names_and_errors(tmp_path):
    from wssbench.host.registry import default_registry

    registry = default_registry()
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")  # only its existence is checked when the producer is created
    voc = registry.create("classmap", "clip-es", weights=str(weights))
    assert voc.class_names(["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
                            "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]) == list(ce.VOC_NAMES)
    assert voc.class_names(["disc", "hollow_ring"]) == ["disc", "hollow ring"]
    with pytest.raises(UsageError, match="classmap.weights=FILE") as e:
        registry.create("classmap", "clip-es")
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="none.pt: CLIP weights file not found"):
        registry.create("classmap", "clip-es", weights=str(tmp_path / "none.pt"))
    with pytest.raises(UsageError, match="names=nosuch"):
        registry.create("classmap", "clip-es", weights=str(weights), names="nosuch")


@needs_open_clip
def test_run_command_with_clip_es(tmp_path):
    from click.testing import CliRunner

    from wssbench.cli import cli

    weights = save_tiny_clip(tmp_path / "tiny.pt")
    result = CliRunner().invoke(cli, ["run", "-O", "dataset.preset=tiny", "--classmap", "clip-es", "-O", f"classmap.weights={weights}",
                                      "--saliency", "none", "--classes-from", "labels", "--refine", "none", "--epochs", "1",
                                      "--crop", "48", "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    import json

    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["components"]["classmap"]["name"] == "clip-es" and 0 <= record["miou"] <= 1
    missing = CliRunner().invoke(cli, ["run", "-O", "dataset.preset=tiny", "--classmap", "clip-es", "--saliency", "none",
                                       "-O", f"classmap.weights={tmp_path / 'none.pt'}", "--epochs", "1", "--crop", "48",
                                       "--out", str(tmp_path / "missing")])
    assert missing.exit_code == 1 and "none.pt: CLIP weights file not found" in missing.output, missing.output
    assert not (tmp_path / "missing").exists()
