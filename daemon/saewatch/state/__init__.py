"""The state stage."""
