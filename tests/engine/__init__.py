"""Engine tests: the chatterbox_engine package, on random weights and against upstream 0.1.7."""
