"""Staff-side processes: the notification sender, the staff inbox web page and its CLI."""
