"""highlight: Kafka highlight moments in, real-time Live_Tape_Start recordings out, one result per moment."""

__version__ = "0.1.0"
