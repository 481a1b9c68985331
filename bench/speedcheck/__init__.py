"""``bench speed``: re-time finished variants' training steps in fresh, interleaved processes."""
