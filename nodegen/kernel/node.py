"""The node API: how a node type declares itself.

A node type is a :class:`NodeDef`: a stable type name, a version, a category, a description,
named inputs (:class:`InputSpec`) and named outputs (:class:`OutputSpec`), flags, and a run
function. Write one with the :func:`node` decorator::

    from nodegen.kernel.node import node, Input, Output
    from nodegen.kernel import types as T

    @node("ImageInvert", category="image", description="Invert the colours of an image.",
          inputs=[Input.link("image", T.IMAGE)], outputs=[Output("image", T.IMAGE)])
    def image_invert(ctx, image):
        return 1.0 - image

The run function receives its inputs **by name** as keyword arguments (optional inputs that are
not given arrive as ``None`` unless they have a default) plus the context ``ctx`` (see
:class:`nodegen.kernel.context.RunContext`: device, progress, cancellation, model manager). It returns
a dict ``{output_name: value}``, a tuple in output order, or, for a single output, the value.
"""

from __future__ import annotations

import builtins
import difflib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nodegen.kernel import types as T
from nodegen.kernel.types import SocketType

#: Widget kinds for literal inputs.
WIDGET_KINDS = ("int", "float", "string", "multiline", "bool", "choice", "seed", "file")

_MISSING: Any = object()


class _Missing:
    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return "MISSING"


MISSING: Any = _Missing()

SEED_MAX = 2**64 - 1


@dataclass(frozen=True)
class InputSpec:
    """One named input of a node type.

    ``widget`` is None for link-only inputs (MODEL, IMAGE, ...). Literal inputs (widget set)
    take a value in the workflow, or a link from an output of a compatible type.
    """

    name: str
    type: SocketType
    widget: str | None = None
    default: Any = MISSING
    min: float | None = None
    max: float | None = None
    step: float | None = None
    #: Static choices (a sequence) or a callable ``(ctx_like) -> list[str]`` computed on demand.
    choices: Sequence[Any] | Callable[..., list] | None = None
    #: For ``file`` widgets: the kind of file ("image", or a model folder kind: "checkpoints"...).
    file_kind: str | None = None
    optional: bool = False
    description: str = ""
    #: Display hint: the input starts as a port rather than a widget in the editor.
    force_port: bool = False
    #: Free-form extra metadata for widgets (e.g. {"slider": True, "round": 0.01}).
    extra: dict = field(default_factory=dict)
    #: ``env_check(value, env) -> message or None``: a rule that needs the run environment (e.g.
    #: SaveImage's target folder must be writable); validation runs it before any work.
    env_check: Callable[[Any, Any], str | None] | None = field(default=None, compare=False)

    @property
    def is_literal(self) -> bool:
        return self.widget is not None

    @property
    def required(self) -> bool:
        return not self.optional and self.default is MISSING

    def choice_list(self, env: Any = None) -> list | None:
        if self.choices is None:
            return None
        if callable(self.choices):
            return list(self.choices(env))
        return list(self.choices)

    def check_value(self, value: Any, env: Any = None) -> tuple[str, str] | None:
        """Validate a literal value. Returns ``(code, message)`` or None when it is fine."""
        w = self.widget
        if w in ("int", "seed"):
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    return "wrong_type", f"expects an integer, got {_show(value)}"
        elif w == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return "wrong_type", f"expects a number, got {_show(value)}"
            if isinstance(value, float) and not math.isfinite(value):
                return "wrong_type", f"expects a finite number, got {value}"
        elif w in ("string", "multiline", "file"):
            if not isinstance(value, str):
                return "wrong_type", f"expects text, got {_show(value)}"
        elif w == "bool":
            if not isinstance(value, bool):
                return "wrong_type", f"expects true or false, got {_show(value)}"
        if w in ("int", "float", "seed"):
            lo = self.min if self.min is not None else (0 if w == "seed" else None)
            hi = self.max if self.max is not None else (SEED_MAX if w == "seed" else None)
            if lo is not None and value < lo:
                return "out_of_range", f"value {value} is below the minimum {lo}; use {lo} or more"
            if hi is not None and value > hi:
                return "out_of_range", f"value {value} is above the maximum {hi}; use {hi} or less"
        if w == "choice":
            options = self.choice_list(env)
            if options is not None and value not in options:
                close = difflib.get_close_matches(str(value), [str(o) for o in options], n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                shown = ", ".join(repr(o) for o in options[:12])
                more = ", ..." if len(options) > 12 else ""
                return "invalid_choice", f"{value!r} is not one of {shown}{more}{hint}"
        return None

    def to_json(self, env: Any = None) -> dict:
        d: dict[str, Any] = {
            "name": self.name,
            "type": self.type.name,
            "widget": self.widget,
            "optional": self.optional,
            "required": self.required,
        }
        if self.default is not MISSING:
            d["default"] = self.default
        for key in ("min", "max", "step", "file_kind"):
            v = getattr(self, key)
            if v is not None:
                d[key] = v
        if self.choices is not None:
            d["choices"] = self.choice_list(env)
            d["choices_dynamic"] = callable(self.choices)
        if self.description:
            d["description"] = self.description
        if self.force_port:
            d["force_port"] = True
        if self.extra:
            d["extra"] = dict(self.extra)
        return d


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Input:
    """Constructors for :class:`InputSpec` by widget kind (annotations inside name the builtins
    through :mod:`builtins`, since the methods shadow ``int``, ``float`` and ``bool``)."""

    @staticmethod
    def link(name: str, type: SocketType, *, optional: builtins.bool = False, description: str = "") -> InputSpec:
        return InputSpec(name, type, optional=optional, description=description)

    @staticmethod
    def int(name: str, default: builtins.int = MISSING, *, min: builtins.int | None = None, max: builtins.int | None = None,
            step: builtins.int | None = None, optional: builtins.bool = False, description: str = "", **extra) -> InputSpec:
        return InputSpec(name, T.INT, "int", default, min, max, step, optional=optional,
                         description=description, extra=extra)

    @staticmethod
    def float(name: str, default: builtins.float = MISSING, *, min: builtins.float | None = None,
              max: builtins.float | None = None, step: builtins.float | None = None, optional: builtins.bool = False,
              description: str = "", **extra) -> InputSpec:
        return InputSpec(name, T.FLOAT, "float", default, min, max, step, optional=optional,
                         description=description, extra=extra)

    @staticmethod
    def string(name: str, default: str = MISSING, *, multiline: builtins.bool = False, optional: builtins.bool = False,
               description: str = "", env_check: Callable[[Any, Any], str | None] | None = None,
               **extra) -> InputSpec:
        return InputSpec(name, T.STRING, "multiline" if multiline else "string", default,
                         optional=optional, description=description, extra=extra, env_check=env_check)

    @staticmethod
    def bool(name: str, default: builtins.bool = MISSING, *, optional: builtins.bool = False, description: str = "") -> InputSpec:
        return InputSpec(name, T.BOOLEAN, "bool", default, optional=optional, description=description)

    @staticmethod
    def choice(name: str, choices: Sequence[Any] | Callable[..., list], default: Any = MISSING, *,
               optional: builtins.bool = False, description: str = "", type: SocketType = T.STRING) -> InputSpec:
        if default is MISSING and not callable(choices) and len(choices) > 0:
            default = list(choices)[0]
        return InputSpec(name, type, "choice", default, choices=choices, optional=optional,
                         description=description)

    @staticmethod
    def seed(name: str = "seed", default: builtins.int = 0, *, description: str = "Random seed") -> InputSpec:
        return InputSpec(name, T.INT, "seed", default, 0, SEED_MAX, 1, description=description)

    @staticmethod
    def file(name: str, kind: str, default: str = MISSING, *, optional: builtins.bool = False,
             choices: Callable[..., list] | None = None, description: str = "") -> InputSpec:
        """A file input. ``kind`` is ``"image"`` (input images) or a model folder kind such as
        ``"checkpoints"``; the value is a name found in those folders, or a path."""
        return InputSpec(name, T.STRING, "file", default, file_kind=kind, optional=optional,
                         choices=choices, description=description)


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: SocketType
    description: str = ""

    def to_json(self) -> dict:
        d = {"name": self.name, "type": self.type.name}
        if self.description:
            d["description"] = self.description
        return d


def Output(name: str, type: SocketType, description: str = "") -> OutputSpec:  # noqa: N802
    return OutputSpec(name, type, description)


#: A migration turns the ``inputs`` dict of an older node version into the next version's.
Migration = Callable[[dict], dict]


@dataclass
class NodeDef:
    """A node type: everything the engine and the editor need to know about it."""

    type: str
    run: Callable[..., Any]
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    category: str = "misc"
    description: str = ""
    version: int = 1
    display_name: str | None = None
    #: A sink: its results are what a run is for (SaveImage, PreviewImage).
    output: bool = False
    #: False: always re-run (never served from the cache).
    deterministic: bool = True
    #: ``fingerprint(inputs: dict, env) -> str | None``: the part of the result that depends on
    #: the outside world (a file's hash, a model file's size+mtime+path).
    fingerprint: Callable[[dict, Any], Any] | None = None
    #: ``{old_version: fn(inputs) -> inputs}``: upgrades saved inputs one version at a time.
    migrations: dict[int, Migration] = field(default_factory=dict)
    #: Where it came from ("builtin nodes.image", a plugin entry point, a file); set by the registry.
    source: str = ""
    #: Keywords for palette search.
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.inputs = tuple(self.inputs)
        self.outputs = tuple(self.outputs)
        seen: set[str] = set()
        for spec in self.inputs:
            if spec.name in seen:
                raise ValueError(f"node type {self.type!r} declares input {spec.name!r} twice")
            seen.add(spec.name)
        outs = [o.name for o in self.outputs]
        if len(set(outs)) != len(outs):
            raise ValueError(f"node type {self.type!r} declares an output name twice")
        check_run_signature(self.type, self.run, [s.name for s in self.inputs])
        self._input_map = {s.name: s for s in self.inputs}
        self._output_map = {o.name: o for o in self.outputs}
        self._output_names = tuple(outs)

    # -- lookups -------------------------------------------------------------------------
    def input(self, name: str) -> InputSpec | None:
        return self._input_map.get(name)

    def output_spec(self, name: str) -> OutputSpec | None:
        return self._output_map.get(name)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self._input_map)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    @property
    def title(self) -> str:
        return self.display_name or self.type

    def normalize_result(self, result: Any) -> dict[str, Any]:
        """Turn what ``run`` returned into ``{output_name: value}``."""
        names = self._output_names
        if isinstance(result, dict) and (set(result) <= set(names)) and (result or not names):
            missing = [n for n in names if n not in result]
            if missing:
                raise TypeError(f"{self.type}.run returned no value for output(s) {missing}")
            return result
        if not names:
            return {}
        if len(names) == 1:
            return {names[0]: result}
        if isinstance(result, (tuple, list)) and len(result) == len(names):
            return dict(zip(names, result, strict=True))
        raise TypeError(
            f"{self.type}.run must return a dict with keys {list(names)} or a tuple of {len(names)} "
            f"values, got {type(result).__name__}"
        )

    def to_json(self, env: Any = None) -> dict:
        return {
            "type": self.type,
            "display_name": self.title,
            "version": self.version,
            "category": self.category,
            "description": self.description,
            "output": self.output,
            "deterministic": self.deterministic,
            "inputs": [s.to_json(env) for s in self.inputs],
            "outputs": [o.to_json() for o in self.outputs],
            "source": self.source,
            "keywords": list(self.keywords),
        }

    def with_source(self, source: str) -> NodeDef:
        return replace(self, source=source)


class NodeContractError(TypeError):
    """A node type's run function does not match its declared inputs (raised at registration)."""


def check_run_signature(type_name: str, run: Callable[..., Any], input_names: Sequence[str]) -> None:
    """The run function is called as ``run(ctx, **inputs)``: it must take the context first, a
    parameter for every declared input (or ``**kwargs``), and no parameter that is neither a
    declared input nor optional. A mismatch is an error naming the node type, found when the node
    is defined rather than when it first runs."""
    try:
        sig = inspect.signature(run)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to read
    params = list(sig.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in positional:
        if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
            raise NodeContractError(f"node type {type_name!r}: its run function must take the run "
                                    f"context as its first parameter, e.g. def run(ctx, ...)")
        return
    rest = params[1:]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in rest)
    names = {p.name for p in rest if p.kind in (*positional, inspect.Parameter.KEYWORD_ONLY)}
    missing = [n for n in input_names if n not in names]
    if missing and not takes_any:
        raise NodeContractError(f"node type {type_name!r}: declared input(s) {', '.join(missing)} "
                                f"have no parameter in {run.__name__}(); add them or **kwargs")
    declared = set(input_names)
    extra = [p.name for p in rest if p.name not in declared and p.default is inspect.Parameter.empty
             and p.kind in (*positional, inspect.Parameter.KEYWORD_ONLY)]
    if extra:
        raise NodeContractError(f"node type {type_name!r}: parameter(s) {', '.join(extra)} of "
                                f"{run.__name__}() are not declared inputs; declare them with Input(...) "
                                f"or give them a default")


def node(
    type: str,
    *,
    inputs: Sequence[InputSpec] = (),
    outputs: Sequence[OutputSpec] = (),
    category: str = "misc",
    description: str = "",
    version: int = 1,
    display_name: str | None = None,
    output: bool = False,
    deterministic: bool = True,
    fingerprint: Callable[[dict, Any], Any] | None = None,
    migrations: dict[int, Migration] | None = None,
    keywords: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], NodeDef]:
    """Decorator: turn a run function into a :class:`NodeDef` (the module-level name then holds
    the NodeDef, which the registry collects)."""

    def wrap(fn: Callable[..., Any]) -> NodeDef:
        nd = NodeDef(
            type=type,
            run=fn,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            category=category,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            version=version,
            display_name=display_name,
            output=output,
            deterministic=deterministic,
            fingerprint=fingerprint,
            migrations=dict(migrations or {}),
            keywords=tuple(keywords),
        )
        nd.__module__ = fn.__module__
        nd.__doc__ = fn.__doc__
        return nd

    return wrap
