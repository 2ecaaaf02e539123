import json
import zipfile

import cv2
import numpy as np
import pytest
from tiny_detection import SIZE, TINY_ENCODER, scene_generator, teach_from_scenes, tiny_encoder

from dinov2_ros.export.core_export import export_graph
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.perception.prototypes import (
    PrototypeFileError,
    PrototypeStore,
    condense,
    coverage_from_box,
    teach_from_folder,
)
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.graph_spec import GraphSpec, ResizeMapping
from dinov2_ros.tools.training.detector_dataset import PatchFeatureExtractor
from dinov2_ros.weights.identity import encoder_name

DIM = 8


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def small_store() -> PrototypeStore:
    rng = np.random.default_rng(0)
    store = PrototypeStore("vits14:pretrained", (448, 448), DIM, max_per_class=3)
    store.add_prototypes("bolt", unit(rng, 2))
    store.add_prototypes("nut", unit(rng, 3))
    return store


def test_a_saved_store_loads_back_identically(tmp_path):
    store = small_store()
    loaded = PrototypeStore.load(store.save(tmp_path / "parts.npz"), encoder="vits14:pretrained", input_size=(448, 448))
    assert loaded.class_ids == {"bolt": 0, "nut": 1}
    for expected, actual in zip(store.to_arrays(8, 4), loaded.to_arrays(8, 4), strict=True):
        np.testing.assert_array_equal(expected, actual)
    assert not list(tmp_path.glob("*.partial")), "the write is atomic"


def _rewrite_metadata(path, **changes):
    with np.load(path) as data:
        arrays = dict(data)
    metadata = json.loads(str(arrays["metadata"]))
    arrays["metadata"] = np.array(json.dumps(metadata | changes))
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("load_kwargs", "metadata", "message"),
    [
        ({}, {"version": 2}, "format version 2, this dinov2_ros reads version 1; teach the parts again"),
        ({"encoder": "vitb14:pretrained"}, {}, "taught with encoder 'vits14:pretrained', but the graph runs 'vitb14"),
        ({"input_size": (224, 224)}, {}, r"taught at input size \(448, 448\).*uses \(224, 224\)"),
        ({}, {"format": "something.else"}, "is not a prototype file"),
    ],
)
def test_files_of_another_version_encoder_or_size_are_refused(tmp_path, load_kwargs, metadata, message):
    path = small_store().save(tmp_path / "parts.npz")
    if metadata:
        _rewrite_metadata(path, **metadata)
    with pytest.raises(PrototypeFileError, match=message):
        PrototypeStore.load(path, **load_kwargs)


def test_unreadable_files_are_refused(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(PrototypeFileError, match="cannot read prototype file"):
        PrototypeStore.load(tmp_path / "broken.npz")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as archive:
        archive.writestr("weights.npy", b"")
    with pytest.raises(PrototypeFileError, match="cannot read prototype file"):
        PrototypeStore.load(tmp_path / "other.npz")


def test_class_ids_stay_stable_when_classes_come_and_go():
    store = small_store()
    store.remove_class("bolt")
    assert store.add_prototypes("washer", unit(np.random.default_rng(1), 1)) == 0  # the freed id
    assert store.add_prototypes("spring", unit(np.random.default_rng(2), 1)) == 2
    assert store.class_ids == {"nut": 1, "washer": 0, "spring": 2}
    prototypes, classes = store.to_arrays(max_prototypes=8, max_classes=4)
    assert prototypes.shape == (8, DIM) and classes.dtype == np.int32
    assert sorted(classes.tolist()) == [-1, -1, -1, 0, 1, 1, 1, 2]
    np.testing.assert_array_equal(prototypes[classes == -1], 0)
    with pytest.raises(ValueError, match="no class 'bolt' to remove"):
        store.remove_class("bolt")


def test_graph_limits_are_reported_with_the_fix():
    store = small_store()
    with pytest.raises(ValueError, match="5 prototypes do not fit the graph's 4 slots"):
        store.to_arrays(max_prototypes=4, max_classes=4)
    with pytest.raises(ValueError, match="class id 1 exceeds the head's 1 classes"):
        store.to_arrays(max_prototypes=8, max_classes=1)
    with pytest.raises(ValueError, match=r"prototypes must be \(n >= 1, 8\)"):
        store.add_prototypes("bolt", np.ones((1, 5)))


def test_more_examples_than_slots_are_condensed_to_cluster_centres():
    rng = np.random.default_rng(3)
    centres = unit(rng, 2)
    noisy = np.repeat(centres, 10, axis=0) + 0.01 * rng.standard_normal((20, DIM)).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    condensed = condense(noisy, 2)
    assert condensed.shape == (2, DIM)
    assert np.sort((condensed @ centres.T).max(axis=0)).min() > 0.999


def test_box_coverage_is_exact_per_patch():
    mapping = ResizeMapping(0.5, 0.5, 0, 0, 28, 28)  # a 56x56 camera image into a 28x28 input (2x2 patches)
    coverage = coverage_from_box([7, 0, 42, 28], mapping, (2, 2))  # input box x 3.5..21, y 0..14
    np.testing.assert_allclose(coverage, [[0.75, 0.5], [0.0, 0.0]])


def test_encoder_names_match_between_teaching_and_the_node():
    assert encoder_name("vits14", "pretrained") == "vits14:pretrained"
    assert encoder_name("vits14", "random") == "vits14:random"  # the one seeded random network
    assert encoder_name("vitb14_reg4", "/weights/my_finetune.pth") == "vitb14_reg4:my_finetune"


@pytest.fixture(scope="module")
def extractor():
    return PatchFeatureExtractor(tiny_encoder(), (SIZE, SIZE))


def test_teaching_from_a_folder_uses_masks_boxes_or_the_whole_image(tmp_path, extractor):
    generator = scene_generator()
    scene = generator.render(0)
    for i, (box, mask, class_id) in enumerate(zip(scene.boxes, scene.masks, scene.class_ids, strict=True)):
        folder = tmp_path / generator.class_names[class_id]
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"scene{i}.png"), cv2.cvtColor(scene.image_rgb, cv2.COLOR_RGB2BGR))
        if i % 2:
            (folder / f"scene{i}.box.txt").write_text(" ".join(str(int(v)) for v in box))
        else:
            cv2.imwrite(str(folder / f"scene{i}.mask.png"), mask.astype(np.uint8) * 255)
        x1, y1, x2, y2 = box.astype(int)
        crop = cv2.resize(scene.image_rgb[y1:y2, x1:x2], (56, 56))  # a tight crop: no annotation needed
        cv2.imwrite(str(folder / f"crop{i}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    store = PrototypeStore(TINY_ENCODER, (SIZE, SIZE), extractor.embed_dim)
    counts = teach_from_folder(tmp_path, extractor, store)
    taught = {generator.class_names[c] for c in scene.class_ids}
    assert set(counts) == taught and all(count >= 2 for count in counts.values())
    # every part of the scene is closest to its own class's prototypes
    prototypes, classes = store.to_arrays(16, 8)
    features = extractor([scene.image_rgb])[0]
    tokens = features.reshape(features.shape[0], -1)
    tokens = tokens / np.linalg.norm(tokens, axis=0)
    for mask, class_id in zip(scene.masks, scene.class_ids, strict=True):
        centre = np.unravel_index(np.argmax(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)), mask.shape)
        cell = (centre[0] // 14) * extractor.grid[1] + centre[1] // 14
        best = classes[np.argmax(prototypes @ tokens[:, cell] - 10 * (classes < 0))]
        assert best == store.class_ids[generator.class_names[class_id]]


def test_a_folder_without_class_sub_folders_is_refused(tmp_path, extractor):
    with pytest.raises(ValueError, match="needs one sub-folder per class"):
        teach_from_folder(tmp_path, extractor, PrototypeStore(TINY_ENCODER, (SIZE, SIZE), 64))


@pytest.mark.export
def test_classes_are_added_and_removed_while_the_exported_graph_runs(tmp_path, extractor):
    """The same ONNX Runtime session serves every class set: prototypes are graph inputs."""
    generator = scene_generator()
    spec = GraphSpec(
        "tiny", SIZE, SIZE, SIZE, SIZE, heads=("exemplar",), top_k=10, max_prototypes=24, max_classes=4, embed_dim=64
    )
    head = ExemplarHead(max_classes=4, top_k=10, similarity_threshold=0.7)
    backend = OnnxRuntimeBackend(
        export_graph(PerceptionGraph(spec, tiny_encoder(), None, head), tmp_path / "g.onnx"), spec
    )
    taught = teach_from_scenes(extractor, generator, range(8))
    block, puck = (generator.class_names.index(name) for name in ("block", "puck"))
    index = next(i for i in range(100, 300) if {block, puck} <= set(generator.render(i).class_ids.tolist()))
    image = generator.render(index).image_rgb[None]

    def detected(store: PrototypeStore) -> set[int]:
        prototypes, classes = store.to_arrays(spec.max_prototypes, head.max_classes)
        rows = backend.infer({"images": image, "prototypes": prototypes, "prototype_classes": classes})["detections"][0]
        return {int(c) for c in rows[rows[:, 4] > 0.5, 5]}

    store = PrototypeStore(TINY_ENCODER, (SIZE, SIZE), 64)
    assert detected(store) == set()  # nothing taught: every row empty
    store.add_prototypes("block", taught.prototypes_of("block"))
    assert detected(store) == {store.class_ids["block"]}
    store.add_prototypes("puck", taught.prototypes_of("puck"))
    assert detected(store) == {store.class_ids["block"], store.class_ids["puck"]}
    store.remove_class("block")
    assert detected(store) == {store.class_ids["puck"]}


def test_teaching_the_same_prototype_again_adds_no_slot() -> None:
    store = PrototypeStore("vits14:random", (56, 56), 4)
    vector = np.array([[1.0, 2.0, 0.0, 0.0]], np.float32)
    assert store.add_prototypes("bolt", vector, "hex bolt") == store.add_prototypes("bolt", 3 * vector, "hex bolt")
    assert store.prototype_count == 1 and store.prompts_of("bolt") == ["hex bolt"]
    store.add_prototypes("bolt", np.array([[1.0, 2.0, 0.1, 0.0]], np.float32))
    assert store.prototype_count == 2
