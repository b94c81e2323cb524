"""The model on disk and in memory: load/save (io), structural checks (validate), external data
and atomic files."""
