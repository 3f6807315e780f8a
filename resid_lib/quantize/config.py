"""Q-stage settings (section ``quantize``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

QuantizeMethod = Literal["gaoq", "rqvae", "hkmeans", "rqkmeans", "pq"]


@dataclass
class QuantizeConfig:
    method: QuantizeMethod = "gaoq"
