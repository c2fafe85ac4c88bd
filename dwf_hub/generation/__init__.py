"""Stage 6: what generated weights go through before a user gets them — post-processing into models, BatchNorm and unit (REPAIR) recalibration, the quality check."""
