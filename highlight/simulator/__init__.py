"""`highlight simulate-live`: a faithful stand-in for Tencent Cloud Live's recording APIs, with faults on demand.

A development tool around the recorder, not part of it: tests, the demo and the bench call it over real HTTP.
- `server`: the aiohttp application, its state (calls, tasks, quotas) and `serve`; `journal`: the records of
  what it received (calls, reads, tasks);
- `http`: reading a call of each API off the wire;
- `rules`: the shared checks (channels, quotas, faults) and Live_Tape_Start's own; `v2`, `cloud`: CreateRecord's
  and CreateLiveRecord's checks and answers; `readonly`: each API's read-only list call (`highlight check`);
- `control`: the `/_sim/` routes that drive it from another process; `config`: its settings.
"""

from highlight.simulator.config import SimulatorConfig, add_arguments, config_from_args
from highlight.simulator.journal import SimCall, SimRead, SimTask
from highlight.simulator.server import APIS, LiveSimulator, serve

__all__ = [
    "APIS",
    "LiveSimulator",
    "SimCall",
    "SimRead",
    "SimTask",
    "SimulatorConfig",
    "add_arguments",
    "config_from_args",
    "serve",
]
