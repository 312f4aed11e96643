"""Writing a trained model for other runtimes: ONNX with its metadata, int8 quantisation, the model card."""
