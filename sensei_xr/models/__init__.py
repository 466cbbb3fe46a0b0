"""Networks: the SEnSeI spectral encoder, segmentation heads, folding, weights I/O.

Import needs only torch, numpy and safetensors (no xarray, dask or rasterio), so the
model core can run anywhere torch does.

* :class:`SEnSeI` - any band set -> 64-channel feature map.
* :class:`DeepLabV3Plus` (the paper's), :class:`DeepLabV3PlusWide`, :class:`DeepLabV3PlusPixel`, :class:`PixelNet` -
  segmentation heads.
* :class:`PixelMember` - a per-pixel MLP on six fixed regions a model may carry, mixed
  with the network's cloud probability by the engine.
* :class:`CloudModel`, :func:`build_model` - encoder + head from a plain config;
  :meth:`CloudModel.for_bands` folds SEnSeI away for one band set
  (:class:`FoldedCloudModel`).
* :class:`CloudEnsemble` - the mean probability of several SEnSeI models, folded,
  saved and run like one model.
* :func:`save_model`, :func:`load_model`, :func:`list_models` - safetensors + JSON card.
* :func:`export_onnx` - ONNX export of a folded model.
"""

from .cloud_model import CloudModel, FoldedCloudModel, build_model, cloud_class_indices
from .ensemble import CloudEnsemble, FoldedEnsemble
from .deeplab import DeepLabV3Plus, DeepLabV3PlusPixel, DeepLabV3PlusWide
from .export import export_onnx
from .pixel_member import PixelMember
from .pixelnet import PixelNet
from .sensei import OrthonormalSEnSeI, SEnSeI
from .weights import WeightsError, list_models, load_model, save_model

__all__ = [
    "SEnSeI",
    "OrthonormalSEnSeI",
    "DeepLabV3Plus",
    "DeepLabV3PlusPixel",
    "DeepLabV3PlusWide",
    "PixelNet",
    "PixelMember",
    "CloudModel",
    "FoldedCloudModel",
    "CloudEnsemble",
    "FoldedEnsemble",
    "build_model",
    "cloud_class_indices",
    "save_model",
    "load_model",
    "list_models",
    "WeightsError",
    "export_onnx",
]
