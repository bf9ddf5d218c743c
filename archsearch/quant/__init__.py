"""Post-training quantization of a trained network, measured as it would be deployed (Q-HyViT's problem).

``layers`` says where a network is quantized (every conv and linear, BatchNorm folded) and ``qparams`` how one
tensor is; ``methods`` holds the torch methods (``minmax``, ``hybrid``) and ``ort_static`` ONNX Runtime's own;
``onnx_int8`` writes and runs the real int8 model; ``cpu`` says what this CPU's int8 kernels can hold;
``evaluate`` scores every method and bit width on the validation set (``archsearch quantize``).
"""
