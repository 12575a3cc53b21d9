"""Training data: annotation readers, per-sample construction (official §5.3), train transforms, the seeded
resumable dataset mixture, and skip-and-count handling of bad samples (quirk 29 FIX).

    data = build_training_data(recipe, tokenizer, model_config)          # feature cache from recipe if set
    it = data.batches(rank=r, world_size=w)                              # infinite, resumable
    it.load_state_dict(saved)                                           # optional: exact resume
    for batch in it:                                                     # objective.py batch format
        if batch["size"] == 0: continue                                  # every sample was skipped
        loss = batch_loss(model, batch, recipe.branch, data.token_ids)
"""

from videollama.training.data.builder import (
    BatchIterator,
    TrainingData,
    build_training_data,
    num_audio_tokens,
    num_media_tokens,
)
from videollama.training.data.dataset import SkipCounter, Skipped, TrainingDataset, sample_seed
from videollama.training.data.mixture import MixturePlan
from videollama.training.data.records import Issue, Record, read_records
from videollama.training.data.transforms import (
    image_train_transform,
    random_resized_crop_params,
    video_train_transform,
)

__all__ = [
    "BatchIterator",
    "Issue",
    "MixturePlan",
    "Record",
    "SkipCounter",
    "Skipped",
    "TrainingData",
    "TrainingDataset",
    "build_training_data",
    "image_train_transform",
    "num_audio_tokens",
    "num_media_tokens",
    "random_resized_crop_params",
    "read_records",
    "sample_seed",
    "video_train_transform",
]
