"""The small library behind the stages: data, transforms, models, metrics, inference and I/O."""
