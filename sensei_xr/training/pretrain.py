"""Self-supervised pre-training of SEnSeI on random band sets (paper section III-B).

SEnSeI is trained as the encoder of a spectral autoencoder. Each example is a random
sensor: 3 to 14 bands with central wavelengths from 400 nm to 20 um and realistic widths,
observing random pixels. From SEnSeI's 64 features of a pixel, two heads look at twice as
many candidate band descriptors as went in (the input bands plus as many decoys):

* the **discriminator** says which candidates were in the input,
* the **estimator** recovers each candidate's value (reflectance, or scaled brightness
  temperature for thermal bands),

both with a mean squared error, as in the paper. Because every pixel's spectrum is defined
at all wavelengths, decoys have values too, so the estimator learns spectral
interpolation, not just copying.

Pixel spectra come from the EarthLib surface library in the sample data (soils, vegetation,
urban, burn; 350-2500 nm) mixed with generated snow, water and cloud spectra
(:func:`sensei_xr.training.synthetic.cloud_reflectance`'s priors), and a brightness
temperature for thermal bands. Torch and NumPy only.
"""

from __future__ import annotations

import time
from os import PathLike
from pathlib import Path

import numpy as np

from ..bands import BT_95_K, BT_MIN_K, THERMAL_FROM_NM, BandDescriptors, normalise_wavelengths
from .synthetic import cloud_reflectance

__all__ = ["SpectrumSampler", "random_band_set", "pretrain_encoder", "PRETRAIN_DEFAULTS"]

PRETRAIN_DEFAULTS = {
    "steps": 3000,
    "band_sets": 32,  # random sensors per step
    "pixels": 64,  # pixels per sensor
    "min_bands": 3,
    "max_bands": 14,
    "lr": 1e-3,
    "seed": 0,
    "device": "auto",
    "log_every": 100,
}


def random_band_set(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) random (min, centre, max) wavelengths in nm, like real sensors' bands.

    80 % of bands fall uniformly in 400-2500 nm with widths of 1-12 % of the centre, 20 %
    log-uniformly in 3.5-19 um (thermal) with widths of 0.3-1.5 um.
    """
    thermal = rng.random(n) < 0.2
    centre = np.where(thermal, np.exp(rng.uniform(np.log(THERMAL_FROM_NM), np.log(19000.0), n)),
                      rng.uniform(400.0, 2500.0, n))
    width = np.where(thermal, rng.uniform(300.0, 1500.0, n), centre * rng.uniform(0.01, 0.12, n))
    lo = np.maximum(centre - width / 2, 305.0)
    hi = np.minimum(centre + width / 2, 19990.0)
    return np.stack([lo, centre, hi], axis=1)


class SpectrumSampler:
    """Random pixel spectra evaluated in any band set, in model-input units.

    Parameters
    ----------
    library_path : path-like
        ``earthlib_surfaces_10nm.npz`` (reflectance on a 10 nm grid, 350-2500 nm).
    """

    def __init__(self, library_path: str | PathLike):
        data = np.load(Path(library_path))
        refl = data["reflectance"].astype(np.float64)
        wl = data["wavelength_nm"].astype(np.float64)
        # Simulated vegetation is NaN below 400 nm; a few spectra are in percent / spiky.
        keep = np.isfinite(refl[:, wl >= 400]).all(axis=1) & (np.nanmax(refl, axis=1) <= 1.5)
        refl = refl[keep]
        refl[~np.isfinite(refl)] = 0.0
        self.wavelength_nm = wl
        self.library = np.clip(refl, 0.0, 1.0)
        self._build_banks(np.random.default_rng(0))

    def sample(self, rng: np.random.Generator, n_pixels: int, wavelengths_nm: np.ndarray) -> np.ndarray:
        """(n_pixels, N) values of random pixels in the bands ``wavelengths_nm`` (N, 3) nm.

        Reflective bands: reflectance averaged over the band. Thermal bands: brightness
        temperature scaled as the model takes it, ``(BT - 190 K) / 110 K``.
        """
        grid = self._spectra(rng, n_pixels)  # (P, G) on self.wavelength_nm
        wl = self.wavelength_nm
        out = np.empty((n_pixels, len(wavelengths_nm)), np.float32)
        bt = rng.uniform(200.0, 320.0, n_pixels)
        for j, (lo, centre, hi) in enumerate(wavelengths_nm):
            if centre >= THERMAL_FROM_NM:
                # Emissivity differences between thermal bands: a few kelvin.
                t = bt + rng.normal(0.0, 1.5, n_pixels)
                out[:, j] = (t - BT_MIN_K) / (BT_95_K - BT_MIN_K)
            elif lo >= wl[-1]:
                # 2.5-3 um: no library data; reflectance keeps falling off.
                out[:, j] = 0.7 * grid[:, -1]
            else:
                inside = (wl >= lo) & (wl <= hi)
                if inside.any():
                    out[:, j] = grid[:, inside].mean(axis=1)
                else:  # narrower than the 10 nm grid: linear interpolation at the centre
                    i = int(np.clip(np.searchsorted(wl, centre), 1, len(wl) - 1))
                    f = (centre - wl[i - 1]) / (wl[i] - wl[i - 1])
                    out[:, j] = (1 - f) * grid[:, i - 1] + f * grid[:, i]
        return out

    def _spectra(self, rng: np.random.Generator, n: int) -> np.ndarray:
        kind = rng.choice(4, size=n, p=[0.6, 0.2, 0.1, 0.1])  # surface mix, cloud, snow, water
        # Linear mixtures of 1-3 library surfaces, scaled a little (illumination).
        idx = rng.integers(len(self.library), size=(n, 3))
        w = rng.dirichlet([1.0, 1.0, 1.0], size=n) * (rng.random((n, 3)) < [1.0, 0.5, 0.3])
        w /= w.sum(axis=1, keepdims=True)
        out = np.einsum("pk,pkg->pg", w, self.library[idx]) * rng.uniform(0.7, 1.3, (n, 1))
        for k, bank in ((1, self._clouds), (2, self._snow), (3, self._water)):
            rows = np.flatnonzero(kind == k)
            picked = bank[rng.integers(len(bank), size=len(rows))]
            if k == 1:  # partly transparent clouds over the surface too
                a = rng.uniform(0.3, 1.0, (len(rows), 1))
                picked = a * picked + (1 - a) * out[rows]
            out[rows] = picked
        return np.clip(out + rng.normal(0, 0.005, out.shape), 0.0, 1.5)

    def _build_banks(self, rng: np.random.Generator, n: int = 512) -> None:
        """Generated cloud, snow and water spectra on the library grid."""
        wl = self.wavelength_nm
        grid = BandDescriptors(tuple(f"g{i}" for i in range(len(wl))),
                               np.stack([wl - 5, wl, wl + 5], axis=1), ("reflective",) * len(wl))
        self._clouds = np.stack([cloud_reflectance(grid, rng, high=bool(rng.random() < 0.3),
                                                   brightness=rng.uniform(0.3, 0.9)) for _ in range(n)])
        self._snow = np.stack([np.interp(wl, [400, 800, 1000, 1300, 1500, 1650, 1900, 2200, 2500],
                                         np.array([1.0, 0.95, 0.75, 0.45, 0.08, 0.12, 0.03, 0.06, 0.02])
                                         * rng.uniform(0.6, 0.98)) for _ in range(n)])
        self._water = np.stack([np.interp(wl, [400, 550, 700, 900, 2500],
                                          [rng.uniform(0.04, 0.12), rng.uniform(0.03, 0.1),
                                           rng.uniform(0.01, 0.06), rng.uniform(0.0, 0.03), 0.0])
                                for _ in range(n)])


def _autoencoder(encoder):
    import torch
    from torch import nn

    class SpectralAutoencoder(nn.Module):
        """SEnSeI + a discriminator and an estimator over candidate descriptors."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            features = 64
            self.candidate = nn.Sequential(nn.Linear(3, 64), nn.LeakyReLU(0.01), nn.Linear(64, 64))
            self.head = nn.Sequential(nn.Linear(features + 64, 128), nn.LeakyReLU(0.01),
                                      nn.Linear(128, 64), nn.LeakyReLU(0.01), nn.Linear(64, 2))

        def forward(self, images, descriptors, candidates):
            feats = self.encoder(images, descriptors)[..., 0]  # (B, 64, P)
            cand = self.candidate(candidates)  # (B, M, 64)
            b, c, p = feats.shape
            m = cand.shape[1]
            joint = torch.cat([feats.permute(0, 2, 1)[:, None].expand(b, m, p, c),
                               cand[:, :, None].expand(b, m, p, cand.shape[-1])], dim=-1)
            out = self.head(joint)  # (B, M, P, 2)
            return torch.sigmoid(out[..., 0]), out[..., 1]

    return SpectralAutoencoder(encoder)


def pretrain_encoder(library_path: str | PathLike, out: str | PathLike | None = None,
                     config: dict | None = None, log=print):
    """Pre-train a SEnSeI encoder as a spectral autoencoder.

    Parameters
    ----------
    library_path : path-like
        The EarthLib ``earthlib_surfaces_10nm.npz``.
    out : path-like, optional
        Where to save the encoder's weights (safetensors, SEnSeI keys only), for
        ``init_encoder`` in a training config.
    config : dict, optional
        Overrides of :data:`PRETRAIN_DEFAULTS`.

    Returns
    -------
    (SEnSeI, list of dict)
        The encoder (on CPU) and the loss history.
    """
    import torch

    from ..models import SEnSeI

    cfg = {**PRETRAIN_DEFAULTS, **(config or {})}
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg["device"] == "auto" else cfg["device"]
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    spectra = SpectrumSampler(library_path)
    model = _autoencoder(SEnSeI()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=1e-4)
    history, running, t0 = [], [], time.time()
    for step in range(cfg["steps"]):
        lr = cfg["lr"] * 0.5 * (1 + np.cos(np.pi * step / cfg["steps"]))
        for g in opt.param_groups:
            g["lr"] = lr
        n = int(rng.integers(cfg["min_bands"], cfg["max_bands"] + 1))
        bsz, pix = cfg["band_sets"], cfg["pixels"]
        bands = np.stack([random_band_set(rng, 2 * n) for _ in range(bsz)])  # (B, 2n, 3)
        values = np.stack([spectra.sample(rng, pix, b) for b in bands])  # (B, P, 2n)
        present = np.zeros((bsz, 2 * n), np.float32)
        order = np.argsort(rng.random((bsz, 2 * n)), axis=1)
        present[np.arange(bsz)[:, None], order[:, :n]] = 1.0
        inputs = order[:, :n]
        images = np.take_along_axis(values, inputs[:, None, :], axis=2).transpose(0, 2, 1)[..., None]
        desc = normalise_wavelengths(np.take_along_axis(bands, inputs[:, :, None], axis=1))
        cand = normalise_wavelengths(bands)
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
        prob, estimate = model(t(images), t(desc), t(cand))
        target_present = t(present)[:, :, None].expand_as(prob)
        loss_disc = torch.mean((prob - target_present) ** 2)
        loss_est = torch.mean((estimate - t(values.transpose(0, 2, 1))) ** 2)
        loss = loss_disc + loss_est
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append((loss_disc.item(), loss_est.item()))
        if (step + 1) % cfg["log_every"] == 0 or step + 1 == cfg["steps"]:
            d, e = np.mean(running, axis=0)
            running = []
            history.append({"step": step + 1, "discriminator_mse": float(d), "estimator_mse": float(e),
                            "seconds": time.time() - t0})
            log(f"pretrain step {step + 1}: discriminator MSE {d:.4f} estimator MSE {e:.5f}")
    encoder = model.encoder.cpu()
    if out is not None:
        import os

        from safetensors.torch import save_file

        out = Path(out)
        tmp = out.with_name(f".{out.name}.partial")
        save_file({k: v.detach().contiguous() for k, v in encoder.state_dict().items()}, tmp,
                  metadata={"what": "SEnSeI encoder pre-trained as a spectral autoencoder",
                            "config": str(cfg)})
        os.replace(tmp, out)
    return encoder, history
