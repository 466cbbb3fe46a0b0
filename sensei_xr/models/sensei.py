"""SEnSeI: a permutation-invariant spectral encoder (Francis et al., IEEE TGRS 2022).

Any set of ``N >= 1`` bands, each described by its normalised (min, centre, max)
wavelength, is turned into one 64-channel feature map:

1. **Descriptor block** - each descriptor (3 values) goes through 9 fully connected
   layers (widths 16, 16, 32, 16, 16, 64, 128, 64, 64) -> 64 per band.
2. **Permutation block** - every ordered pair ``(i, j)`` of those vectors, ``i == j``
   included, is concatenated to 128 values and put through 5 layers (128, 128, 128,
   64, 64); the mean over the partner ``j`` is concatenated with the block's input ->
   128 per band.
3. **Combined descriptor block** - 8 layers (128, 256, 128, 96, 64, 128, 64, 64) ->
   one 64-vector ``v_i`` per band.
4. **Band multiplication** - ``F(p) = mean_i v_i * (r_i(p) + 0.5)`` at every pixel.

Every hidden layer is ``Linear -> LeakyReLU(0.01) -> GroupNorm(2 groups)``; the last
layer of each block is a plain ``Linear``. In the descriptor and combined blocks a
hidden layer whose width equals its input's adds that input back (a residual), as in
the published configuration of the paper's model. With this placement the trainable
parameter counts are exactly those of the paper's Table VI: 24,208 / 62,848 /
123,488 / 0, total 210,544.

GroupNorm acts on one band's feature vector at a time (the vector is the "channel"
axis, every band of every batch item is its own sample), so it never mixes bands or
batch items: the encoder is permutation invariant and batch independent.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "SEnSeI",
    "OrthonormalSEnSeI",
    "DESCRIPTOR_WIDTHS",
    "PERMUTATION_WIDTHS",
    "COMBINED_WIDTHS",
    "BAND_OFFSET",
    "DESCRIPTOR_SIZE",
    "FEATURES",
]

#: Layer widths of the three blocks (the last of each is the block's output).
DESCRIPTOR_WIDTHS: tuple[int, ...] = (16, 16, 32, 16, 16, 64, 128, 64, 64)
PERMUTATION_WIDTHS: tuple[int, ...] = (128, 128, 128, 64, 64)
COMBINED_WIDTHS: tuple[int, ...] = (128, 256, 128, 96, 64, 128, 64, 64)
#: Added to reflectances before multiplying by the band's vector: a band at zero
#: reflectance still tells the segmenter it is present.
BAND_OFFSET = 0.5
#: Values per band descriptor: normalised (min, centre, max) wavelength.
DESCRIPTOR_SIZE = 3
#: Channels of the output feature map.
FEATURES = 64

_SLOPE = 0.01  # LeakyReLU slope of the reference implementation
_GN_GROUPS = 2
_GN_EPS = 1e-3  # the reference used tensorflow-addons GroupNormalization (eps 1e-3)


class _HiddenLayer(nn.Module):
    """``Linear -> LeakyReLU -> GroupNorm(2)`` on the last axis of a (..., C) tensor."""

    def __init__(self, in_features: int, out_features: int, residual: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.GroupNorm(_GN_GROUPS, out_features, eps=_GN_EPS)
        self.residual = residual and in_features == out_features

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """LeakyReLU then GroupNorm of a pre-activation ``y`` (..., C)."""
        shape = y.shape
        y = F.leaky_relu(y, _SLOPE)
        # GroupNorm normalises each row (one band of one item) on its own.
        return self.norm(y.reshape(-1, shape[-1])).reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.activate(self.linear(x))
        return y + x if self.residual else y


class _MLP(nn.Module):
    """Hidden layers then a final Linear, applied to the last axis."""

    def __init__(self, in_features: int, widths: Sequence[int], residual: bool) -> None:
        super().__init__()
        layers = []
        prev = in_features
        for w in widths[:-1]:
            layers.append(_HiddenLayer(prev, w, residual))
            prev = w
        self.hidden = nn.ModuleList(layers)
        self.out = nn.Linear(prev, widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


class _PermutationBlock(nn.Module):
    """Mean over partners ``j`` of an MLP of the pair ``[x_i, x_j]``, then ``[., x_i]``.

    The pairwise tensor is (B, N, N, C): fine up to hundreds of bands.
    """

    def __init__(self, in_features: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.in_features = in_features
        self.mlp = _MLP(2 * in_features, widths, residual=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, C). The first layer on [x_i, x_j] is A x_i + B x_j + c: computing A x
        # and B x per band and broadcasting avoids materialising the (N, N, 2C) pairs.
        first, rest = self.mlp.hidden[0], self.mlp.hidden[1:]
        c = self.in_features
        w, bias = first.linear.weight, first.linear.bias
        own = F.linear(x, w[:, :c], bias)  # (B, N, H): band i itself
        partner = F.linear(x, w[:, c:])  # (B, N, H): band j
        h = first.activate(own.unsqueeze(2) + partner.unsqueeze(1))  # (B, i, j, H)
        for layer in rest:
            h = layer(h)
        # The last layer is affine, so it commutes with the mean over j: apply it once.
        pooled = self.mlp.out(h.mean(dim=2))
        return torch.cat([pooled, x], dim=-1)


class SEnSeI(nn.Module):
    """The SEnSeI spectral encoder.

    Parameters
    ----------
    descriptor_size : int
        Values per band descriptor (3: normalised min, centre, max wavelength).

    Attributes
    ----------
    descriptor_block, permutation_block, combined_block : torch.nn.Module
        The three trainable blocks (see the module docstring); band multiplication has
        no parameters.
    out_channels : int
        64.

    Examples
    --------
    >>> enc = SEnSeI()
    >>> enc(torch.rand(2, 5, 16, 16), torch.rand(5, 3)).shape
    torch.Size([2, 64, 16, 16])
    """

    def __init__(self, descriptor_size: int = DESCRIPTOR_SIZE) -> None:
        super().__init__()
        self.descriptor_size = descriptor_size
        self.descriptor_block = _MLP(descriptor_size, DESCRIPTOR_WIDTHS, residual=True)
        self.permutation_block = _PermutationBlock(DESCRIPTOR_WIDTHS[-1], PERMUTATION_WIDTHS)
        self.combined_block = _MLP(PERMUTATION_WIDTHS[-1] + DESCRIPTOR_WIDTHS[-1], COMBINED_WIDTHS,
                                   residual=True)
        self.out_channels = COMBINED_WIDTHS[-1]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases, as the reference implementation."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_descriptors(self, descriptors: torch.Tensor, n_bands: int | None = None) -> torch.Tensor:
        dtype = self.descriptor_block.out.weight.dtype
        if descriptors.dtype != dtype:
            descriptors = descriptors.to(dtype)
        if descriptors.dim() == 2:
            descriptors = descriptors.unsqueeze(0)
        if descriptors.dim() != 3 or descriptors.shape[-1] != self.descriptor_size:
            raise ValueError(
                f"descriptors must have shape (N, {self.descriptor_size}) or "
                f"(B, N, {self.descriptor_size}); got {tuple(descriptors.shape)}"
            )
        if descriptors.shape[1] < 1:
            raise ValueError("at least one band is needed")
        if n_bands is not None and descriptors.shape[1] != n_bands:
            raise ValueError(
                f"images have {n_bands} bands but {descriptors.shape[1]} descriptors were "
                "given: pass one (min, centre, max) descriptor per band, in the bands' order"
            )
        return descriptors

    def encode_descriptors(self, descriptors: torch.Tensor) -> torch.Tensor:
        """One 64-vector per band, from the descriptors alone.

        Parameters
        ----------
        descriptors : torch.Tensor
            (N, 3) or (B, N, 3) normalised wavelengths.

        Returns
        -------
        torch.Tensor
            (B, N, 64), B = 1 for (N, 3) input.
        """
        d = self._check_descriptors(descriptors)
        x = self.descriptor_block(d)
        x = self.permutation_block(x)
        return self.combined_block(x)

    @staticmethod
    def band_multiplication(images: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """``mean_i v_i * (r_i + 0.5)``: (B, N, H, W) x (B or 1, N, C) -> (B, C, H, W)."""
        n = images.shape[1]
        vectors = vectors.to(images.dtype)
        # Linear in r: (V^T r) / N + 0.5 mean_i v_i, without an (N, C, H, W) product. The
        # (B, H, W, C) product, viewed as (B, C, H, W), is channels-last: the layout the
        # head's convolutions are fastest in (its first convolution's backward 2x).
        feats = torch.matmul(images.permute(0, 2, 3, 1), vectors[:, None]).permute(0, 3, 1, 2) / n
        offset = BAND_OFFSET * vectors.mean(dim=1)  # (B or 1, C)
        return feats + offset[:, :, None, None]

    def forward(self, images: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Encode images of any band set.

        Parameters
        ----------
        images : torch.Tensor
            (B, N, H, W) reflectance (thermal bands already scaled to about 0..1).
        descriptors : torch.Tensor
            (N, 3) shared by the batch, or (B, N, 3) per item.

        Returns
        -------
        torch.Tensor
            (B, 64, H, W) feature map.
        """
        if images.dim() != 4:
            raise ValueError(f"images must be (B, N, H, W); got shape {tuple(images.shape)}")
        d = self._check_descriptors(descriptors, images.shape[1])
        if d.shape[0] not in (1, images.shape[0]):
            raise ValueError(
                f"descriptors for {d.shape[0]} items but a batch of {images.shape[0]} images"
            )
        vectors = self.encode_descriptors(d)
        return self.band_multiplication(images, vectors)

    def band_vector_spread(self, descriptors: torch.Tensor) -> torch.Tensor:
        """How far the bands' vectors are from mutually orthogonal and of one length.

        For a band set the encoder is the affine map ``W r + b`` with ``W = V^T / N``
        (:meth:`affine_map`); this is the mean squared entry of ``G - I``, with ``G = V V^T``
        divided by the mean of its diagonal: 0 when ``W`` maps the bands' values onto
        orthogonal directions of equal length (condition number 1), near 1 when every band
        points the same way (the features then carry the bands' mean and little else).
        Differentiable: a training penalty (``band_vector_decorrelation``).

        Parameters
        ----------
        descriptors : torch.Tensor
            (N, 3) or (B, N, 3).

        Returns
        -------
        torch.Tensor
            Scalar, the mean over the B band sets.
        """
        v = self.encode_descriptors(self._check_descriptors(descriptors))  # (B, N, 64)
        gram = v @ v.transpose(1, 2)
        scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp(min=1e-12)
        eye = torch.eye(v.shape[1], device=v.device, dtype=v.dtype)
        return ((gram / scale[:, None, None] - eye) ** 2).mean()

    @torch.no_grad()
    def affine_map(self, descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder for a fixed band set as the affine map ``F(p) = W r(p) + b``.

        Parameters
        ----------
        descriptors : torch.Tensor
            (N, 3) or (1, N, 3).

        Returns
        -------
        W : torch.Tensor
            (64, N) float64, ``V^T / N``.
        b : torch.Tensor
            (64,) float64, ``0.5 * mean_i v_i``.
        """
        d = self._check_descriptors(descriptors)
        if d.shape[0] != 1:
            raise ValueError("one band set at a time: descriptors must be (N, 3) or (1, N, 3)")
        v = self.encode_descriptors(d)[0].double()  # (N, 64)
        n = v.shape[0]
        return v.t() / n, BAND_OFFSET * v.mean(dim=0)


class OrthonormalSEnSeI(SEnSeI):
    """SEnSeI whose band vectors are made orthonormal for every band set.

    Trained as published, the encoder's map of a band set collapses: the six reflective
    bands' map ends close to rank 2 (singular values 1 / 0.08 / 0.01 / 0.002 / ...,
    ``docs/model_findings.md``), so what the bands say beyond their brightness and one
    contrast reaches the head ~1000x weaker, and BatchNorm after the head's first
    convolution cannot bring it back. Here the vectors ``V`` (N x 64) of the paper's three
    blocks are replaced by the orthonormal matrix nearest to them, the polar factor
    ``(V V^T)^(-1/2) V``, scaled so that the map ``W = V^T / N`` has Frobenius norm 1 for
    every N: the head then sees the band values through an isometry whose orientation the
    blocks learn from the wavelengths.

    The polar factor is approached by Newton-Schulz iterations, ``X <- 1.5 X - 0.5 X X^T X``
    from ``V / ||V||_F``: differentiable without an eigendecomposition (whose gradient
    diverges when singular values meet, as they do at the goal), equivariant under band
    permutations (so the encoder stays permutation invariant), and band sets stay
    independent. Each iteration lifts a small singular value by 1.5x, so after
    :attr:`iterations` directions below ``1.5 ** -iterations`` of ``||V||_F`` stay
    partly suppressed: two bands of nearly the same wavelengths are not pushed apart
    beyond what their vectors distinguish. Same parameters as :class:`SEnSeI`: a
    pretrained SEnSeI state loads as is.

    Examples
    --------
    >>> enc = OrthonormalSEnSeI()
    >>> v = enc.encode_descriptors(torch.rand(4, 3))[0]
    >>> torch.allclose(v @ v.T, torch.eye(4) * 4, atol=1e-3)
    True
    """

    #: Newton-Schulz iterations: a singular value 3e-4 of ``||V||_F`` ends within 1e-3 of 1,
    #: one of 1e-4 at 0.96, one of 1e-5 at 0.17 (a bound on how far near-equal vectors
    #: are pushed apart).
    iterations: int = 24

    def encode_descriptors(self, descriptors: torch.Tensor) -> torch.Tensor:
        """One 64-vector per band, the N vectors orthogonal with norm ``sqrt(N)`` (as far
        as the paper's vectors tell the bands apart: see :attr:`iterations`).

        Parameters
        ----------
        descriptors : torch.Tensor
            (N, 3) or (B, N, 3) normalised wavelengths, N <= 64.

        Returns
        -------
        torch.Tensor
            (B, N, 64), B = 1 for (N, 3) input.
        """
        d = self._check_descriptors(descriptors)
        # The blocks and the iteration in the weights' precision even under autocast: the
        # iteration lifts directions down to 3e-4 of ||V||_F, so half-precision rounding
        # of V (~1e-3) would become features.
        with torch.autocast(device_type=d.device.type, enabled=False):
            v = super().encode_descriptors(d)
            return self.polar_factor(v, self.iterations) * v.shape[1] ** 0.5

    @staticmethod
    def polar_factor(v: torch.Tensor, iterations: int) -> torch.Tensor:
        """``(V V^T)^(-1/2) V`` of each (N, C) matrix of ``v`` (B, N, C), N <= C, by
        Newton-Schulz iterations from ``V / ||V||_F``; directions of singular value below
        about ``1.5 ** -iterations`` of ``||V||_F`` come out shorter than 1."""
        n, c = v.shape[1], v.shape[2]
        if n > c:
            raise ValueError(f"{n} bands cannot have orthogonal vectors in {c} dimensions; pass at most {c} bands")
        x = v / v.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]
        for _ in range(iterations):
            x = 1.5 * x - 0.5 * (x @ x.transpose(1, 2)) @ x
        return x
