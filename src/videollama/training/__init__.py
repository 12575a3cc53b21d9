"""Training: the official two-stage recipes for both branches on an existing trainer."""
