"""Tools around the product, never imported by the robot process: synthetic scenes and camera, the demo,
training and evaluation, latency statistics."""
