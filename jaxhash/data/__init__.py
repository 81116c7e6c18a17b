"""Data: sources, protocols, batches and on-device augmentation."""
