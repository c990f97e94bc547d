"""Controller wiring: watches -> plan -> execute -> status."""
