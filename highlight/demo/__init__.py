"""`highlight demo`: the whole job on one machine with nothing to set up.

- `command`: the command's arguments, exit codes and signals;
- `runner`: the embedded broker, the simulator, the recorder, the burst and the reader, under one exit stack;
- `moments`: pure: the burst, what it should get back, the tally, how an answer reads;
- `view`: a live table on a terminal, plain lines otherwise.
"""

from highlight.demo.command import add_arguments, main

__all__ = ["add_arguments", "main"]
