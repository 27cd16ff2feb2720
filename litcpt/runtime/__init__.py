"""What every run needs from the machine, below models and data: ranks, strategies, precision, checkpoints (LitGPT
layout and Lightning ``.ckpt``), crash-safe resume, meta-device materialisation, the inference harness, the tokenizer
and atomic file writes."""
