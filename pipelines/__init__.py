"""Everything that moves data: corpus readers, vocabularies, the synthetic corpus, video decoding,
keypoints, Parquet shards, isolated-sign dictionaries and dataset mixing."""
