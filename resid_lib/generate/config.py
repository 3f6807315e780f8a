"""G-stage settings (section ``generate``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerateConfig:
    beams: int = 50
