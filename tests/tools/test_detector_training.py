"""Training the lightweight head on cached features of synthetic scenes, and the CLI around it."""

import argparse
import json
import logging
import subprocess
import sys

import pytest
from tiny_detection import SIZE, TINY_ENCODER, scene_generator, tiny_encoder

from dinov2_ros.cli import detector as detector_cli
from dinov2_ros.cli import teach as teach_cli
from dinov2_ros.model.heads.center import load_center_head
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator, write_coco_dataset
from dinov2_ros.tools.training.detector_dataset import PatchFeatureExtractor, cached_features, load_coco
from dinov2_ros.tools.training.detector_training import TrainingConfig, evaluate_head, train_center_head

# Stated bar: held-out mAP@.5 >= 0.7 after 12 epochs on 96 scenes (~190 parts). The parts differ by
# colour and texture, which even a random encoder's tokens keep, and the head's 5x5-patch receptive
# field covers a whole part, so the task is learnable; measured 0.948 at the last epoch (0.98 after
# 30 epochs on 160 scenes). 0.7 leaves room for numeric differences between torch builds while still failing a head
# that only finds centres (boxes of the wrong size score ~0 at IoU 0.5) or confuses classes.
MIN_MAP_50 = 0.7
CONFIG = TrainingConfig(epochs=12, batch_size=16, hidden_dim=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("detector")
    generator = scene_generator()
    train = load_coco(write_coco_dataset(generator, range(96), root / "train"))
    validation = load_coco(write_coco_dataset(generator, range(1000, 1032), root / "val"))
    result = train_center_head(
        train,
        validation,
        tiny_encoder(),
        TINY_ENCODER,
        TINY_ENCODER,
        (SIZE, SIZE),
        root / "out",
        root / "cache",
        CONFIG,
    )
    return root, validation, result


@pytest.mark.slow  # shares the ~25 s training run
def test_training_converges_and_detects_held_out_parts(trained):
    _, _, result = trained
    history = result.history
    assert len(history) == CONFIG.epochs
    assert history[-1]["loss"] < history[0]["loss"] / 3
    assert history[-1]["map_50"] >= MIN_MAP_50, f"held-out mAP@.5 {history[-1]['map_50']:.3f}"
    assert history[-1]["map_50_95"] > 0.3  # measured 0.45


@pytest.mark.slow  # shares the ~25 s training run
def test_checkpoints_history_and_plot_are_written(trained):
    root, validation, result = trained
    head, info = load_center_head(
        result.best_checkpoint, expected_encoder=TINY_ENCODER, expected_input_size=(SIZE, SIZE)
    )
    assert info.class_names == validation.class_names and info.resize == "stretch"
    # the best checkpoint reproduces its epoch's validation mAP
    extractor = PatchFeatureExtractor(tiny_encoder(), (SIZE, SIZE))
    features = cached_features(validation, extractor, root / "cache", TINY_ENCODER)
    best_epoch = max(result.history, key=lambda entry: entry["map_50_95"])
    assert evaluate_head(head, features, validation, extractor).map_50_95 == pytest.approx(best_epoch["map_50_95"])
    assert result.last_checkpoint.is_file()
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((root / "out" / "history.json").read_text())
    assert [entry["epoch"] for entry in saved["history"]] == list(range(1, CONFIG.epochs + 1))


@pytest.mark.slow  # shares the ~25 s training run
def test_cached_features_are_reused_not_recomputed(trained, caplog):
    root, validation, _ = trained
    files = sorted((root / "cache").glob("features-*.npy"))
    assert len(files) == 2  # training and validation images
    modified = [path.stat().st_mtime_ns for path in files]
    with caplog.at_level(logging.INFO):
        features = cached_features(
            validation, PatchFeatureExtractor(tiny_encoder(), (SIZE, SIZE)), root / "cache", TINY_ENCODER
        )
    assert "using cached features" in caplog.text and "encoding images" not in caplog.text
    assert features.shape == (len(validation.images), 64, SIZE // 14, SIZE // 14)
    assert [path.stat().st_mtime_ns for path in files] == modified
    # other weights are another cache entry
    other = cached_features(
        validation, PatchFeatureExtractor(tiny_encoder(), (SIZE, SIZE)), root / "cache", "tiny:other"
    )
    assert len(sorted((root / "cache").glob("features-*.npy"))) == 3 and other.shape == features.shape


def test_validation_data_with_other_classes_is_refused(tmp_path):
    generator = SyntheticSceneGenerator(0, 112, 112, classes=("block", "puck"))
    other = SyntheticSceneGenerator(0, 112, 112, classes=("block", "ring"))
    train = load_coco(write_coco_dataset(generator, [0], tmp_path / "a"))
    validation = load_coco(write_coco_dataset(other, [0], tmp_path / "b"))
    with pytest.raises(ValueError, match=r"validation classes .* differ from training classes"):
        train_center_head(train, validation, tiny_encoder(), "t", "t", (112, 112), tmp_path / "o", tmp_path / "c")


def test_malformed_coco_files_are_refused_with_the_problem(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}], "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(ValueError, match=r"is not a COCO detection file: it lacks \['annotations'\]"):
        load_coco(path)
    annotation = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 4]}
    path.write_text(
        json.dumps({"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": [annotation]})
    )
    with pytest.raises(ValueError, match=r"annotation 5 .* needs bbox \[x, y, w, h\], w, h > 0"):
        load_coco(path)


def _run_cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dinov2-ros")
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_the_commands_train_evaluate_and_teach_with_a_real_variant(tmp_path, capsys):
    """`train-detector`, `eval-detector` and `teach` end to end on vits14 with explicit random weights."""
    generator = SyntheticSceneGenerator(0, 112, 112, classes=("block", "puck"))
    train = write_coco_dataset(generator, range(6), tmp_path / "train")
    validation = write_coco_dataset(generator, range(100, 103), tmp_path / "val")
    common = ["--variant", "vits14", "--weights", "random"]
    out = tmp_path / "out"
    argv = ["train-detector", "--train", str(train), "--val", str(validation), *common, "--input-size", "112", "112"]
    assert _run_cli(detector_cli, [*argv, "--output", str(out), "--epochs", "2", "--batch-size", "4"]) == 0
    assert (out / "best.pt").is_file() and (out / "training.png").is_file() and list((out / "features").glob("*.npy"))
    argv = ["eval-detector", "--checkpoint", str(out / "best.pt"), "--annotations", str(validation), *common]
    assert _run_cli(detector_cli, argv) == 0
    assert "mAP@[.5:.95]" in capsys.readouterr().out
    with pytest.raises(ValueError, match="trained on encoder 'vits14:random' features, not 'vitb14:random'"):
        _run_cli(detector_cli, [*argv[:-4], "--variant", "vitb14", "--weights", "random"])

    examples = tmp_path / "examples" / "block"
    examples.mkdir(parents=True)
    (examples / "scene.png").write_bytes((tmp_path / "train" / "images" / "scene_000000.png").read_bytes())
    prototypes = tmp_path / "parts.npz"
    argv = ["teach", str(tmp_path / "examples"), "--output", str(prototypes), *common, "--input-size", "112", "112"]
    assert _run_cli(teach_cli, argv) == 0
    store = PrototypeStore.load(prototypes, encoder="vits14:random", input_size=(112, 112))
    assert store.class_ids == {"block": 0} and store.prototype_count == 1


@pytest.mark.subprocess
@pytest.mark.slow  # ~35 s: vits14 features of 32 images, 10 epochs, then a second process
def test_eval_detector_in_a_new_process_reproduces_the_validation_map_of_train_detector(tmp_path):
    """The feature cache names the encoder by content, and 'random' is one seeded network: a fresh
    process with a fresh cache computes the same features, so the same mAP. Before the seed, on these
    settings: 0.306 reported by train-detector, 0.0001 from eval-detector in a new process."""
    generator = SyntheticSceneGenerator(0, 112, 112, classes=("block", "puck"))
    train = write_coco_dataset(generator, range(24), tmp_path / "train")
    validation = write_coco_dataset(generator, range(100, 108), tmp_path / "val")
    common = ["--variant", "vits14", "--weights", "random"]
    out = tmp_path / "out"
    argv = ["train-detector", "--train", str(train), "--val", str(validation), *common, "--input-size", "112", "112"]
    assert _run_cli(detector_cli, [*argv, "--output", str(out), "--epochs", "10", "--batch-size", "8"]) == 0
    history = json.loads((out / "history.json").read_text())["history"]
    reported = max(entry["map_50_95"] for entry in history)  # best.pt's epoch
    assert reported > 0.15  # measured 0.307: a head that learned something, so a mismatch of features would show

    metrics_file = tmp_path / "metrics.json"
    command = [sys.executable, "-m", "dinov2_ros.cli", "eval-detector", "--checkpoint", str(out / "best.pt")]
    command += ["--annotations", str(validation), *common, "--cache-dir", str(tmp_path / "fresh_cache")]
    done = subprocess.run([*command, "--metrics-json", str(metrics_file)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "fresh_cache").glob("features-*.npy"))  # computed there, not read from training's
    assert json.loads(metrics_file.read_text())["map_50_95"] == pytest.approx(reported, abs=1e-6)
