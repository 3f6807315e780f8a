"""Q-stage: item embeddings -> Semantic IDs.

Every quantizer follows one protocol (``resid_lib.quantize.base.Quantizer``):
construct with keyword arguments, ``fit(X)``, ``encode(X) -> (n_items, levels)``,
``save``/``load``. An ablation swaps ``quantize.method``:

==========  ==========================================  ============================
method      quantizer                                   as in
==========  ==========================================  ============================
gaoq        :class:`~.gaoq.GAOQ`                        ReSID
rqvae       :class:`~.rqvae.RQVAE`                      TIGER (ablation Q1)
hkmeans     :class:`~.hkmeans.HierarchicalKMeans`       local indices (ablation Q2)
rqkmeans    :class:`~.rqkmeans.ResidualKMeans`          GRID, OneRec
pq          :class:`~.pq.ProductQuantizer`              VQ-Rec, RPG
==========  ==========================================  ============================
"""
from __future__ import annotations

import dataclasses
import inspect

from ..errors import ConfigError
from .base import Quantizer
from .config import QuantizeConfig
from .gaoq import GAOQ
from .hkmeans import HierarchicalKMeans
from .pq import ProductQuantizer
from .rqkmeans import ResidualKMeans
from .rqvae import RQVAE

QUANTIZERS: dict[str, type[Quantizer]] = {
    "gaoq": GAOQ,
    "rqvae": RQVAE,
    "hkmeans": HierarchicalKMeans,
    "rqkmeans": ResidualKMeans,
    "pq": ProductQuantizer,
}


def quantizer_class(method: str) -> type[Quantizer]:
    """The class registered under ``method``; ConfigError listing the known names otherwise."""
    try:
        return QUANTIZERS[method]
    except KeyError:
        raise ConfigError(f"unknown quantizer {method!r} (known: {', '.join(sorted(QUANTIZERS))})") from None


def make_quantizer(cfg_or_name: QuantizeConfig | str, **kwargs) -> Quantizer:
    """A quantizer from a config section or a method name.

    From a :class:`QuantizeConfig` the quantizer gets every config key its constructor
    takes (keys set to None keep the quantizer's own default); ``kwargs`` (e.g. seed,
    device) are added on top and must be constructor arguments.
    """
    if isinstance(cfg_or_name, QuantizeConfig):
        method = cfg_or_name.method
        settings = {k: v for k, v in dataclasses.asdict(cfg_or_name).items() if k != "method" and v is not None}
    else:
        method, settings = cfg_or_name, {}
    cls = quantizer_class(method)
    params = inspect.signature(cls.__init__).parameters
    for key in kwargs:
        if key not in params:
            raise ConfigError(f"quantizer {method!r} has no setting {key!r} "
                              f"(settings: {', '.join(p for p in params if p != 'self')})")
    return cls(**{k: v for k, v in settings.items() if k in params}, **kwargs)


__all__ = ["QUANTIZERS", "Quantizer", "QuantizeConfig", "make_quantizer", "quantizer_class"]
