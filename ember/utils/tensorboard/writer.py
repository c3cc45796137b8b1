"""``SummaryWriter``: write TensorBoard event files (``torch.utils.tensorboard.writer``).

Events go through TensorBoard's own ``EventFileWriter`` (a background thread that
flushes every ``flush_secs`` or ``max_queue`` events), the same writer torch uses,
so files are interchangeable with torch's.

>>> import ember
>>> from ember.utils.tensorboard import SummaryWriter
>>> with SummaryWriter("runs/demo") as writer:
...     for step in range(3):
...         writer.add_scalar("loss", ember.tensor(1.0 / (step + 1)), step)
"""
from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from typing import Any, Sequence

import numpy as np
from tensorboard.compat import tf
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from ember.utils.tensorboard import summary as _summary
from ember.utils.tensorboard.summary import make_grid, make_np

__all__ = ["FileWriter", "SummaryWriter"]


def _default_bins() -> list[float]:
    # TensorFlow's default histogram edges: +-1e-12 * 1.1**k up to 1e20, and 0.
    v, buckets = 1e-12, []
    while v < 1e20:
        buckets.append(v)
        v *= 1.1
    return [-b for b in reversed(buckets)] + [0] + buckets


_DEFAULT_BINS = _default_bins()


class FileWriter:
    """Writes ``Event`` protos to one event file in ``log_dir`` (asynchronously)."""

    def __init__(self, log_dir: str | os.PathLike, max_queue: int = 10,
                 flush_secs: int = 120, filename_suffix: str = "") -> None:
        self.event_writer = EventFileWriter(str(log_dir), max_queue, flush_secs,
                                            filename_suffix)

    def get_logdir(self) -> str:
        """The directory this writer's event file is in."""
        return self.event_writer.get_logdir()

    def add_event(self, event: Event, step: int | None = None,
                  walltime: float | None = None) -> None:
        """Stamp ``event`` with ``walltime`` (default now) and ``step``, and queue it."""
        event.wall_time = time.time() if walltime is None else walltime
        if step is not None:
            # Steps may be NumPy or ember integers; protobuf wants a Python int.
            event.step = int(step)
        self.event_writer.add_event(event)

    def add_summary(self, summary: Any, global_step: int | None = None,
                    walltime: float | None = None) -> None:
        """Wrap a ``Summary`` proto in an ``Event`` and queue it."""
        self.add_event(event_pb2.Event(summary=summary), global_step, walltime)

    def flush(self) -> None:
        """Write all queued events to disk."""
        self.event_writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.event_writer.close()

    def reopen(self) -> None:
        """After ``close()``, continue in a new event file in the same directory."""
        self.event_writer.reopen()


class SummaryWriter:
    """Log scalars, histograms, images, text... to ``log_dir`` for TensorBoard.

    ``log_dir`` defaults to ``runs/<Mon>DD_HH-MM-SS_<hostname><comment>``. With
    ``purge_step=T``, TensorBoard hides events of an earlier run at steps >= ``T``
    (for resuming a crashed run in the same ``log_dir``).
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, comment: str = "",
                 purge_step: int | None = None, max_queue: int = 10,
                 flush_secs: int = 120, filename_suffix: str = "") -> None:
        if not log_dir:
            current_time = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs",
                                   current_time + "_" + socket.gethostname() + comment)
        self.log_dir = log_dir
        self.purge_step = purge_step
        self.max_queue = max_queue
        self.flush_secs = flush_secs
        self.filename_suffix = filename_suffix
        self.default_bins = _DEFAULT_BINS
        # Writers are created lazily again after close(), as in torch.
        self.file_writer: FileWriter | None = None
        self.all_writers: dict[str, FileWriter] | None = None
        self._get_file_writer()

    def _get_file_writer(self) -> FileWriter:
        if self.all_writers is None or self.file_writer is None:
            self.file_writer = FileWriter(self.log_dir, self.max_queue, self.flush_secs,
                                          self.filename_suffix)
            self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
            if self.purge_step is not None:
                # A file_version event and a START session log at the purge step are
                # what TensorBoard reads as "discard later steps of older files".
                step = self.purge_step
                self.file_writer.add_event(Event(step=step, file_version="brain.Event:2"))
                self.file_writer.add_event(
                    Event(step=step, session_log=SessionLog(status=SessionLog.START)))
                self.purge_step = None
        return self.file_writer

    def get_logdir(self) -> str | os.PathLike:
        """The directory event files are written to."""
        return self.log_dir

    # ---------------------------------------------------------------- scalars
    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None,
                   walltime: float | None = None, new_style: bool = False,
                   double_precision: bool = False) -> None:
        """Log one number (a Python/NumPy number or a 1-element tensor)."""
        summ = _summary.scalar(tag, scalar_value, new_style=new_style,
                               double_precision=double_precision)
        self._get_file_writer().add_summary(summ, global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict[str, Any],
                    global_step: int | None = None, walltime: float | None = None) -> None:
        """Log several numbers in one chart: one run ``<log_dir>/<main_tag>_<tag>`` each."""
        walltime = time.time() if walltime is None else walltime
        fw_logdir = self._get_file_writer().get_logdir()
        assert self.all_writers is not None
        for tag, scalar_value in tag_scalar_dict.items():
            fw_tag = fw_logdir + "/" + main_tag.replace("/", "_") + "_" + tag
            fw = self.all_writers.get(fw_tag)
            if fw is None:
                fw = FileWriter(fw_tag, self.max_queue, self.flush_secs, self.filename_suffix)
                self.all_writers[fw_tag] = fw
            fw.add_summary(_summary.scalar(main_tag, scalar_value), global_step, walltime)

    def add_tensor(self, tag: str, tensor: Any, global_step: int | None = None,
                   walltime: float | None = None) -> None:
        """Log a whole tensor (TensorBoard's ``tensor`` plugin data)."""
        self._get_file_writer().add_summary(_summary.tensor_proto(tag, tensor),
                                            global_step, walltime)

    # ------------------------------------------------------------- histograms
    def add_histogram(self, tag: str, values: Any, global_step: int | None = None,
                      bins: Any = "tensorflow", walltime: float | None = None,
                      max_bins: int | None = None) -> None:
        """Log a histogram; ``bins`` is TensorFlow's default edges or any ``np.histogram`` bins."""
        if isinstance(bins, str) and bins == "tensorflow":
            bins = self.default_bins
        self._get_file_writer().add_summary(
            _summary.histogram(tag, values, bins, max_bins=max_bins), global_step, walltime)

    def add_histogram_raw(self, tag: str, min: float, max: float, num: int, sum: float,
                          sum_squares: float, bucket_limits: Sequence[float],
                          bucket_counts: Sequence[float], global_step: int | None = None,
                          walltime: float | None = None) -> None:
        """Log a histogram from precomputed statistics (right bucket edges and counts)."""
        if len(bucket_limits) != len(bucket_counts):
            raise ValueError("len(bucket_limits) != len(bucket_counts), see the document.")
        self._get_file_writer().add_summary(
            _summary.histogram_raw(tag, min, max, num, sum, sum_squares, bucket_limits,
                                   bucket_counts), global_step, walltime)

    # ----------------------------------------------------------------- images
    def add_image(self, tag: str, img_tensor: Any, global_step: int | None = None,
                  walltime: float | None = None, dataformats: str = "CHW") -> None:
        """Log an image (float in [0, 1] or uint8); needs pillow."""
        self._get_file_writer().add_summary(
            _summary.image(tag, img_tensor, dataformats=dataformats), global_step, walltime)

    def add_images(self, tag: str, img_tensor: Any, global_step: int | None = None,
                   walltime: float | None = None, dataformats: str = "NCHW") -> None:
        """Log a batch of images tiled into one grid (8 per row); needs pillow."""
        self._get_file_writer().add_summary(
            _summary.image(tag, img_tensor, dataformats=dataformats), global_step, walltime)

    def add_image_with_boxes(self, tag: str, img_tensor: Any, box_tensor: Any,
                             global_step: int | None = None, walltime: float | None = None,
                             rescale: float = 1, dataformats: str = "CHW",
                             labels: Sequence[str] | str | None = None) -> None:
        """Log an image with ``[x1, y1, x2, y2]`` boxes (and optional labels) drawn."""
        if labels is not None:
            if isinstance(labels, str):
                labels = [labels]
            if len(labels) != box_tensor.shape[0]:
                labels = None   # torch silently drops mismatched labels
        self._get_file_writer().add_summary(
            _summary.image_boxes(tag, img_tensor, box_tensor, rescale=rescale,
                                 dataformats=dataformats, labels=labels),
            global_step, walltime)

    def add_figure(self, tag: str, figure: Any, global_step: int | None = None,
                   close: bool = True, walltime: float | None = None) -> None:
        """Render a matplotlib figure (or a list of them) and log it as an image."""
        fmt = "NCHW" if isinstance(figure, list) else "CHW"
        self.add_image(tag, _summary.figure_to_image(figure, close), global_step,
                       walltime, dataformats=fmt)

    # ----------------------------------------------------------- text, audio
    def add_text(self, tag: str, text_string: str, global_step: int | None = None,
                 walltime: float | None = None) -> None:
        """Log a (markdown) string."""
        self._get_file_writer().add_summary(_summary.text(tag, text_string), global_step,
                                            walltime)

    def add_audio(self, tag: str, snd_tensor: Any, global_step: int | None = None,
                  sample_rate: int = 44100, walltime: float | None = None) -> None:
        """Log mono audio, samples in [-1, 1] of shape ``(1, L)`` or ``(L,)``."""
        self._get_file_writer().add_summary(
            _summary.audio(tag, snd_tensor, sample_rate=sample_rate), global_step, walltime)

    # ---------------------------------------------------------------- hparams
    def add_hparams(self, hparam_dict: dict, metric_dict: dict,
                    hparam_domain_discrete: dict[str, list] | None = None,
                    run_name: str | None = None, global_step: int | None = None) -> None:
        """Log one hyperparameter set and its metrics as a run under ``log_dir/run_name``."""
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        exp, ssi, sei = _summary.hparams(hparam_dict, metric_dict, hparam_domain_discrete)
        if not run_name:
            run_name = str(time.time())
        logdir = os.path.join(self._get_file_writer().get_logdir(), run_name)
        with SummaryWriter(log_dir=logdir) as w_hp:
            for summ in (exp, ssi, sei):
                w_hp._get_file_writer().add_summary(summ, global_step)
            for k, v in metric_dict.items():
                w_hp.add_scalar(k, v, global_step)

    # -------------------------------------------------------------- pr curves
    def add_pr_curve(self, tag: str, labels: Any, predictions: Any,
                     global_step: int | None = None, num_thresholds: int = 127,
                     weights: Any = None, walltime: float | None = None) -> None:
        """Log a precision-recall curve of binary ``labels`` vs ``predictions`` in [0, 1]."""
        self._get_file_writer().add_summary(
            _summary.pr_curve(tag, make_np(labels), make_np(predictions), num_thresholds,
                              weights), global_step, walltime)

    def add_pr_curve_raw(self, tag: str, true_positive_counts: Any,
                         false_positive_counts: Any, true_negative_counts: Any,
                         false_negative_counts: Any, precision: Any, recall: Any,
                         global_step: int | None = None, num_thresholds: int = 127,
                         weights: Any = None, walltime: float | None = None) -> None:
        """Log a precision-recall curve from precomputed counts."""
        self._get_file_writer().add_summary(
            _summary.pr_curve_raw(tag, true_positive_counts, false_positive_counts,
                                  true_negative_counts, false_negative_counts, precision,
                                  recall, num_thresholds, weights), global_step, walltime)

    # --------------------------------------------------------- custom scalars
    def add_custom_scalars(self, layout: dict) -> None:
        """Define charts grouping scalar tags: ``{category: {title: [kind, tags]}}``."""
        self._get_file_writer().add_summary(_summary.custom_scalars(layout))

    def add_custom_scalars_multilinechart(self, tags: list[str], category: str = "default",
                                          title: str = "untitled") -> None:
        """One chart with a line per tag."""
        self.add_custom_scalars({category: {title: ["Multiline", tags]}})

    def add_custom_scalars_marginchart(self, tags: list[str], category: str = "default",
                                       title: str = "untitled") -> None:
        """One chart of ``[value, lower, upper]`` tags drawn as a band."""
        if len(tags) != 3:
            raise AssertionError(f"Expected 3 tags, got {len(tags)}.")
        self.add_custom_scalars({category: {title: ["Margin", tags]}})

    def add_mesh(self, tag: str, vertices: Any, colors: Any = None, faces: Any = None,
                 config_dict: dict | None = None, global_step: int | None = None,
                 walltime: float | None = None) -> None:
        """Log a 3-D mesh or point cloud (``[B, N, 3]`` vertices, colors, faces)."""
        self._get_file_writer().add_summary(
            _summary.mesh(tag, vertices, colors, faces, config_dict), global_step, walltime)

    # -------------------------------------------------------------- embedding
    @staticmethod
    def _encode(rawstr: str) -> str:
        # Tags become directory names: escape '%', '/' and '\'.
        return rawstr.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")

    def add_embedding(self, mat: Any, metadata: list | None = None, label_img: Any = None,
                      global_step: int | None = None, tag: str = "default",
                      metadata_header: list | None = None) -> None:
        """Save an ``(N, D)`` embedding (with labels / sprite images) for the projector."""
        from google.protobuf import text_format
        from tensorboard.plugins.projector.projector_config_pb2 import (EmbeddingInfo,
                                                                        ProjectorConfig)

        mat = make_np(mat)
        if global_step is None:
            global_step = 0
        subdir = f"{str(global_step).zfill(5)}/{self._encode(tag)}"
        logdir = self._get_file_writer().get_logdir()
        save_path = os.path.join(logdir, subdir)
        fs = tf.io.gfile
        if fs.exists(save_path):
            if not fs.isdir(save_path):
                raise NotADirectoryError(
                    f"Path: `{save_path}` exists, but is a file. Cannot proceed.")
            print("warning: Embedding dir exists, did you set global_step for add_embedding()?")
        else:
            fs.makedirs(save_path)

        def write(name: str, data: bytes, where: str = save_path) -> None:
            with fs.GFile(os.path.join(where, name), "wb") as f:
                f.write(data)

        if metadata is not None:
            if mat.shape[0] != len(metadata):
                raise AssertionError("#labels should equal with #data points")
            if not metadata_header:
                lines = [str(x) for x in metadata]
            else:
                if len(metadata_header) != len(metadata[0]):
                    raise AssertionError(
                        "len of header must be equal to the number of columns in metadata")
                lines = ["\t".join(str(e) for e in row)
                         for row in [metadata_header] + list(metadata)]
            write("metadata.tsv", ("\n".join(lines) + "\n").encode())
        if label_img is not None:
            label_np = make_np(label_img)
            if mat.shape[0] != label_np.shape[0]:
                raise AssertionError("#images should equal with #data points")
            write("sprite.png", self._sprite(label_np))
        if mat.ndim != 2:
            raise AssertionError(
                "mat should be 2D, where mat.size(0) is the number of data points")
        write("tensors.tsv", "".join(
            "\t".join(str(v.item()) for v in row) + "\n" for row in mat).encode())

        # The projector config lists every embedding so far; rewrite it whole.
        if not hasattr(self, "_projector_config"):
            self._projector_config = ProjectorConfig()
        info = EmbeddingInfo(tensor_name=f"{tag}:{str(global_step).zfill(5)}",
                             tensor_path=os.path.join(subdir, "tensors.tsv"))
        if metadata is not None:
            info.metadata_path = os.path.join(subdir, "metadata.tsv")
        if label_img is not None:
            info.sprite.image_path = os.path.join(subdir, "sprite.png")
            info.sprite.single_image_dim.extend([label_np.shape[3], label_np.shape[2]])
        self._projector_config.embeddings.extend([info])
        write("projector_config.pbtxt",
              text_format.MessageToString(self._projector_config).encode(), logdir)

    @staticmethod
    def _sprite(label_img: np.ndarray) -> bytes:
        # A square grid of the N label images (NCHW, values in [0, 1]) as PNG.
        import io
        import math

        image_cls = _summary._pil_image()
        nrow = math.ceil(label_img.shape[0] ** 0.5)
        grid = make_grid(label_img, ncols=nrow)
        square = np.zeros((grid.shape[2], grid.shape[2], 3))
        hwc = grid.transpose(1, 2, 0)
        square[:hwc.shape[0], :, :] = hwc
        with io.BytesIO() as buf:
            image_cls.fromarray(np.uint8((square * 255).clip(0, 255))).save(buf, format="PNG")
            return buf.getvalue()

    # ------------------------------------------------------------- lifecycle
    def flush(self) -> None:
        """Write everything queued in all of this writer's event files to disk."""
        if self.all_writers is None:
            return
        for writer in self.all_writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close all event files; later ``add_*`` calls open new ones."""
        if self.all_writers is None:
            return  # a second close is a no-op
        for writer in self.all_writers.values():
            writer.flush()
            writer.close()
        self.file_writer = self.all_writers = None

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()
