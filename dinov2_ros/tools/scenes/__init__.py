"""Synthetic scenes with ground truth: the picking table and the conveyor."""
