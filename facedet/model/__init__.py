"""The SSD face detector: box conventions, anchors, the Keras network, its losses."""
