"""Ready-made ONNX model folders -> columnist model directories, without torch.

The layouts columnist recognises (their files as published on Hugging Face) are modules of
this package, listed in ``registry.LAYOUTS``: Immich's (``immich``) and transformers.js's
(``transformers_js``). ``convert`` turns a recognised folder into a model directory and
``check`` runs a model's towers before it is trusted.
"""

from columnist.models.layouts.convert import check, convert
from columnist.models.layouts.files import LayoutError
from columnist.models.layouts.registry import LAYOUTS, recognise

__all__ = ["LAYOUTS", "LayoutError", "check", "convert", "recognise"]
