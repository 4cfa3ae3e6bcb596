"""What every process shares, without Rasa: the clinic's details, settings, handoff storage and
its retention, and the staff notifications. The action server (actions/), the staff processes
(staff/) and the scripts import it; none of them imports another's package."""
