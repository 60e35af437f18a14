"""Images held in memory or streamed from files, and their batched on-device augmentation."""
