"""The heads on the DINOv2 encoder: metric depth (Meta's linear heads), the exemplar and the centre detector."""
