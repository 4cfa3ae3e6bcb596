"""Custom actions of the clinic assistant, run by the action server (`python -m actions.server`)."""
