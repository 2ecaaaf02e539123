"""Teach-by-example end to end: prototypes from a few scenes, detection in held-out scenes."""

import numpy as np
import torch
from tiny_detection import SIZE, count_matches, scene_generator, teach_from_scenes, tiny_encoder

from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.tools.training.detector_dataset import PatchFeatureExtractor

# The random encoder's tokens give a part's own class a cosine of 0.70..0.95 and other classes and the
# table at most ~0.5 inside parts and ~0.64 on patches half covering a part: 0.7 separates them (with
# pretrained DINOv2 the head's default, 0.5, is the usual operating point).
SIMILARITY_THRESHOLD = 0.7
SCORE_THRESHOLD = 0.5
# Stated bar: at score >= 0.5 and IoU >= 0.5 with the right class, recall >= 0.8 at precision >= 0.8
# over 40 held-out scenes (77 parts). Measured: recall 0.91, precision 0.90; the margin absorbs numeric
# differences between torch builds. Boxes lie on the 14 px patch grid, which costs IoU on 45..78 px
# parts: the misses are mostly parts whose box loses a row or column of patches.
MIN_RECALL = 0.8
MIN_PRECISION = 0.8


def test_taught_parts_are_found_in_held_out_scenes():
    generator = scene_generator()
    extractor = PatchFeatureExtractor(tiny_encoder(), (SIZE, SIZE))
    store = teach_from_scenes(extractor, generator, range(8))  # 8 scenes: 2..5 examples per class
    assert set(store.class_ids) == set(generator.class_names)
    head = ExemplarHead(max_classes=8, top_k=20, similarity_threshold=SIMILARITY_THRESHOLD)
    prototypes, classes = (torch.from_numpy(a)[None] for a in store.to_arrays(max_prototypes=32, max_classes=8))
    name_of = {class_id: name for name, class_id in store.class_ids.items()}
    matched = detected = parts = 0
    for index in range(1000, 1040):
        scene = generator.render(index)
        with torch.inference_mode():
            boxes, scores, class_ids, _ = head(torch.from_numpy(extractor([scene.image_rgb])), prototypes, classes)
        keep = scores[0] >= SCORE_THRESHOLD
        labels = np.array([generator.class_names.index(name_of[int(c)]) for c in class_ids[0][keep]])
        matched += count_matches(boxes[0][keep].numpy(), labels, scene.boxes, scene.class_ids)
        detected += int(keep.sum())
        parts += len(scene.boxes)
    recall, precision = matched / parts, matched / detected
    assert recall >= MIN_RECALL and precision >= MIN_PRECISION, f"recall {recall:.2f}, precision {precision:.2f}"
