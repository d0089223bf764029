"""The model card: what the shipped face detector is (card), where it came from (lineage), as Markdown (render)."""
