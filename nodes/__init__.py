"""nodegen's built-in node library: one module per family. Every NodeDef defined at module level
in a module of this package is registered (exactly as a plugin's would be)."""
