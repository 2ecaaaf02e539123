"""Meta's released DINOv2 files without torch: the variant table, the weights cache and download, and
the content identity of checkpoint files. The robot process, the build tools and the model share it."""
