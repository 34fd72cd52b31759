"""One runnable script per stage: `python jobs/<stage>.py --config configs/....yaml key=value ...`."""
