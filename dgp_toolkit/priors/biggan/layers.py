"""BigGAN building blocks with the state-dict layout of the official BigGAN-PyTorch weights.

Spectral norm keeps its power-iteration vector in a buffer ``u0`` and the last singular
value estimate in ``sv0``. Every forward does one power-iteration step from ``u0``; only
training mode writes the new vectors back (eval mode never does), which is what the
official checkpoints and the DGP reference expect.

Speed: in eval mode the normalised weight of a layer depends only on ``weight`` and
``u0``. When no gradient is needed for the weight (a frozen discriminator, frozen
generator stages, ``torch.no_grad``), the normalised weight is cached and reused until
either tensor changes (tracked by the tensors' in-place version counters), so a frozen
network pays for spectral norm once per run rather than once per step.

Stacked copies (the batched DGP engine): a layer's parameters may carry one extra leading
dimension, ``copies``, holding that many independent versions of the layer (one per image
being restored). Sample ``i`` of the input then goes through copy ``i``: a convolution
becomes a grouped convolution with one group per copy, a linear layer a batched matrix
product, and spectral norm runs its power iteration per copy from the shared ``u0``
(eval mode only; the vectors are never written back). Nothing mixes the copies, so N
stacked copies compute what N separate layers compute (up to float reduction order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.normalize(x, dim=-1, eps=eps)


class SpectralNorm:
    """Mixin giving a module with ``weight`` spectrally normalised weights.

    Subclasses call :meth:`_init_sn` after their parameters exist and use
    :meth:`sn_weight` in their forward.
    """

    weight: nn.Parameter
    u0: torch.Tensor
    sv0: torch.Tensor
    #: the number of dimensions of an unstacked weight (a leading one more means copies)
    weight_dims = 2

    def _init_sn(self, num_outputs: int, eps: float) -> None:
        self.sn_eps = eps
        # The official layers draw u0 from N(0, 1) and keep sv0 at one.
        self.register_buffer("u0", torch.randn(1, num_outputs))
        self.register_buffer("sv0", torch.ones(1))
        self._sn_cache: tuple | None = None

    @property
    def copies(self) -> int | None:
        """The number of stacked copies, or ``None`` for a plain layer."""
        return self.weight.shape[0] if self.weight.dim() > self.weight_dims else None

    def _weight_matrix(self) -> torch.Tensor:
        if self.weight.dim() > self.weight_dims:  # (copies, out, in...) -> (copies, out, in)
            return self.weight.reshape(self.weight.shape[0], self.weight.shape[1], -1)
        return self.weight.reshape(self.weight.shape[0], -1)

    def _sigma(self, w_mat: torch.Tensor, update: bool) -> torch.Tensor:
        with torch.no_grad():
            u = self.u0.to(w_mat.dtype)
            v = _normalize(u @ w_mat, self.sn_eps)
        # v W^T serves both the new u (detached) and sigma = (v W^T) u^T, which carries the
        # gradient to W: one product instead of two, the same values.
        vw = v @ w_mat.transpose(-1, -2)
        u = _normalize(vw.detach(), self.sn_eps)
        sigma = vw @ u.transpose(-1, -2)
        if w_mat.dim() == 3:  # stacked copies: one sigma per copy, shaped to divide the weight
            if update:
                raise RuntimeError("stacked spectral-norm layers run in eval mode only")
            return sigma.reshape(-1, *[1] * self.weight_dims)
        sigma = sigma.squeeze()
        if update:
            with torch.no_grad():
                self.u0.copy_(u)
                self.sv0.copy_(sigma.detach().reshape(1))
        return sigma

    def sn_weight(self) -> torch.Tensor:
        """The weight divided by its spectral-norm estimate (one power iteration)."""
        weight = self.weight
        if self.training:
            self._sn_cache = None
            return weight / self._sigma(self._weight_matrix(), update=True)
        needs_grad = torch.is_grad_enabled() and weight.requires_grad
        if needs_grad:
            return weight / self._sigma(self._weight_matrix(), update=False)
        key = (weight._version, self.u0._version, weight.data_ptr(), self.u0.data_ptr(), weight.dtype)
        cache = self._sn_cache
        if cache is not None and cache[0] == key:
            return cache[1]
        with torch.no_grad():
            w = weight / self._sigma(self._weight_matrix(), update=False)
        self._sn_cache = (key, w)
        return w

    def clear_sn_cache(self) -> None:
        self._sn_cache = None


def _check_copies(x: torch.Tensor, copies: int) -> None:
    if x.shape[0] != copies:
        raise ValueError(f"a layer with {copies} stacked copies takes a batch of {copies} (one sample "
                         f"per copy), got {x.shape[0]}")


class SNConv2d(nn.Conv2d, SpectralNorm):
    weight_dims = 4

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1,
                 bias: bool = True, eps: float = 1e-6):
        super().__init__(in_ch, out_ch, kernel_size, padding=padding, bias=bias)
        self._init_sn(out_ch, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.sn_weight()
        if weight.dim() == 4:
            return F.conv2d(x, weight, self.bias, self.stride, self.padding)
        copies = weight.shape[0]
        _check_copies(x, copies)
        # one group per copy: sample i's channels meet only copy i's filters
        bias = None if self.bias is None else self.bias.reshape(-1)
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight.reshape(-1, *weight.shape[2:]), bias,
                       self.stride, self.padding, groups=copies)
        return out.reshape(copies, -1, *out.shape[2:])


class SNLinear(nn.Linear, SpectralNorm):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, eps: float = 1e-6):
        super().__init__(in_features, out_features, bias=bias)
        self._init_sn(out_features, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.sn_weight()
        if weight.dim() == 2:
            return F.linear(x, weight, self.bias)
        _check_copies(x, weight.shape[0])
        out = torch.bmm(x.unsqueeze(1), weight.transpose(1, 2)).squeeze(1)
        return out if self.bias is None else out + self.bias


class SNEmbedding(nn.Embedding, SpectralNorm):
    def __init__(self, num_embeddings: int, embedding_dim: int, eps: float = 1e-6):
        super().__init__(num_embeddings, embedding_dim)
        self._init_sn(num_embeddings, eps)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.embedding(y, self.sn_weight())


class ConditionalBatchNorm(nn.Module):
    """Class-conditional batch norm: gain and bias are SN linears of the conditioning vector.

    ``out = (x - mean) / sqrt(var + eps) * (1 + gain(c)) + bias(c)``; eval mode uses the
    stored statistics, training mode the batch's (and updates the stored ones).
    """

    def __init__(self, channels: int, cond_dim: int, *, bn_eps: float = 1e-5,
                 sn_eps: float = 1e-6, momentum: float = 0.1):
        super().__init__()
        self.gain = SNLinear(cond_dim, channels, bias=False, eps=sn_eps)
        self.bias = SNLinear(cond_dim, channels, bias=False, eps=sn_eps)
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))
        self.bn_eps = bn_eps
        self.momentum = momentum

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.stored_mean, self.stored_var, None, None,
                            self.training, self.momentum, self.bn_eps)

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gain = (1 + self.gain(c)).view(c.shape[0], -1, 1, 1)
        bias = self.bias(c).view(c.shape[0], -1, 1, 1)
        return gain, bias

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gain, bias = self.modulation(c)
        return self.normalize(x) * gain + bias


class BatchNorm(nn.Module):
    """Unconditional batch norm with learned ``gain``/``bias`` and stored statistics."""

    def __init__(self, channels: int, *, bn_eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))
        self.bn_eps = bn_eps
        self.momentum = momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias,
                            self.training, self.momentum, self.bn_eps)


class SelfAttention(nn.Module):
    """SAGAN self-attention with 2x2 max-pooled keys and values; output ``x + gamma * o``."""

    def __init__(self, channels: int, *, sn_eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.theta = SNConv2d(channels, channels // 8, 1, padding=0, bias=False, eps=sn_eps)
        self.phi = SNConv2d(channels, channels // 8, 1, padding=0, bias=False, eps=sn_eps)
        self.g = SNConv2d(channels, channels // 2, 1, padding=0, bias=False, eps=sn_eps)
        self.o = SNConv2d(channels // 2, channels, 1, padding=0, bias=False, eps=sn_eps)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        b, ch, h, w = x.shape
        theta = self.theta(x).reshape(b, ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).reshape(b, ch // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), 2).reshape(b, ch // 2, h * w // 4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)
        o = self.o((g @ beta.transpose(1, 2)).reshape(b, ch // 2, h, w))
        gamma = self.gamma if self.gamma.dim() == 0 else self.gamma.view(-1, 1, 1, 1)  # stacked copies
        return x + gamma * o


class GBlock(nn.Module):
    """Generator residual block: BN-ReLU-up-conv-BN-ReLU-conv, plus an upsampled 1x1 shortcut.

    With ``use_in`` (DGP's instance-norm path), the two conditional batch norms are
    replaced by instance norms whose scale and shift are taken, at the first forward after
    :meth:`reset_instance_norm`, from the per-channel std and mean of the batch norms'
    outputs. Those statistics are plain tensors, never optimized and never saved.
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, *, bn_eps: float = 1e-5,
                 sn_eps: float = 1e-6):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(in_ch, cond_dim, bn_eps=bn_eps, sn_eps=sn_eps)
        self.conv1 = SNConv2d(in_ch, out_ch, 3, eps=sn_eps)
        self.bn2 = ConditionalBatchNorm(out_ch, cond_dim, bn_eps=bn_eps, sn_eps=sn_eps)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, eps=sn_eps)
        self.conv_sc = SNConv2d(in_ch, out_ch, 1, padding=0, eps=sn_eps)
        self.use_in = False
        self._in_stats: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, None]

    def reset_instance_norm(self) -> None:
        self._in_stats = [None, None]

    def _norm(self, index: int, bn: ConditionalBatchNorm, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if not self.use_in:
            return bn(x, c)
        stats = self._in_stats[index]
        if stats is None:
            with torch.no_grad():
                ref = bn(x, c)
                std = ref.std(dim=(2, 3), keepdim=True, unbiased=False)
                mean = ref.mean(dim=(2, 3), keepdim=True)
            stats = (std, mean)
            self._in_stats[index] = stats
        normed = F.instance_norm(x, eps=bn.bn_eps)
        return normed * stats[0] + stats[1]

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.relu(self._norm(0, self.bn1, x, c))
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv1(h)
        h = F.relu(self._norm(1, self.bn2, h, c))
        h = self.conv2(h)
        return h + self.conv_sc(x)


class DBlock(nn.Module):
    """Discriminator residual block ("wide": hidden = out channels), optionally pre-activated."""

    def __init__(self, in_ch: int, out_ch: int, *, preactivation: bool, downsample: bool,
                 sn_eps: float = 1e-6):
        super().__init__()
        self.preactivation = preactivation
        self.downsample = downsample
        self.conv1 = SNConv2d(in_ch, out_ch, 3, eps=sn_eps)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, eps=sn_eps)
        self.learnable_sc = in_ch != out_ch or downsample
        if self.learnable_sc:
            self.conv_sc = SNConv2d(in_ch, out_ch, 1, padding=0, eps=sn_eps)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:
            if self.learnable_sc:
                x = self.conv_sc(x)
            if self.downsample:
                x = F.avg_pool2d(x, 2)
        else:
            if self.downsample:
                x = F.avg_pool2d(x, 2)
            if self.learnable_sc:
                x = self.conv_sc(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)
