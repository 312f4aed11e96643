"""Writing a trained model for other runtimes: ONNX with its metadata, int8 quantisation, the model card.

The package is callable: ``affectlab.export(run, ...)`` is ``affectlab.export.onnx.export_model`` (see
``affectlab.verbs``).
"""

from affectlab.verbs import callable_package

callable_package(__name__, "affectlab.export.onnx:export_model")
