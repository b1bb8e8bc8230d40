"""Operator tools: one-shot commands, configured exactly like `highlight run` (same environment, same flags).

- `selection`: which dead letters a replay takes, and its tally (pure);
- `replay`: `highlight dlq replay`: read the dead-letter topic, publish the selected records' original bytes again;
- `check`: `highlight check`: a preflight report of the settings, the topics, the group's lag and the Live API;
- `cluster`: the read-only Kafka questions `check` asks (topic configs, committed offsets, high-water marks).
"""
