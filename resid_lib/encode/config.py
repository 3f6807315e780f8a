"""E-stage settings (section ``encode``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EncodeMethod = Literal["famae", "sasrec", "sasrec_features", "bert4rec", "bert4rec_features", "text"]


@dataclass
class EncodeConfig:
    method: EncodeMethod = "famae"
