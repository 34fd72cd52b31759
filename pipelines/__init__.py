"""Everything that moves data: corpus readers, vocabularies, the synthetic corpus, video decoding,
keypoints, Parquet shards, the collates and batches trainers read."""
