"""Every failure of an event, as a short message for people.

`@handler` wraps an event handler (a function or a generator): a `gr.Error` passes through; a `ValueError` (the
library's messages for people: bad settings, a bad run card, an unreadable image) becomes a `gr.Error` with its
message; anything else is logged with its traceback on the server and shown as `UNEXPECTED`. Every message is
cleaned of file paths, so neither the server's folders nor gradio's upload cache reach a visitor, and it never
names an exception class. The app launches with `show_error=False`, so what gradio itself raises outside a
handler shows as its generic error, never as raw text.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable

import gradio as gr

logger = logging.getLogger("mmgen.app")

UNEXPECTED = "Something went wrong on our side; please try again. If it keeps happening, try other settings."
# /tmp/gradio/abc/x.png, C:\Users\me\x.png; not a relative path a visitor typed (../../etc, user/repo)
PATH = re.compile(r"(?<![\w.~\-])(?:[A-Za-z]:)?(?:[\\/][\w.\-~+@]+){2,}[\\/]?")


def for_people(message: str) -> str:
    """A message without file paths (each becomes its file's name), on one line, at most 300 characters."""
    message = PATH.sub(lambda m: repr(re.split(r"[\\/]", m.group(0).rstrip("\\/"))[-1]), str(message))
    message = " ".join(message.split())
    return message if len(message) <= 300 else message[:297] + "..."


def _as_gr_error(e: Exception) -> gr.Error:
    """A message for people; an expected refusal prints no traceback in the server's log (gradio's default)."""
    if isinstance(e, gr.Error):
        e.message, e.print_exception = for_people(e.message), False
        return e
    if isinstance(e, ValueError):
        return gr.Error(for_people(str(e)), print_exception=False)
    logger.exception("unexpected error in an event handler")
    return gr.Error(UNEXPECTED)


def handler(fn: Callable) -> Callable:
    """The event handler `fn`, failing only with messages for people (see the module's docstring)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise _as_gr_error(e) from None

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _as_gr_error(e) from None

    return call
