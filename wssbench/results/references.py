"""Published PASCAL VOC 2012 numbers that give a leaderboard its context, as data.

Everything here is transcribed from DESIGN.md section 3: the baselines of the seed poster's
tables (val and test mIoU %, image labels only) and the "later landmarks" line. Nothing is added
from memory: the later landmarks come with neither a paper nor a description there, so their
``source`` says only "later landmark" and their ``description`` is None; they are read as val
numbers, as the line states for its first entry (AffinityNet 61.7 val). CAM seeds (about 48 mIoU)
are scored on *train* with ground-truth image labels: the seed-quality protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

# The protocol strings of ``RunConfig.protocol`` (result records carry them as "protocol").
SEGMENTATION = "segmentation"
SEED_QUALITY = "seed quality (ground-truth image labels)"

# Images per split (DESIGN.md section 4): a published number compares only with a full split.
SPLIT_SIZES = {"voc2012": {"train": 1464, "val": 1449, "test": 1456},
               "coco": {"train2014": 82081, "val2014": 40137}}  # the WSSS COCO protocol (COCO 2014)


@dataclass(frozen=True)
class Reference:
    """One published method: its mIoU (%) per split, under one dataset and protocol."""

    method: str
    description: str | None  # what it does; None where DESIGN.md does not say
    source: str  # the citation as far as DESIGN.md gives it (authors, venue, year)
    miou: dict[str, float]  # split -> mIoU (%)
    dataset: str = "voc2012"
    protocol: str = SEGMENTATION
    approximate: bool = False  # DESIGN.md says "about"
    stage: str | None = None  # "seed", "pseudo-mask" or "segmentation" where the number is of one stage only

    @property
    def label(self) -> str:
        return f"{self.method} (approx.)" if self.approximate else self.method


POSTER = "Shimoda & Yanai (seed poster)"
LATER = "later landmark"

REFERENCES: tuple[Reference, ...] = (
    # The baselines in the poster's tables.
    Reference("MIL-FCN", "FCN, multi-class MIL loss = global max pooling", "Pathak et al. 2015", {"val": 25.7, "test": 24.9}),
    Reference("MIL-sppxl", "log-sum-exp pooling + superpixel smoothing", "Pinheiro & Collobert 2015", {"val": 36.6}),
    Reference("MIL-bb", "MIL-sppxl + box-proposal objectness", "Pinheiro & Collobert 2015", {"val": 37.8}),
    Reference("MIL-seg", "MIL-sppxl + MCG segment objectness (extra images)", "Pinheiro & Collobert 2015", {"val": 42.0, "test": 40.6}),
    Reference("CCNN", "linear constraints on label distribution (presence, absence, size)", "Pathak et al. 2015", {"val": 34.5, "test": 35.5}),
    Reference("EM-Adapt", "EM with adaptive per-class biases fixing fg/bg fractions", "Papandreou et al. 2015", {"val": 38.2, "test": 39.6}),
    Reference("STC", "simple-to-complex training with saliency on 40K extra images", "Wei et al.", {"val": 49.8, "test": 51.2}),
    Reference("ZOF+GBP", "zoom-out + mi-SVM class maps + guided BP", POSTER, {"val": 38.1, "test": 37.7}),
    Reference("FCN+MCG", "FCN + MCG objectness", POSTER, {"val": 33.8, "test": 33.1}),
    Reference("FCN+GBP", "FCN class maps + guided BP", POSTER, {"val": 41.4, "test": 40.7}),
    Reference("DCSM", "multi-layer distinct GBP maps + dense CRF", "Shimoda & Yanai, ECCV 2016", {"val": 44.1, "test": 45.1}),
    # Later landmarks.
    Reference("CAM seeds", "CAM pseudo-masks on train, classes from the ground-truth image labels", LATER,
              {"train": 48.0}, protocol=SEED_QUALITY, approximate=True, stage="seed"),
    # Pseudo-masks on VOC 2012 train (1,464), ground-truth image labels (modern-methods.md sections 1.5, 2.7, 3.7;
    # the level of each source as that file marks it)
    Reference("PSA (AffinityNet RW), ResNet-38", "CAM seeds walked on AffinityNet's affinities, no CRF",
              "Ahn & Kwak, CVPR 2018 (jiwoon-ahn/psa README, PyTorch re-implementation)", {"train": 61.0},
              protocol=SEED_QUALITY, stage="pseudo-mask"),
    Reference("PSA (AffinityNet RW), VGG-16", "CAM seeds walked on AffinityNet's affinities, no CRF",
              "Ahn & Kwak, CVPR 2018 (jiwoon-ahn/psa README, PyTorch re-implementation)", {"train": 59.6},
              protocol=SEED_QUALITY, stage="pseudo-mask"),
    Reference("IRN, ResNet-50", "CAM seeds walked on IRN's class-boundary affinities",
              "Ahn, Cho & Kwak, CVPR 2019 (secondary: jiwoon-ahn/irn issue #26, undisputed by the author)", {"train": 66.5},
              protocol=SEED_QUALITY, stage="pseudo-mask"),
    Reference("CLIP-ES seeds, ViT-B/16", "softmax Grad-CAM of CLIP with class-aware attention affinity",
              "Lin et al., CVPR 2023 (linyq2117/CLIP-ES README)", {"train": 70.8}, protocol=SEED_QUALITY, stage="seed"),
    Reference("CLIP-ES + CRF, ViT-B/16", "CLIP-ES seeds through a dense CRF, unsure pixels ignored",
              "Lin et al., CVPR 2023 (linyq2117/CLIP-ES README)", {"train": 75.0}, protocol=SEED_QUALITY, stage="pseudo-mask"),
    Reference("AffinityNet", None, LATER, {"val": 61.7}),
    Reference("IRN", None, LATER, {"val": 63.5}),
    Reference("SEAM", None, LATER, {"val": 64.5}),
    Reference("AdvCAM", None, LATER, {"val": 68.1}),
    Reference("ToCo", None, LATER, {"val": 71.1}),
    Reference("CLIP-ES", None, LATER, {"val": 71.1}),
    Reference("ExCEL", None, f"{LATER}, 2025", {"val": 78.4}),
    # COCO 2014, 81 classes (modern-methods.md section 3.7, the CLIP-ES README: DeepLabV2, ImageNet-pretrained)
    Reference("CLIP-ES", "training-free CLIP seeds with class-aware attention affinity, then DeepLabV2",
              "Lin et al., CVPR 2023 (linyq2117/CLIP-ES README)", {"val2014": 45.4}, dataset="coco"),
)


def matching(dataset: str, split: str, protocol: str, n_images: int) -> list[tuple[Reference, float]]:
    """The references (and their mIoU) comparable with runs over all ``n_images`` of a split."""
    if SPLIT_SIZES.get(dataset, {}).get(split) != n_images:
        return []
    return [
        (ref, ref.miou[split])
        for ref in REFERENCES
        if ref.dataset == dataset and ref.protocol == protocol and split in ref.miou
    ]
