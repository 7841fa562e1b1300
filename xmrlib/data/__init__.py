"""Data: the Shapes generator, the precomp reader and caption loaders (see CONTRIBUTING.md)."""

from xmrlib.data.loaders import (CaptionDataset, CaptionLoader, caption_batches, image_batches,
                                 make_loader)
from xmrlib.data.precomp import (SEMANTICS_FORMAT, DataError, PrecompData, first_images,
                                 get_dataset, load_precomp)
from xmrlib.data.shapes import COLOURS, caption_is_true, caption_truth, make_shapes

__all__ = ["SEMANTICS_FORMAT", "COLOURS", "CaptionDataset", "CaptionLoader", "DataError", "PrecompData",
           "caption_batches", "caption_is_true", "caption_truth", "first_images", "get_dataset",
           "image_batches", "load_precomp", "make_loader", "make_shapes"]
