"""Catalog and interactions model, format readers, splits and the demo world."""
from .dataset import UNKNOWN, Dataset, FieldSpec
from .split import PAD, EvalSet, LeaveOneOut, leave_one_out, pad_right_aligned, sliding_windows

__all__ = ["Dataset", "FieldSpec", "UNKNOWN", "PAD", "EvalSet", "LeaveOneOut", "leave_one_out",
           "pad_right_aligned", "sliding_windows"]
