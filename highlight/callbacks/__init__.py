"""`highlight callbacks`: the receiver Tencent Cloud Live's event notifications are sent to.

- `notification`: pure: is a body authentic (`sign = md5(key + t)`, `t` an expiry with a grace), and what a
  recording-file notification says (numbers as JSON numbers or decimal strings alike);
- `receiver`: the aiohttp application and its lifecycle: a notification is answered 200 only once it is stored,
  original bytes, in the callbacks topic on its channel's home partition.

`highlight run` turns the stored recording files into clip events (`highlight.clipper`, `highlight.clips`).
"""
