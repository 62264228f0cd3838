"""Text tests and transforms: ComfyUI's core string nodes (comfy_extras/nodes_string.py), same names,
inputs, defaults and results. Two differences on purpose: a pattern that is not a valid regular
expression is an error naming the node and the input (ComfyUI's RegexMatch and RegexExtract quietly
answer false / an empty text); and a pattern that backtracks without end on its text (``(a+)+$``)
stops after REGEX_SECONDS with an error instead of holding the run (or a server) forever. The
patterns run on the ``regex`` package (``re``-compatible, VERSION0, with a time limit)."""

from __future__ import annotations

import os
import re

import regex

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, InputSpec, Output, node

CASE_MODES = ("UPPERCASE", "lowercase", "Capitalize", "Title Case")
TRIM_MODES = ("Both", "Left", "Right")
COMPARE_MODES = ("Starts With", "Ends With", "Equal")
EXTRACT_MODES = ("First Match", "All Matches", "First Group", "All Groups")


def _text(name: str) -> InputSpec:
    return Input.string(name, "", multiline=True)


#: Seconds one pattern may run on its text (``NODEGEN_REGEX_SECONDS``).
REGEX_SECONDS = float(os.environ.get("NODEGEN_REGEX_SECONDS", "5"))


def _regex_problem(value: object, env: object = None) -> str | None:
    """Validation rule for a literal pattern: the compiler's complaint, or None."""
    try:
        re.compile(str(value))
    except re.error as e:
        return f"is not a valid regular expression: {e}"
    return None


class _Timed:
    """A compiled pattern whose searches stop after REGEX_SECONDS with an error naming the node."""

    def __init__(self, node_type: str, rx) -> None:
        self.node_type, self.rx = node_type, rx

    def _run(self, method: str, *args, **kwargs):
        try:
            found = getattr(self.rx, method)(*args, timeout=REGEX_SECONDS, **kwargs)
            return list(found) if method == "finditer" else found  # finditer searches as it is read
        except TimeoutError:
            raise ValueError(f"{self.node_type}: input 'regex_pattern' {self.rx.pattern!r} ran longer than "
                             f"{REGEX_SECONDS:g} s on its text (a pattern that backtracks without end, such "
                             f"as '(a|aa)+' on a long run of a's); simplify it") from None

    def search(self, string: str):
        return self._run("search", string)

    def findall(self, string: str) -> list:
        return self._run("findall", string)

    def finditer(self, string: str) -> list:
        return self._run("finditer", string)

    def sub(self, replace: str, string: str, count: int = 0) -> str:
        return self._run("sub", replace, string, count=count)


_PATTERN = Input.string("regex_pattern", "", multiline=True, env_check=_regex_problem)
_FLAGS = [Input.bool("case_insensitive", True), Input.bool("multiline", False), Input.bool("dotall", False)]


def _compile(node_type: str, pattern: str, case_insensitive: bool, multiline: bool, dotall: bool) -> _Timed:
    flags = ((regex.IGNORECASE if case_insensitive else 0) | (regex.MULTILINE if multiline else 0)
             | (regex.DOTALL if dotall else 0) | regex.VERSION0)
    try:
        re.compile(pattern)  # the standard library's judgement of the pattern, as ComfyUI's
        return _Timed(node_type, regex.compile(pattern, flags))
    except (re.error, regex.error) as e:
        raise ValueError(f"{node_type}: input 'regex_pattern' is not a valid regular expression "
                         f"({pattern!r}: {e})") from None


@node("StringSubstring", category="text", display_name="Substring",
      description="The part of a text from start to end (Python slicing: negative counts from the end).",
      inputs=[_text("string"), Input.int("start", 0), Input.int("end", 0)],
      outputs=[Output("text", T.STRING)], keywords=("extract text", "text portion", "slice"))
def string_substring(ctx, string, start, end):
    return string[start:end]


@node("StringLength", category="text", display_name="Length", description="The number of characters in a text.",
      inputs=[_text("string")], outputs=[Output("length", T.INT)], keywords=("character count", "text size"))
def string_length(ctx, string):
    return len(string)


@node("CaseConverter", category="text", display_name="Case Converter",
      description="Upper-, lower-, capitalise or title-case a text.",
      inputs=[_text("string"), Input.choice("mode", CASE_MODES)], outputs=[Output("text", T.STRING)],
      keywords=("text case", "uppercase", "lowercase", "capitalize"))
def case_converter(ctx, string, mode):
    convert = {"UPPERCASE": str.upper, "lowercase": str.lower, "Capitalize": str.capitalize,
               "Title Case": str.title}
    return convert[mode](string) if mode in convert else string


@node("StringTrim", category="text", display_name="Trim", description="Remove whitespace from the ends of a text.",
      inputs=[_text("string"), Input.choice("mode", TRIM_MODES)], outputs=[Output("text", T.STRING)],
      keywords=("clean whitespace", "remove whitespace", "strip"))
def string_trim(ctx, string, mode):
    trim = {"Both": str.strip, "Left": str.lstrip, "Right": str.rstrip}
    return trim[mode](string) if mode in trim else string


@node("StringContains", category="text", display_name="Contains", description="Whether a text contains another.",
      inputs=[_text("string"), _text("substring"), Input.bool("case_sensitive", True)],
      outputs=[Output("contains", T.BOOLEAN)], keywords=("text includes", "string includes"))
def string_contains(ctx, string, substring, case_sensitive):
    if case_sensitive:
        return substring in string
    return substring.lower() in string.lower()


@node("StringCompare", category="text", display_name="Compare",
      description="Whether text a starts with, ends with or equals text b.",
      inputs=[_text("string_a"), _text("string_b"), Input.choice("mode", COMPARE_MODES),
              Input.bool("case_sensitive", True)],
      outputs=[Output("result", T.BOOLEAN)], keywords=("text match", "string equals", "starts with", "ends with"))
def string_compare(ctx, string_a, string_b, mode, case_sensitive):
    a, b = (string_a, string_b) if case_sensitive else (string_a.lower(), string_b.lower())
    if mode == "Starts With":
        return a.startswith(b)
    if mode == "Ends With":
        return a.endswith(b)
    return a == b


@node("RegexMatch", category="text", display_name="Regex Match",
      description="Whether a regular expression matches anywhere in a text.",
      inputs=[_text("string"), _PATTERN, *_FLAGS], outputs=[Output("matches", T.BOOLEAN)],
      keywords=("pattern match", "text contains", "string match", "regular expression"))
def regex_match(ctx, string, regex_pattern, case_insensitive, multiline, dotall):
    return _compile("RegexMatch", regex_pattern, case_insensitive, multiline, dotall).search(string) is not None


@node("RegexExtract", category="text", display_name="Regex Extract",
      description="The first match, all matches, the first match's group or every match's group "
                  "(several results one per line).",
      inputs=[_text("string"), _PATTERN, Input.choice("mode", EXTRACT_MODES), *_FLAGS,
              Input.int("group_index", 1, min=0, max=100)],
      outputs=[Output("text", T.STRING)], keywords=("pattern extract", "text parser", "parse text"))
def regex_extract(ctx, string, regex_pattern, mode, case_insensitive, multiline, dotall, group_index):
    rx = _compile("RegexExtract", regex_pattern, case_insensitive, multiline, dotall)
    if mode == "First Match":
        m = rx.search(string)
        return m.group(0) if m else ""
    if mode == "All Matches":  # re.findall: the whole match, the one group, or (several groups) the first
        return "\n".join(m if isinstance(m, str) else m[0] for m in rx.findall(string))
    if mode == "First Group":
        m = rx.search(string)
        return _group(m, group_index) if m and len(m.groups()) >= group_index else ""
    if mode == "All Groups":
        return "\n".join(_group(m, group_index) for m in rx.finditer(string)
                         if m.groups() and len(m.groups()) >= group_index)
    return ""


def _group(m, index: int) -> str:
    """A group's text; a group that took no part in the match gives "" (ComfyUI: None, or a failure)."""
    found = m.group(index)
    return "" if found is None else found


@node("RegexReplace", category="text", display_name="Regex Replace",
      description="Find and replace text using regex patterns (replace may use \\1 or \\g<name>).",
      inputs=[_text("string"), _PATTERN, _text("replace"),
              Input.bool("case_insensitive", True, optional=True), Input.bool("multiline", False, optional=True),
              Input.bool("dotall", False, optional=True,
                         description="When enabled, the dot (.) character matches newlines too."),
              Input.int("count", 0, min=0, max=100, optional=True,
                        description="Most replacements to make; 0 replaces every occurrence.")],
      outputs=[Output("text", T.STRING)], keywords=("pattern replace", "find and replace", "substitution"))
def regex_replace(ctx, string, regex_pattern, replace, case_insensitive=True, multiline=False, dotall=False,
                  count=0):
    rx = _compile("RegexReplace", regex_pattern, bool(case_insensitive), bool(multiline), bool(dotall))
    try:
        return rx.sub(replace, string, count=count or 0)
    except (re.error, regex.error, IndexError) as e:  # a bad group reference such as \3 with one group
        raise ValueError(f"RegexReplace: input 'replace' is not a valid replacement for the pattern "
                         f"({replace!r}: {e})") from None
