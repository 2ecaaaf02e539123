"""TensorRT as Polygraphy splits it: a loader (engine cache, key, version checks) and a runner (context,
stream, buffers). Building engines is build time (`dinov2_ros.export.engine_build`)."""
