"""Launch, supervise, cancel and reconcile runs; the worker entry point; RunContext and checkpoints."""
