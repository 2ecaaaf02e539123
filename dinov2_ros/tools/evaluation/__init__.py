"""Evaluation against ground truth: COCO detection metrics, MOT tracking metrics."""
