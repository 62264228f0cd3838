"""nodegen's desktop editor (PySide6): a client of the engine's public API only.

Layers, each in its own modules:

* :mod:`gui.schema`   - the node schema (from the engine) as the editor sees it;
* :mod:`gui.document` - the document model around :class:`nodegen.kernel.workflow.Workflow`;
* :mod:`gui.commands` - every edit as an undoable ``QUndoCommand``;
* :mod:`gui.scene`, :mod:`gui.node_item`, :mod:`gui.edge_item`, :mod:`gui.view` - the canvas;
* :mod:`gui.palette`, :mod:`gui.panels`, :mod:`gui.runner`, :mod:`gui.mainwindow` - the rest.
"""

from . import qtcompat as _qtcompat

_qtcompat.apply()  # PySide6 6.12 + Python 3.11: void calls leak references to None (see qtcompat)
