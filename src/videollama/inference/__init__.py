"""Answer generation on top of the model: stopping rules, decoding, chat sessions."""
