"""A run: its config, the loop, trainers, checkpoints, run folders, evaluation and progress."""
