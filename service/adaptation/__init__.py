"""The closed loop: labeled samples in, incremental fine-tuning, gated promotion, rollback."""
