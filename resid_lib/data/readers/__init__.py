"""Readers for the formats papers publish data in, into the canonical Dataset."""
from __future__ import annotations

FORMATS = ("s3rec", "lcrec", "recbole", "resid")
