"""The shapes world."""
