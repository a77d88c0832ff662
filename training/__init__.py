"""hark training pipeline: data, augmentation, features, models, export, evaluation."""
