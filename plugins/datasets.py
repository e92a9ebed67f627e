"""Datasets ``synthetic`` (the embedded default, generated) and ``voc2012`` (PASCAL VOC 2012)."""

import wssbench
from wssbench.data.synthetic import SyntheticDataset
from wssbench.data.voc2012 import VOC2012


@wssbench.hookimpl
def register_datasets(register):
    register(SyntheticDataset)
    register(VOC2012)
