"""Networks (student MSNet, teacher FTANet), decoding to Hz, checkpoints."""
