"""Running from the window: validate (problems on the nodes and in the problems panel), queue the
run, then show its events on the canvas: the running node glows with a progress bar and live
previews, cached nodes are marked, finished nodes show their time and images, failures go red."""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMessageBox

from nodegen.kernel.node import SEED_MAX
from nodegen.runtime.sweep.session import Sweep

from . import commands
from .sweep_dialog import SweepDialog, SweepError, caption

#: Escape asks before cancelling a run that has gone on this long (seconds)
LONG_RUN_S = 10.0


class RunMixin:
    def init_run(self) -> None:
        self.node_images: dict[str, tuple[list, list]] = {}
        self.last_status: str | None = None
        self.run_log: list[tuple[str, str | None]] = []
        self.runner.event.connect(self.on_run_event)
        self.runner.runStarted.connect(self.on_run_started)
        self.runner.runFinished.connect(self.on_run_finished)
        self.runner.queueChanged.connect(lambda n: self.update_run_label())
        self.runner.sweepEvent.connect(self.on_sweep_event)
        self.viewer_node: str | None = None
        # problems shown on nodes are re-checked shortly after each edit, so fixing one clears it
        self._recheck = QTimer(self)
        self._recheck.setSingleShot(True)
        self._recheck.setInterval(250)
        self._recheck.timeout.connect(self._recheck_problems)
        self.doc.undo_stack.indexChanged.connect(lambda _: self._recheck.start())

    def _recheck_problems(self) -> None:
        if self.problems.count() and not self.runner.busy and self.scene.editor is None:
            self.validate_graph()

    # -- starting ----------------------------------------------------------------------
    def validate_graph(self):
        self.scene.commit_editor()
        p = self.runner.validate(self.doc.data)
        by_node: dict[str, list] = {}
        for prob in p.problems:
            if prob.node_id is not None:
                by_node.setdefault(str(prob.node_id), []).append(prob)
        for nid, item in self.scene.items_by_id.items():
            item.set_problems(by_node.get(nid, []))
        self.problems.set_problems(p.problems + p.warnings)
        return p

    def validate_and_report(self):
        """The Validate button: check the graph and say what was found, either way."""
        p = self.validate_graph()
        if p.problems:
            self.problems_dock.show()
            self.problems_dock.raise_()
            self.statusBar().showMessage(f"{len(p.problems)} problem(s): see the Problems panel", 10000)
        else:
            warn = f" ({len(p.warnings)} warning(s) in the Problems panel)" if p.warnings else ""
            self.statusBar().showMessage(f"no problems found: the graph is ready to run{warn}", 8000)
        return p

    def run_graph(self, first: bool = False) -> bool:
        """Validate and queue a run; ``first``: ahead of the runs already queued."""
        p = self.validate_graph()
        if p.problems:
            self.problems_dock.show()
            self.problems_dock.raise_()
            self.statusBar().showMessage(f"not run: {len(p.problems)} problem(s); see the problems panel", 10000)
            return False
        self.runner.submit(self.doc.data, label=self.document_name(), first=first)
        self.apply_seed_control()
        self.update_run_label()
        return True

    # -- sweeps ------------------------------------------------------------------------
    def open_sweep_dialog(self, preset: tuple[str, str] | None = None) -> bool:
        self.scene.commit_editor()
        dialog = SweepDialog(self.doc.data, self.schema, self, preset, output_dir=self.engine.env.output_dir,
                             graph_path=self.doc.path)
        if not dialog.exec():
            return False
        try:
            axes, folder = dialog.axes(), dialog.folder()
        except SweepError as e:
            self.statusBar().showMessage(str(e), 10000)
            return False
        return self.run_sweep([a.over for a in axes], folder) is not None

    def run_sweep(self, overs: list[str], folder: str | Path) -> int | None:
        """Queue a sweep of the open graph over ``overs`` (``NODE.INPUT=SPEC``, as the sweep
        command takes them) into ``folder``: planned here by the shared sweep core, run in the run
        thread on this window's engine, its images shown as a grid in the gallery as they come.
        The same sweep into the same folder resumes. Returns the queue's job number."""
        p = self.validate_graph()
        if p.problems:
            self.problems_dock.show()
            self.statusBar().showMessage(f"not run: {len(p.problems)} problem(s); see the problems panel", 10000)
            return None
        key = str(self.doc.path.resolve()) if self.doc.path else "untitled"
        try:
            sweep = Sweep.prepare(self.engine, copy.deepcopy(self.doc.data), overs, folder, graph_key=key)
        except SweepError as e:  # a spec that does not fit the input, an invalid graph
            self.problems.set_problems([str(e)])
            self.problems_dock.show()
            self.statusBar().showMessage(f"sweep not run: {e}", 10000)
            return None
        self._sweeps = getattr(self, "_sweeps", 0) + 1
        name = f"Sweep {self._sweeps}: " + " \u00d7 ".join(a.input for a in sweep.axes)
        titles = {nid: n.get("title") or nid for nid, n in self.doc.nodes.items()}
        number = self.runner.submit_sweep(sweep, name, tag={"sweep": name, "titles": titles})
        self.gallery.show_sweep(name)
        self.gallery_dock.show()
        self.gallery_dock.raise_()
        self.update_run_label()
        return number

    def on_sweep_event(self, number: int, ev: dict) -> None:
        """Jobs of a sweep, finished or found done, go to the gallery under the sweep's name."""
        job = self.runner.jobs.get(number)
        if job is None or job.sweep is None:
            return
        kind = ev["event"]
        if kind == "sweep_started":
            self.statusBar().showMessage(f"{job.label}: {ev['jobs']} job(s), {ev['skipped']} already done, "
                                         f"{ev['to_run']} to run in {ev['out']}", 10000)
            return
        records = ev["records"] if kind == "jobs_skipped" else [ev] if kind == "job_finished" else []
        for rec in records:
            if rec["status"] != "done":
                continue
            paths = [str(job.sweep.out_dir / f) for f in rec["files"] if f.lower().endswith(".png")]
            self.gallery.add_images(paths, number, caption(rec["values"], job.tag.get("titles", {})),
                                    job.tag["sweep"], rec["values"], rec["job"])
        if kind == "job_finished":
            self.statusBar().showMessage(f"{job.label}: job {ev['finished']}/{ev['to_run']} {ev['status']}", 5000)

    def cancel_run(self) -> None:
        """Cancel the running job (the queued ones go on; the queue panel cancels any one)."""
        if self.runner.cancel_current():
            self.statusBar().showMessage("cancelling\u2026", 3000)

    def cancel_all(self) -> None:
        if self.runner.busy or self.runner.pending():
            self.runner.cancel()
            self.statusBar().showMessage("cancelling all runs\u2026", 3000)

    def escape_pressed(self) -> bool:
        """Escape on the canvas: cancel the running job, asking first when it has run long."""
        job = self.runner.running_job
        if job is None:
            return False
        if job.elapsed() >= LONG_RUN_S and not self.ask_cancel_run(job):
            return False
        self.cancel_run()
        return True

    def stop_runs_question(self) -> str | None:
        """What closing the window now would stop, in words; None when nothing is running or
        queued."""
        job, queued = self.runner.running_job, self.runner.pending()
        if not self.runner.alive or (job is None and not queued):
            return None
        lines = []
        if job is not None:
            where = ""
            running = [i for i in self.scene.items_by_id.values() if i.state == "running"]
            if running:
                item = running[0]
                step = f", step {item.progress[0]}/{item.progress[1]}" if item.progress else ""
                where = f" (now at {item.title}{step})"
            lines.append(f"{job.label} has been running for {job.elapsed():.0f} s{where}.")
            if job.sweep is not None:
                lines.append("Closing stops it: the sweep job in progress is lost; the finished ones stay "
                             f"in {job.sweep.out_dir}, and running the same sweep again resumes.")
            else:
                lines.append("Closing stops it: the images it has not saved yet are lost (those already "
                             "saved stay in the output folder).")
        if queued:
            lines.append(f"{queued} queued run(s) will not run.")
        return "\n\n".join(lines)

    def confirm_stop_runs(self) -> bool:
        """Before the window closes: True when nothing runs or the user agrees to stop it."""
        question = self.stop_runs_question()
        return question is None or self.ask_stop_runs(question)

    def ask_stop_runs(self, question: str) -> bool:
        """Asked before closing the window stops a run (tests replace this)."""
        box = QMessageBox(QMessageBox.Warning, "A run is in progress", question, QMessageBox.NoButton, self)
        stop = box.addButton("Stop and close", QMessageBox.DestructiveRole)
        keep = box.addButton("Keep running", QMessageBox.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.exec()
        return box.clickedButton() is stop

    def ask_cancel_run(self, job) -> bool:
        """Asked before Escape cancels a long run (tests replace this)."""
        return QMessageBox.question(
            self, "Cancel the run?",
            f"{job.label} has been running for {job.elapsed():.0f} s. Cancel it?") == QMessageBox.Yes

    def apply_seed_control(self) -> None:
        """"control after generate": randomize / increment the seeds for the next run."""
        changes = []
        for nid, n in self.doc.nodes.items():
            ctrl = (n.get("ui") or {}).get("seed_control") or {}
            item = self.scene.items_by_id.get(nid)
            for name, mode in ctrl.items():
                # a seed never typed is at its default (not in the inputs): it changes too
                value = item.value_of(name) if item is not None else (n.get("inputs") or {}).get(name)
                if not isinstance(value, int) or isinstance(value, bool) or mode == "fixed":
                    continue
                new = random.randint(0, 2**32 - 1) if mode == "randomize" else (value + 1) % (SEED_MAX + 1)
                changes.append((nid, name, new))
        if not changes:
            return
        self.doc.undo_stack.beginMacro("Seed control after run")
        for nid, name, new in changes:
            self.doc.undo_stack.push(commands.set_value(self.doc, nid, name, new))
        self.doc.undo_stack.endMacro()

    # -- events ------------------------------------------------------------------------
    def on_run_started(self, number: int) -> None:
        for item in self.scene.items_by_id.values():
            item.set_state(None, reason="", error="", seconds=None)
        self.update_run_label()

    def on_run_event(self, kind: str, nid, data: dict) -> None:
        self.run_log.append((kind, nid))
        item = self.scene.items_by_id.get(nid) if nid is not None else None
        if item is None:
            return
        if kind == "node_started":
            item.set_state("running", reason=data.get("reason", ""), error="", eta=None,
                           started_at=time.monotonic())
            self.statusBar().showMessage(f"running {item.title}: {data.get('reason', '')}")
        elif kind == "node_progress":
            step, total = data.get("step", 0), data.get("total", 0)
            item.progress = (step, total)
            elapsed = time.monotonic() - (item.started_at or time.monotonic())
            item.eta = elapsed / step * (total - step) if step and total else None
            if data.get("preview") is not None:
                item.set_preview(data["preview"])
            item.update()
        elif kind == "node_cached":
            item.set_state("cached", reason="cached: its inputs did not change", shown_text=data.get("text") or [])
            self._show_images(item, data)
        elif kind == "node_finished":
            item.set_state("done", seconds=data.get("seconds"), reason=data.get("reason", item.reason),
                           shown_text=data.get("text") or [])
            self._show_images(item, data)
        elif kind == "node_failed":
            item.set_state("failed", error=data.get("error", ""))
        elif kind == "node_skipped":
            item.set_state("skipped", reason=data.get("reason", ""))

    def _show_images(self, item, data: dict) -> None:
        images = data.get("images") or []
        if not images:
            if item.preview is not None:
                item.set_preview(None)
            return
        self.node_images[item.nid] = (images, data.get("paths") or [])
        item.set_images(images)
        if self.viewer_node in (None, item.nid):
            self.show_in_viewer(item.nid)

    def show_in_viewer(self, nid: str) -> None:
        item = self.scene.items_by_id.get(nid)
        if nid in self.node_images:
            images, paths = self.node_images[nid]
        elif item is not None and item.source_image is not None:
            images, paths = [item.source_image], []
        else:
            return
        self.viewer_node = nid
        self.viewer.set_images(images, paths, item.title if item else nid)

    def on_run_finished(self, number: int, status: str, info: dict) -> None:
        self.last_status = status
        for item in self.scene.items_by_id.values():  # a node stopped mid-run keeps no badge
            if item.state == "running":
                item.set_state("cancelled" if status == "cancelled" else None)
        job = self.runner.jobs.get(number)
        if job is not None and job.sweep is not None:
            self._sweep_finished(job, info)
        elif job is not None and job.outputs:
            self.gallery.add_images(job.outputs, number, job.tag.get("caption", ""))
        failures = info.get("failures") or []
        if info.get("error"):
            failures = [info["error"]]
        if failures:
            self.problems.set_problems(failures)
            self.problems_dock.show()
        if job is None or job.sweep is None:
            ran, cached = len(info.get("executed", [])), len(info.get("cached", []))
            secs = info.get("seconds") or 0.0
            self.statusBar().showMessage(f"run {number} {status}: {ran} ran, {cached} cached, {secs:.2f}s", 15000)
        self.update_run_label()

    def _sweep_finished(self, job, info: dict) -> None:
        if info.get("grid"):
            self.gallery.set_sweep_grid(job.tag["sweep"], info["grid"], job.number)
        if "done" not in info:
            return
        text = (f"{job.label} {job.status}: {info['done']} done, {info['failed']} failed, {info['skipped']} already "
                f"done" + (f", {info['cancelled']} not run" if info["cancelled"] else "") + f"; {info['out']}")
        if (info["done"] or info["skipped"]) and not job.outputs:
            text += " (no image was saved: add a Save Image node to keep a sweep's images)"
        self.statusBar().showMessage(text, 20000)

    def update_run_label(self) -> None:
        busy, queued = self.runner.busy, self.runner.pending()
        text = "running" if busy else "idle"
        if queued:
            text += f", {queued} queued"
        self.run_label.setText(text)
        self.cancel_action.setEnabled(busy or bool(queued))
