"""Where PhotoMaker's trigger word sits in a prompt, ComfyUI's ``PhotoMakerEncode`` rule.

The trigger word is ``photomaker``, a word of its own between spaces ("a photo of a man
photomaker"). ComfyUI numbers the words from 1 (``text.split(" ")``) and takes ``n``, the trigger's
number; it encodes the prompt without the trigger word's tokens (the 77-token rows padded at the
end) and fuses the id embedding into token position ``n - 1``: after the start token, that is the
word just before the trigger (the class word, "man") when each word before it is one token.

Where nodegen is stricter than ComfyUI (which then returns the text conditioning unchanged, or
fuses into the start token, or fails on a shape): a prompt without the trigger word, a prompt
that starts with it, or a trigger word past the first 76 words is refused with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass

TRIGGER = "photomaker"
#: Token positions of the first 77-token row after the start token.
ROW = 77


@dataclass(frozen=True)
class TriggerPrompt:
    """``text`` without the trigger word, and the token position the id embedding goes to."""

    text: str
    position: int


def split_trigger(text: str, trigger: str = TRIGGER) -> TriggerPrompt:
    """The prompt to encode and the class token's position; ValueError when the rule cannot apply."""
    words = text.split(" ")
    if trigger not in words:
        near = next((w for w in words if trigger in w.lower()), None)
        seen = f" ({near!r} is not the word itself)" if near else ""
        raise ValueError(f"the prompt has no trigger word {trigger!r}{seen}: write it as a word of its own, "
                         f"between spaces, after the class word, e.g. 'photograph of a man {trigger}' "
                         "(not inside (weights:1.2), not followed by a comma)")
    index = words.index(trigger) + 1
    if index == 1:
        raise ValueError(f"the prompt starts with the trigger word {trigger!r}: put the class word before it, "
                         f"e.g. 'a man {trigger}'")
    if index - 1 >= ROW:
        raise ValueError(f"the trigger word {trigger!r} is word {index}: it must be among the first {ROW - 1} words")
    del words[index - 1]
    return TriggerPrompt(" ".join(words), index - 1)
