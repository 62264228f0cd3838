"""The runtime: :class:`~nodegen.runtime.engine.Engine` joins the kernel, the model folders and the file
formats into the object every front end (CLI, editor, server, sweep) runs workflows through."""
