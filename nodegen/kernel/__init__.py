"""The kernel: socket types, the node API, the workflow document, validation, planning, execution, the
output cache, events and the run context. It imports nothing else of nodegen: it knows no node, no model
family and no widget (docs/ARCHITECTURE.md)."""
