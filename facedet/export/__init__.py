"""Export: the int8 / float TFLite files and their metadata."""
