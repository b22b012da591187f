"""Export of a trained MoViNet: SavedModel and TFLite, official signatures.

`saved_model.export` writes a SavedModel whose signatures are the official
ones (the official notebooks' inference code runs on it unchanged); `tflite`
converts the stream model to run one frame per call, and the base model on
a fixed number of frames, with TFLite's builtin ops only.
"""
