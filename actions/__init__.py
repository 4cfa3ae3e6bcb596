"""Custom actions of the clinic assistant, run by `rasa run actions`."""
