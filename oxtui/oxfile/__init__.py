"""The oxfile: its keys (fields), value parsers (values), validation into frozen dataclasses
(config), the JSON Schema made from the same table (schema), the start-order graph (graph), the
machine's limits (limits) and writing counts back into it (save). Pure: no processes, no sockets."""
