import math

import pytest

from dinov2_ros.tools.evaluation.coco_evaluation import evaluate_detections

TRUTH = {
    "images": [{"id": 1, "width": 300, "height": 300}],
    "categories": [{"id": 1, "name": "block"}, {"id": 2, "name": "puck"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [150, 150, 100, 100]},
    ],
}


def test_map_of_a_hand_checkable_case():
    # One exact box (IoU 1.0, score 0.9) and one at IoU 0.68 (score 0.8). At IoU thresholds .50-.65 both
    # match: AP 1. At .70-.95 only the first: precision 1 up to recall 0.5, so 51 of the 101 recall
    # points: AP 51/101. mAP@[.5:.95] = (4 * 1 + 6 * 51/101) / 10; mAP@.5 = 1. Puck has no truth: NaN.
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [150, 150, 100, 68], "score": 0.8},
    ]
    metrics = evaluate_detections(TRUTH, detections)
    assert metrics.map_50 == pytest.approx(1.0)
    assert metrics.map_50_95 == pytest.approx((4 + 6 * 51 / 101) / 10)
    assert metrics.per_class_ap["block"] == pytest.approx(metrics.map_50_95)
    assert math.isnan(metrics.per_class_ap["puck"])


def test_a_wrong_class_and_a_false_positive_lower_precision():
    # the only block detection is below a higher-scored false positive: precision 1/2 from recall 0 to 0.5
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [200, 0, 50, 50], "score": 0.95},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [150, 150, 100, 100], "score": 0.9},
    ]
    assert evaluate_detections(TRUTH, detections).map_50 == pytest.approx(51 * 0.5 / 101)


def test_no_detections_score_zero():
    assert evaluate_detections(TRUTH, []).map_50_95 == 0.0


def test_unknown_images_and_empty_truth_are_refused():
    with pytest.raises(ValueError, match=r"image ids \[7\] that the ground truth lacks"):
        evaluate_detections(TRUTH, [{"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(ValueError, match="no annotations, so mAP is undefined"):
        evaluate_detections({**TRUTH, "annotations": []}, [])
