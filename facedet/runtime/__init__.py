"""The detectors users run: the Keras model and the exported .tflite, one interface."""
