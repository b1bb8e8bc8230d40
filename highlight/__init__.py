"""highlight: Kafka highlight moments in, real-time Tencent Cloud Live recordings out, one result per moment,
and a clip event (the video URL) per recording file.

Where things live:
- the pipeline: `service` (composition root, lifecycle), `member` (consumer loop, commits, rebalances),
  `recorder` (one record: dead letter, re-key, or dedup → budget → call → state → result), `call` (the call
  itself: intent, lease checks, request, outcome), `clipper` (one recording file → one clip), `last_resort`
  (around every record: what fails on every retry is dead-lettered), `lanes` (key-ordered concurrency, commit
  points), `outage` (pause and probe while the API is unusable), `admission` (wait for room in the budget);
- the domain, pure: `moment`, `recording` (window, options, CST, clamps), `dedup` (both modes), `budget` (the
  account's limits), `results`, `dead_letters`, `clips` (which recording a file belongs to, the clip event),
  `signing` (md5(key + t)), `restore` (which record of the state log counts); `state` keeps the dedup table
  durable;
- `callbacks/`: `highlight callbacks`, the receiver of Tencent Cloud Live's event notifications;
- `apis/`: the recording APIs, one interface, one error policy and one module per API; adapters that classify
  library errors: `live` (aiohttp), `kafka/` (aiokafka: client, partitions, producer, group consumer, changelog
  reader; `kafka_records` reads batches aiokafka refuses, `topics` waits for and prepares the topics);
  `broker`: the embedded broker for the demo, tests and bench;
- around it: `cli`, `config/` (the settings table, loading, checks), `errors`, `logs`, `metrics`, `ops`,
  `schemas`;
- tools around the recorder: `simulator/` (`highlight simulate-live`) and `demo/` (`highlight demo`).
"""

__version__ = "0.1.0"
