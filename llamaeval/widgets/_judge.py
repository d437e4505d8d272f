"""The judging widget: a pooled document at a time, graded with a click or a key, saved at once."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Callable

from llamaeval.widgets._html import esc

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_STYLE = ("<style>.le-judge mark{background:#ffe066;padding:0 1px}"
          ".le-judge .le-passage{max-height:320px;overflow:auto;border:1px solid #ddd;padding:6px 8px;"
          "font-family:sans-serif;font-size:13px;line-height:1.45}"
          ".le-judge .le-q{font-size:15px;font-family:sans-serif}.le-judge .le-muted{color:#777}</style>")


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[str], str]:
    try:  # PyStemmer ships with the server extra; the light stemmer below is enough without it
        import Stemmer

        stem = Stemmer.Stemmer("english").stemWord
        return lambda word: stem(word)
    except ImportError:
        return _light_stem


def _light_stem(word: str) -> str:
    for suffix in ("ational", "ations", "ation", "ings", "ing", "edly", "ness", "ies", "ied", "ed", "es", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def query_terms(query: str) -> set[str]:
    """The stems of a query's content words (what the passage highlights)."""
    from llamaeval.datasets._simulate import tokenize

    stem = _stemmer()
    return {stem(t) for t in tokenize(query)}


def highlight(text: str, terms: set[str]) -> str:
    """``text`` as escaped HTML with every word whose stem is in ``terms`` wrapped in ``<mark>``."""
    stem = _stemmer()
    out, last = [], 0
    for hit in _WORD.finditer(text):
        out.append(html.escape(text[last:hit.start()]))
        word = hit.group(0)
        out.append(f"<mark>{html.escape(word)}</mark>" if stem(word.lower()) in terms else html.escape(word))
        last = hit.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


class JudgingWidget:
    """Judge a pool in Jupyter: the query, the document with the query's words highlighted,
    one button per grade, skip, undo, and a progress bar.

    Keyboard: click into the ``keys`` box and type a grade's digit to grade, ``s`` to skip,
    ``u`` to undo (the box empties itself after each key). Every judgement is appended to the
    qrels file at once; opening a widget on the same ``out`` folder resumes.

    The same actions from code: ``grade(2)``, ``skip()``, ``undo()``; ``current``,
    ``done``, ``judgements()``, ``queryset()``. The session underneath is ``session``
    (a :class:`llamaeval.datasets.JudgingSession`).
    """

    def __init__(self, pool: Any, out: str | os.PathLike[str], *, corpus: Any = None,
                 grades: Mapping[int, str] | None = None, fmt: str | None = None,
                 max_chars: int = 20_000) -> None:
        import ipywidgets as w

        from llamaeval.datasets._judgements import JudgingSession

        self.session = JudgingSession(pool, out, corpus=corpus, grades=grades, fmt=fmt)
        self.max_chars = max_chars
        self.header = w.HTML()
        self.passage = w.HTML()
        self.buttons: dict[int, Any] = {}
        styles = ["danger", "info", "success", "success", "success"]
        for i, (grade, label) in enumerate(sorted(self.session.grades.items())):
            button = w.Button(description=f"{grade} · {label}", tooltip=f"key {grade}",
                              button_style=styles[min(i, len(styles) - 1)] if len(self.session.grades) > 1 else "",
                              layout=w.Layout(width="auto"))
            button.on_click(lambda _b, g=grade: self.grade(g))
            self.buttons[grade] = button
        self.skip_button = w.Button(description="skip", tooltip="key s", layout=w.Layout(width="auto"))
        self.skip_button.on_click(lambda _b: self.skip())
        self.undo_button = w.Button(description="undo", tooltip="key u", layout=w.Layout(width="auto"))
        self.undo_button.on_click(lambda _b: self.undo())
        digits = "/".join(str(g) for g in sorted(self.session.grades) if 0 <= g <= 9)
        self.keys = w.Text(value="", placeholder=f"click here, then type {digits} to grade · s skip · u undo",
                           continuous_update=True, layout=w.Layout(width="420px"))
        self.keys.observe(self._on_key, names="value")
        self.progress = w.IntProgress(value=0, min=0, max=len(self.session), layout=w.Layout(width="300px"))
        self.status = w.HTML()
        self.widget = w.VBox([
            self.header, self.passage,
            w.HBox([*self.buttons.values(), self.skip_button, self.undo_button]),
            w.HBox([self.keys]), w.HBox([self.progress, self.status]),
        ])
        self.widget.add_class("le-judge")
        self.update()

    # ------------------------------------------------------------------ actions
    def grade(self, grade: int) -> None:
        """Judge the shown document ``grade`` (saved at once) and show the next one."""
        self.session.grade(grade)
        self.update()

    def skip(self) -> None:
        """Leave the shown document for later."""
        self.session.skip()
        self.update()

    def undo(self) -> bool:
        """Take the last action back; returns False when there was nothing to undo."""
        undone = self.session.undo()
        self.update()
        return undone

    def _on_key(self, change: Mapping[str, Any]) -> None:
        typed = str(change.get("new") or "")
        if not typed:
            return  # the reset below
        for key in typed:
            if key.isdigit() and int(key) in self.session.grades and not self.session.done:
                self.grade(int(key))
            elif key.lower() == "s":
                self.skip()
            elif key.lower() == "u":
                self.undo()
        self.keys.value = ""

    # ------------------------------------------------------------------ views
    @property
    def current(self) -> dict[str, Any] | None:
        return self.session.current

    @property
    def done(self) -> bool:
        return self.session.done

    def judgements(self) -> Any:
        """The judgements so far (``query_id, doc_id, relevance``)."""
        return self.session.judgements()

    def queryset(self, name: str | None = None) -> Any:
        """The judgements so far as a QuerySet (what ``le.load_queryset(out)`` reads)."""
        return self.session.queryset(name)

    def update(self) -> None:
        """Redraw the query, the passage, the progress and the status."""
        s = self.session
        item = s.current
        self.progress.value = s.n_judged
        pooled_queries = s.pool.items["query_id"].nunique()
        left = len(s) - s.n_judged
        self.status.value = (f"<span class='le-muted'>{s.n_judged} / {len(s)} judged · {left} left"
                             + (f" · {s.n_skipped} skipped" if s.n_skipped else "")
                             + f" · {pooled_queries} queries · saving to {esc(s.log.path)}</span>")
        for button in (*self.buttons.values(), self.skip_button):
            button.disabled = item is None
        if item is None:
            self.header.value = _STYLE + "<p class='le-q'><b>All documents of the pool are judged.</b></p>"
            self.passage.value = (f"<p class='le-muted'>Load them with <code>le.load_queryset("
                                  f"{esc(repr(str(s.log.folder)))})</code>.</p>")
            return
        terms = query_terms(item["query"])
        of_query = s.pool.items[s.pool.items["query_id"] == item["query_id"]]
        self.header.value = (_STYLE + f"<div class='le-q'><span class='le-muted'>query {esc(item['query_id'])}"
                             f"</span><br><b>{highlight(item['query'], terms)}</b></div>"
                             f"<div class='le-muted'>document {esc(item['doc_id'])} · {len(of_query)} pooled "
                             "for this query</div>")
        if not item["known"]:
            body = "<p class='le-muted'>(the text of this document is not available: pass corpus=...)</p>"
        else:
            text = item["text"]
            cut = len(text) > self.max_chars
            text = text[: self.max_chars]
            title = f"<b>{highlight(item['title'], terms)}</b><br>" if item["title"] else ""
            body = title + highlight(text, terms).replace("\n", "<br>") + ("…" if cut else "")
        self.passage.value = f"<div class='le-passage' data-doc='{esc(item['doc_id'])}'>{body}</div>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def judge(pool: Any, out: str | os.PathLike[str], *, corpus: Any = None, grades: Mapping[int, str] | None = None,
          fmt: str | None = None) -> JudgingWidget:
    """Judge a :func:`~llamaeval.datasets.pool` in Jupyter; judgements go to the query-set folder ``out``
    (``fmt="trec"``: ``topics.txt`` + ``qrels.txt``, ``"csv"``: ``queries.csv`` + ``qrels.csv``) as they
    are made, and a widget opened on the same folder resumes. ``corpus`` (a QuerySet or a frame
    ``doc_id, title, text``) supplies the documents' text; ``grades`` maps grade -> label
    (default 0 not relevant, 1 relevant, 2 highly relevant)."""
    return JudgingWidget(pool, out, corpus=corpus, grades=grades, fmt=fmt)
