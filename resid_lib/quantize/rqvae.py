"""RQ-VAE, the TIGER tokenizer (ablation Q1 and the TIGER baseline).

An MLP auto-encoder whose latent passes through ``levels`` residual vector
quantizers: level ``l`` picks the codeword nearest to the residual
``r_l = z - sum_{k<l} e_k`` (``r_1 = z``). Following TIGER (Rajput et al., 2023):

- encoder ``d -> 512 -> 256 -> 128 -> 32`` with ReLU, decoder the mirror image;
- 3 levels x 256 codes, codebooks initialised by k-means on the first batch's latents
  (level by level, on the residuals);
- loss ``||x - x^||^2 + sum_l ||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2`` with
  ``beta = 0.25`` and the straight-through estimator ``z_q = z + sg[sum_l e_l - z]``.

Beyond the paper, unused codewords are reset to random residuals of the last batch at
the end of each epoch (except in the last tenth of training) so every code stays in
play. Items that end up with the same code tuple get the usual dedup level from the
stage. Training shuffles with ``epoch_rng`` and, given ``checkpoint``, saves at epoch
ends and continues from there, so an interrupted fit resumes exactly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..train import Checkpoint, cosine_schedule, epoch_rng, progress, state_dict_cpu
from .base import Quantizer, check_embeddings
from .chunks import chunk_rows, pad_rows, row_chunks
from .kmeans import kmeans


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAEModel(nn.Module):
    """Encoder, residual codebooks (levels, codebook_size, latent_dim) and decoder."""

    def __init__(self, dim: int, hidden_dims: list[int], latent_dim: int, levels: int, codebook_size: int):
        super().__init__()
        self.encoder = _mlp([dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), dim])
        self.codebooks = nn.Parameter(torch.zeros(levels, codebook_size, latent_dim))

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Residual quantization of latents z (n, latent_dim).

        Returns:
            codes (n, levels) int64, chosen codewords summed (n, latent_dim),
            and per level the residual it quantized (n, latent_dim).
        """
        residual = z
        codes, residuals = [], []
        total = torch.zeros_like(z)
        for book in self.codebooks:
            idx = torch.cdist(residual.detach(), book.detach()).argmin(dim=1)
            chosen = book[idx]
            residuals.append(residual)
            codes.append(idx)
            total = total + chosen
            residual = residual - chosen.detach()
        return torch.stack(codes, dim=1), total, residuals

    def loss(self, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss for a batch x (n, dim) and the batch's codes (n, levels)."""
        z = self.encoder(x)
        codes, _, residuals = self.quantize(z)
        vq = x.new_zeros(())
        for level, r in enumerate(residuals):
            e = self.codebooks[level][codes[:, level]]
            vq = vq + ((r.detach() - e) ** 2).sum(1).mean() + beta * ((r - e.detach()) ** 2).sum(1).mean()
        chosen = sum(self.codebooks[level][codes[:, level]] for level in range(len(residuals)))
        z_q = z + (chosen - z).detach()
        recon = ((self.decoder(z_q) - x) ** 2).sum(1).mean()
        return recon + vq, codes


class RQVAE(Quantizer):
    """TIGER's residual-quantized variational auto-encoder; see the module docstring."""

    name = "rqvae"

    def __init__(
        self,
        *,
        levels: int = 3,
        codebook_size: int = 256,
        latent_dim: int = 32,
        hidden_dims: list[int] | tuple[int, ...] = (512, 256, 128),
        epochs: int = 100,
        batch_size: int = 1024,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        beta: float = 0.25,
        reset_dead_codes: bool = True,
        checkpoint: str | Path | None = None,
        progress: bool = False,
        seed: int = 0,
        device: str = "auto",
    ):
        super().__init__(seed=seed, device=device)
        if levels < 1 or codebook_size < 2 or latent_dim < 1 or epochs < 1 or batch_size < 1:
            raise ConfigError("rqvae: levels, latent_dim, epochs, batch_size must be positive and codebook_size >= 2")
        self.levels = levels
        self.codebook_size = codebook_size
        self.latent_dim = latent_dim
        self.hidden_dims = list(hidden_dims)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.beta = beta
        self.reset_dead_codes = reset_dead_codes
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.progress = progress

    @property
    def codebook_sizes_(self) -> tuple[int, ...]:
        """Codes per level (before the stage's dedup level, when codes collide)."""
        return (self.codebook_size,) * self.levels

    def _model(self, dim: int) -> RQVAEModel:
        return RQVAEModel(dim, self.hidden_dims, self.latent_dim, self.levels, self.codebook_size)

    def _fit(self, X: np.ndarray) -> None:
        n, dim = X.shape
        if n < self.codebook_size:
            raise DataError(f"rqvae: {n} items are fewer than the {self.codebook_size} codes per level; "
                            "lower quantize.codebook_size")
        device = resolve_device(self.device)
        torch.manual_seed(self.seed)
        model = self._model(dim).to(device)
        data = torch.from_numpy(X).to(device)
        batch = min(self.batch_size, n)
        steps_per_epoch = -(-n // batch)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = cosine_schedule(optimizer, self.epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(self.seed)
        start = 0
        ckpt = Checkpoint.load(self.checkpoint) if self.checkpoint else None
        if ckpt is not None and ckpt.extra.get("shape") == [n, dim] and ckpt.extra.get("seed") == self.seed:
            model.load_state_dict(ckpt.model)
            optimizer.load_state_dict(ckpt.optimizer)
            scheduler.load_state_dict(ckpt.scheduler)
            generator.set_state(ckpt.extra["generator"])
            start = ckpt.epoch + 1
        else:
            first = torch.from_numpy(epoch_rng(self.seed, 0).permutation(n)[:batch]).to(device)
            self._init_codebooks(model, data[first])
        stop_resets = self.epochs - max(1, self.epochs // 10)
        bar = progress(range(start, self.epochs), desc="rqvae", enabled=self.progress, total=self.epochs - start)
        for epoch in bar:
            order = torch.from_numpy(epoch_rng(self.seed, epoch).permutation(n)).to(device)
            used = torch.zeros(self.levels, self.codebook_size, dtype=torch.bool, device=device)
            total = 0.0
            for s in range(0, n, batch):
                x = data[order[s:s + batch]]
                loss, codes = model.loss(x, self.beta)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(x)
                for level in range(self.levels):
                    used[level, codes[:, level]] = True
            if self.reset_dead_codes and epoch < stop_resets:
                self._reset_dead(model, x, used, generator)
            if self.progress:
                bar.set_postfix(loss=f"{total / n:.4g}", used=f"{used.float().mean():.2f}")
            if self.checkpoint and (epoch % 10 == 9 or epoch == self.epochs - 1):
                Checkpoint(epoch=epoch, model=state_dict_cpu(model), optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict(),
                           extra={"shape": [n, dim], "seed": self.seed, "generator": generator.get_state()}).save(self.checkpoint)
        self.dim_ = dim
        self.model_state_ = state_dict_cpu(model)

    @torch.no_grad()
    def _init_codebooks(self, model: RQVAEModel, x: torch.Tensor) -> None:
        """k-means of the first batch's latents, level by level on the residuals."""
        residual = model.encoder(x)
        for level in range(self.levels):
            centroids, labels = kmeans(residual, self.codebook_size, seed=self.seed + level)
            centroids = centroids.to(residual.device, residual.dtype)
            model.codebooks[level].copy_(centroids)
            residual = residual - centroids[labels.to(residual.device)]

    @torch.no_grad()
    def _reset_dead(self, model: RQVAEModel, x: torch.Tensor, used: torch.Tensor, generator: torch.Generator) -> None:
        """Move codewords no item chose this epoch onto random residuals of batch x."""
        _, _, residuals = model.quantize(model.encoder(x))
        for level in range(self.levels):
            dead = (~used[level]).nonzero().squeeze(1)
            if len(dead):
                pick = torch.randint(len(x), (len(dead),), generator=generator).to(x.device)
                model.codebooks[level][dead] = residuals[level][pick]

    def _loaded_model(self) -> RQVAEModel:
        model = self._model(self.dim_)
        model.load_state_dict(self.model_state_)
        return model.eval()

    def _chunks(self, n: int) -> Iterator[slice]:
        """Row chunks for encoding: the widest layer's activations stay within the chunk budget."""
        return row_chunks(n, chunk_rows(max(self.dim_, *self.hidden_dims, self.codebook_size)))

    @torch.no_grad()
    def _encode(self, X: np.ndarray) -> np.ndarray:
        model = self._loaded_model()
        out = np.empty((len(X), self.levels), dtype=np.int64)
        for part in self._chunks(len(X)):  # whole tiles: a row's codes do not depend on its chunk
            x = pad_rows(torch.from_numpy(X[part]))
            out[part] = model.quantize(model.encoder(x))[0][: part.stop - part.start].numpy()
        return out

    @torch.no_grad()
    def reconstruct(self, X) -> np.ndarray:
        """(n, dim) decoder output from the quantized latents of X."""
        if not self.fitted_:
            raise ConfigError("RQVAE is not fitted; call fit(X) first")
        X = check_embeddings(X)
        model = self._loaded_model()
        out = np.empty(X.shape, dtype=np.float32)
        for part in self._chunks(len(X)):
            _, chosen, _ = model.quantize(model.encoder(pad_rows(torch.from_numpy(X[part]))))
            out[part] = model.decoder(chosen)[: part.stop - part.start].numpy()
        return out
