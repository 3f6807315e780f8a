"""A synthetic shopping world for teaching and quick runs.

The world has the structure ReSID relies on:

- a three-level category tree (``cat_l1 > cat_l2 > cat_l3``) and brands that each
  serve one or two top-level categories (some items have no known brand);
- latent shopping **missions** that cut across the tree: a mission is a handful of
  leaf categories from *different* top-level categories (party buyers take
  balloons, snacks and tableware together), so co-purchase structure is not
  recoverable from the category tree alone;
- users who follow one or two missions, switch missions now and then, stay loyal
  to a favourite brand, and prefer popular items (Zipf-like popularity skew).

Everything is drawn from one ``numpy`` Generator seeded by ``seed``: the same
arguments give the same dataset, byte for byte.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .dataset import Dataset, FieldSpec

_L1 = ["Party", "Kitchen", "Garden", "Beauty", "Office", "Toys", "Sports", "Pets"]
_ADJ = ["Classic", "Deluxe", "Eco", "Mini", "Pro", "Bright", "Soft", "Smart", "Urban", "Wild"]
_NOUN = ["Set", "Pack", "Kit", "Bundle", "Box", "Edition", "Series", "Collection"]


def make_demo_dataset(
    n_items: int = 2000,
    n_users: int = 3000,
    *,
    seed: int = 0,
    n_missions: int = 24,
    n_brands: int = 60,
    mean_length: float = 9.0,
    max_length: int = 60,
) -> Dataset:
    """Generate the demo world; see the module docstring.

    Args:
        n_items: catalog size (at least 50).
        n_users: number of users, each with at least 5 interactions.
        seed: random seed; the output is a pure function of the arguments.
        n_missions: latent cross-category shopping missions.
        n_brands: brands (about 15% of items have no brand).
        mean_length: mean sequence length (lengths are 5 + geometric).
        max_length: longest sequence.
    """
    if n_items < 50:
        raise ConfigError(f"the demo world needs at least 50 items, got {n_items}")
    if n_users < 1:
        raise ConfigError(f"the demo world needs at least one user, got {n_users}")
    if mean_length <= 5 or max_length < 5:
        raise ConfigError("mean_length must exceed 5 and max_length be at least 5")
    rng = np.random.default_rng(seed)

    # category tree: 8 top categories x 3-5 sub x 2-4 leaves
    leaves: list[tuple[str, str, str]] = []
    for l1 in _L1:
        for j in range(rng.integers(3, 6)):
            l2 = f"{l1}/{chr(65 + j)}"
            for k in range(rng.integers(2, 5)):
                leaves.append((l1, l2, f"{l2}{k + 1}"))
    n_leaves = len(leaves)
    leaf_l1 = np.array([_L1.index(l[0]) for l in leaves])

    # brands serve one or two top categories
    brand_cats = [set(rng.choice(len(_L1), size=rng.integers(1, 3), replace=False).tolist()) for _ in range(n_brands)]
    brand_names = [f"{_ADJ[b % len(_ADJ)]}{_NOUN[(b // len(_ADJ)) % len(_NOUN)]}-{b:02d}" for b in range(n_brands)]

    # missions: 3-5 leaves from distinct top categories
    missions = []
    for _ in range(n_missions):
        tops = rng.choice(len(_L1), size=rng.integers(3, 6), replace=False)
        missions.append(np.array([rng.choice(np.flatnonzero(leaf_l1 == t)) for t in tops]))

    # items: a leaf (mission leaves are a bit more frequent), a brand, a popularity
    leaf_weight = np.ones(n_leaves)
    for m in missions:
        leaf_weight[m] += 1.0
    item_leaf = rng.choice(n_leaves, size=n_items, p=leaf_weight / leaf_weight.sum())
    item_brand = np.full(n_items, -1)
    for i, leaf in enumerate(item_leaf):
        options = [b for b in range(n_brands) if leaf_l1[leaf] in brand_cats[b]]
        if options and rng.random() > 0.15:
            item_brand[i] = rng.choice(options)
    popularity = rng.zipf(1.6, size=n_items).clip(max=200).astype(float) * rng.lognormal(0, 0.5, n_items)
    items_of_leaf = [np.flatnonzero(item_leaf == leaf) for leaf in range(n_leaves)]

    titles, descriptions, tags = [], [], []
    for i in range(n_items):
        l1, l2, l3 = leaves[item_leaf[i]]
        brand = brand_names[item_brand[i]] if item_brand[i] >= 0 else "Generic"
        adj, noun = _ADJ[rng.integers(len(_ADJ))], _NOUN[rng.integers(len(_NOUN))]
        titles.append(f"{brand} {adj} {l3.split('/')[-1]} {noun}")
        descriptions.append(f"A {adj.lower()} {noun.lower()} for {l1.lower()} ({l2}).")
        tags.append(sorted({adj.lower(), noun.lower(), l1.lower()}))

    items = pd.DataFrame({
        "item_id": [f"I{i:05d}" for i in range(n_items)],
        "title": titles,
        "description": descriptions,
        "brand": [brand_names[b] if b >= 0 else None for b in item_brand],
        "cat_l1": [leaves[leaf][0] for leaf in item_leaf],
        "cat_l2": [leaves[leaf][1] for leaf in item_leaf],
        "cat_l3": [leaves[leaf][2] for leaf in item_leaf],
        "tags": tags,
    })
    fields = (
        FieldSpec("title", "text"), FieldSpec("description", "text"),
        FieldSpec("brand", "categorical"), FieldSpec("cat_l1", "categorical"),
        FieldSpec("cat_l2", "categorical"), FieldSpec("cat_l3", "categorical"),
        FieldSpec("tags", "multi"),
    )

    # users: missions, a favourite brand, popularity-biased choice
    mission_pop = rng.dirichlet(np.full(n_missions, 0.7))
    sequences, timestamps = [], []
    p_geo = 1.0 / (mean_length - 4.0)
    for _ in range(n_users):
        own = rng.choice(n_missions, size=rng.integers(1, 3), replace=False, p=mission_pop)
        fav_brand = rng.integers(n_brands)
        length = int(min(max_length, 5 + rng.geometric(p_geo) - 1))
        mission = rng.choice(own)
        step = int(rng.integers(len(missions[mission])))
        seq = []
        for _ in range(length):
            if rng.random() < 0.15:
                mission = rng.choice(own) if rng.random() < 0.7 else rng.integers(n_missions)
                step = int(rng.integers(len(missions[mission])))
            if rng.random() < 0.08:  # an impulse buy anywhere in the catalog
                cands = np.arange(n_items)
            else:  # missions move through their leaves in order, wrapping around
                leaf = missions[mission][step % len(missions[mission])]
                step += 1 if rng.random() < 0.8 else 0
                cands = items_of_leaf[leaf]
                if len(cands) == 0:
                    cands = np.arange(n_items)
            weights = popularity[cands].copy()
            weights[item_brand[cands] == fav_brand] *= 4.0
            item = int(cands[rng.choice(len(cands), p=weights / weights.sum())])
            if seq and item == seq[-1]:
                continue
            seq.append(item)
        while len(seq) < 5:
            seq.append(int(rng.choice(n_items, p=popularity / popularity.sum())))
        sequences.append(np.array(seq, dtype=np.int64))
        gaps = rng.exponential(86400.0 * 3, size=len(seq))
        timestamps.append(1.6e9 + np.cumsum(gaps))

    return Dataset(
        name="demo",
        items=items,
        fields=fields,
        user_ids=np.array([f"U{u:05d}" for u in range(n_users)]),
        sequences=sequences,
        timestamps=timestamps,
        source={"format": "demo", "n_items": n_items, "n_users": n_users, "seed": seed},
    )
