"""Training the detection head on frozen features, and teaching classes from example folders."""
