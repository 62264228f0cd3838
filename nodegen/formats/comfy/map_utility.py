"""ComfyUI editor helpers: reroutes, notes, and the core primitive nodes.

ComfyUI's front-end ``PrimitiveNode`` (a widget value shared by links) has no fixed class; the UI
importer turns it into one of our primitives by its output type (see ui_format.py)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("Reroute", "Reroute", "", "value", rename={"": "value"}),
    nm("Note", "Note", "text", ""),
    nm("MarkdownNote", "Note", "text", "", export=False),
    nm("PrimitiveInt", "Int", "value", "value"),
    nm("PrimitiveFloat", "Float", "value", "value"),
    nm("PrimitiveString", "String", "value", "value"),
    nm("PrimitiveStringMultiline", "String", "value", "value", export=False),
    nm("PrimitiveBoolean", "Boolean", "value", "value"),
    nm("StringConcatenate", "StringConcat", "string_a string_b delimiter", "text",
       rename={"string_a": "a", "string_b": "b", "delimiter": "separator"}),
    nm("StringReplace", "StringReplace", "string find replace", "text", rename={"string": "text"}),
    nm("StringSubstring", "StringSubstring", "string start end", "text"),
    nm("StringLength", "StringLength", "string", "length"),
    nm("CaseConverter", "CaseConverter", "string mode", "text"),
    nm("StringTrim", "StringTrim", "string mode", "text"),
    nm("StringContains", "StringContains", "string substring case_sensitive", "contains"),
    nm("StringCompare", "StringCompare", "string_a string_b mode case_sensitive", "result"),
    nm("RegexMatch", "RegexMatch", "string regex_pattern case_insensitive multiline dotall", "matches"),
    nm("RegexExtract", "RegexExtract",
       "string regex_pattern mode case_insensitive multiline dotall group_index", "text"),
    nm("RegexReplace", "RegexReplace",
       "string regex_pattern replace case_insensitive multiline dotall count", "text"),
    nm("PreviewAny", "PreviewAny", "- - -", "text"),  # the editor's preview widgets and Markdown toggle
]
