"""The detectors users run: the Keras model and the exported .tflite, one interface
(`facedet.runtime.detector_protocol.Detector`), and running any of them over a folder of photos."""
