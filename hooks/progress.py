"""Progress that moves with the work: a bar (rich) on a terminal, plain periodic lines elsewhere.

    from hooks.progress import progress, echo
    with progress("training SAE", total=200_000, unit="tok", start=46_080) as bar:   # resumed at 46,080
        for step in ...:
            bar.update(completed=tokens_so_far, loss=0.12)   # or bar.advance(batch_tokens)
            echo("checkpoint saved")                          # printed above the bar, never into it

On a terminal the bar shows done/total, percent, the rate and the time left, both measured on
this session's work only (a resumed run starts at ``start`` and its rate does not count the work
done before); ``logging`` records and ``print`` calls made while the bar is up are printed above it
(rich's live display with its console as the log handler). Where the console is not a terminal
(CI logs, pipes, ``| tee``) there is no bar: one plain line at the start, one each time another
tenth of the total is done or ``interval_s`` seconds have passed, and one at the end::

    training SAE: 92,160/200,000 tok (46%) · 1,530 tok/s · 1m10s left · loss 0.118

Over a loop, ``track`` is the short form (one step per item; ``step`` counts an item as more)::

    for batch in track(batches, "batches", unit="ex", step=len):   # advances by each batch's size
        ...

A bar opened while another is shown becomes one more row of the same display (rich shows one
live display at a time) and goes away when it closes, e.g. a pipeline's stages with the SAE's
tokens below. ``progress(..., enabled=False)`` keeps the counters (``bar.completed``) and prints nothing.
rich is imported only when a bar is shown.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable, Iterable, Iterator, Optional

_ACTIVE: list = []  # the bars now shown, innermost last (echo prints above the innermost)


def active() -> Optional["Progress"]:
    """The innermost progress display now open, or None."""
    return _ACTIVE[-1] if _ACTIVE else None


def echo(message: str) -> None:
    """Print ``message`` on its own line: above the active bar, or to stdout when there is none."""
    bar = active()
    if bar is not None and bar.enabled:
        bar.log(message)
    else:
        print(message, flush=True)


def _duration(s: float) -> str:
    s = int(round(s))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _number(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() or abs(x) >= 100 else f"{x:,.3g}"


class Progress:
    """One task's progress; made by :func:`progress` (use it as a context manager)."""

    def __init__(self, description: str, total: Optional[float] = None, *, unit: str = "it", start: float = 0,
                 console=None, plain: Optional[bool] = None, interval_s: float = 30.0, enabled: bool = True):
        self.description, self.total, self.unit = description, total, unit
        self.start = self.completed = start
        self.fields: dict = {}
        self.enabled, self.interval_s = enabled, interval_s
        self._console, self._plain = console, plain
        self._rich = self._task = None
        self._t0 = self._last_line_t = 0.0
        self._next_tenth = 1
        self._printed_at = None  # the count shown by the last plain line
        self._handlers: list = []
        self._nested = False

    # -- the numbers ---------------------------------------------------------------------------
    def rate(self) -> Optional[float]:
        """Units per second over this session (work before ``start`` is not counted)."""
        dt = time.perf_counter() - self._t0
        done = self.completed - self.start
        return done / dt if dt > 0 and done > 0 else None

    def eta_s(self) -> Optional[float]:
        r = self.rate()
        return (self.total - self.completed) / r if r and self.total is not None else None

    def line(self) -> str:
        """The plain status line (also what the non-terminal mode prints)."""
        done = _number(self.completed)
        if self.total:
            share = 100 * self.completed / self.total
            parts = [f"{self.description}: {done}/{_number(self.total)} {self.unit} ({share:.0f}%)"]
        else:
            parts = [f"{self.description}: {done} {self.unit}"]
        r, eta = self.rate(), self.eta_s()
        if r is not None:
            parts.append(f"{_number(r)} {self.unit}/s")
        if eta is not None:
            parts.append(f"{_duration(eta)} left")
        return " · ".join(parts + ([self._fields_text()] if self.fields else []))

    def _fields_text(self) -> str:
        return " · ".join(f"{k} {_number(v) if isinstance(v, (int, float)) else v}" for k, v in self.fields.items())

    # -- moving it -----------------------------------------------------------------------------
    def advance(self, n: float = 1, **fields) -> None:
        self.update(completed=self.completed + n, **fields)

    def update(self, completed: Optional[float] = None, *, total: Optional[float] = None,
               description: Optional[str] = None, **fields) -> None:
        """Set the count (and optionally total, description, extra fields shown after the rate)."""
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        self.fields.update(fields)
        if not self.enabled:
            return
        if self._rich is not None:
            extra = "· " + self._fields_text() if self.fields else ""
            self._rich.update(self._task, completed=self.completed, total=self.total, description=self.description,
                              extra=extra)
        else:
            self._maybe_line()

    def log(self, message: str) -> None:
        """Print ``message`` on its own line (above the bar on a terminal); nothing when disabled."""
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            self._print(message)

    # -- plain mode ----------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def _maybe_line(self, force: bool = False) -> None:
        now = time.perf_counter()
        tenth = None
        if self.total:
            tenth = int(10 * (self.completed - self.start) / max(self.total - self.start, 1e-12))
        if force and self._printed_at == self.completed:
            return  # the closing line would repeat the last one
        due = force or (tenth is not None and tenth >= self._next_tenth) or now - self._last_line_t >= self.interval_s
        if due:
            if tenth is not None:
                self._next_tenth = max(self._next_tenth, tenth + 1)
            self._last_line_t, self._printed_at = now, self.completed
            self._print(self.line())

    # -- terminal mode -------------------------------------------------------------------------
    def _is_terminal(self) -> bool:
        if self._plain is not None:
            return not self._plain
        if self._console is not None:
            return bool(getattr(self._console, "is_terminal", False))
        return sys.stderr.isatty()

    def _start_rich(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress as RichProgress, ProgressColumn, TaskProgressColumn, TextColumn
        from rich.text import Text

        class _Counts(ProgressColumn):
            def render(self, task):
                total = f"/{_number(task.total)}" if task.total is not None else ""
                return Text(f"{_number(task.completed)}{total} {task.fields['owner'].unit}")

        class _RateEta(ProgressColumn):
            def render(self, task):
                p = task.fields["owner"]
                r, eta = p.rate(), p.eta_s()
                s = f"{_number(r)} {p.unit}/s" if r is not None else f"? {p.unit}/s"
                return Text(s + (f" · {_duration(eta)} left" if eta is not None else ""))

        console = self._console or Console(stderr=True)
        std = (sys.__stderr__, sys.__stdout__, sys.stderr, sys.stdout)  # before rich redirects them
        self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _Counts(),
                                  _RateEta(), TextColumn("{task.fields[extra]}"), console=console,
                                  redirect_stdout=True, redirect_stderr=True)
        self._add_task()
        self._rich.start()
        self._route_logging(console, std)

    def _add_task(self) -> None:
        self._task = self._rich.add_task(self.description, total=self.total, completed=self.completed, extra="",
                                         owner=self)

    def _route_logging(self, console, std) -> None:
        """Log records print above the bar: terminal stream handlers write through rich's console;
        with no handler at all, a RichHandler stands in for logging's last-resort stderr writer."""
        from rich.file_proxy import FileProxy

        root = logging.getLogger()
        for h in root.handlers:
            stream = getattr(h, "stream", None)
            if isinstance(h, logging.StreamHandler) and any(stream is s for s in std):
                self._handlers.append((h, h.setStream(FileProxy(console, stream))))
        if not root.handlers:
            from rich.logging import RichHandler

            h = RichHandler(console=console, show_path=False, level=logging.WARNING)
            root.addHandler(h)
            self._handlers.append((h, None))

    def _restore_logging(self) -> None:
        root = logging.getLogger()
        for h, old in reversed(self._handlers):
            if old is None:
                root.removeHandler(h)
            else:
                h.setStream(old)
        self._handlers = []

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        self._t0 = self._last_line_t = time.perf_counter()
        outer = next((p for p in reversed(_ACTIVE) if p._rich is not None), None)
        _ACTIVE.append(self)
        if self.enabled:
            if outer is not None:  # nested: one more row in the outer live display (rich shows one at a time)
                self._rich, self._nested = outer._rich, True
                self._add_task()
            elif self._is_terminal():
                self._start_rich()
            else:
                self._maybe_line(force=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._rich is not None and self._nested:
                self._rich.remove_task(self._task)
                self._rich = None
            elif self._rich is not None:
                self._rich.stop()
                self._restore_logging()
                self._rich = None
            elif self.enabled:
                self._maybe_line(force=True)
        finally:
            if self in _ACTIVE:
                _ACTIVE.remove(self)


def progress(description: str, total: Optional[float] = None, *, unit: str = "it", start: float = 0, console=None,
             plain: Optional[bool] = None, interval_s: float = 30.0, enabled: bool = True) -> Progress:
    """A progress display for ``with``: ``total`` units (None: unknown), starting at ``start``
    (the resumed count). ``console``: a rich Console to draw on (default stderr); ``plain``: force
    plain lines (True) or the bar (False) instead of deciding by whether the console is a terminal."""
    return Progress(description, total, unit=unit, start=start, console=console, plain=plain, interval_s=interval_s,
                    enabled=enabled)


def track(items: Iterable, description: str, *, total: Optional[float] = None, unit: str = "it",
          step: Optional[Callable] = None, enabled: bool = True, **kw) -> Iterator:
    """Yield ``items`` under a :func:`progress` display that advances after each one by 1 (or by
    ``step(item)``, e.g. ``len`` for batches counted in examples). ``total``: default ``len(items)``
    when ``step`` is None and it has one. Leaving the loop early (break, exception) closes the display."""
    if total is None and step is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress(description, total, unit=unit, enabled=enabled, **kw) as bar:
        for item in items:
            yield item
            bar.advance(1 if step is None else step(item))
