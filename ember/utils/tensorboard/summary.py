"""Build TensorBoard ``Summary`` protocol buffers from ember tensors, arrays and numbers.

The layouts match ``torch.utils.tensorboard.summary`` so TensorBoard shows ember's
logs exactly like torch's: scalars as ``simple_value`` (or a ``scalars`` plugin
tensor), histograms with TensorFlow's default bucket edges, images as PNG.

>>> import ember
>>> from ember.utils.tensorboard.summary import scalar
>>> scalar("loss", ember.tensor(0.5)).value[0].simple_value
0.5
"""
from __future__ import annotations

import io
import json
import wave
from typing import Any, Sequence

import numpy as np
from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.pr_curve.plugin_data_pb2 import PrCurvePluginData
from tensorboard.plugins.text.plugin_data_pb2 import TextPluginData

from ember.tensor import Tensor

__all__ = ["audio", "compute_curve", "convert_to_HWC", "custom_scalars", "figure_to_image",
           "histogram", "histogram_raw", "hparams", "image", "image_boxes", "make_grid",
           "make_histogram", "make_image", "make_np", "mesh", "pr_curve", "pr_curve_raw",
           "scalar", "tensor_proto", "text"]


def make_np(x: Any) -> np.ndarray:
    """``x`` (ember tensor, NumPy array or Python/NumPy scalar) as a NumPy array.

    Scalars become 1-element arrays, as in torch; anything else is rejected.
    """
    if isinstance(x, np.ndarray):
        return x
    if np.isscalar(x):
        return np.array([x])
    if isinstance(x, Tensor):
        arr = x.detach().cpu().numpy()
        # NumPy has no native bfloat16 (ember's arrays use ml_dtypes'); torch widens
        # bfloat16 to float16 here, float32 holds every bfloat16 value exactly.
        if arr.dtype.name == "bfloat16":
            arr = arr.astype(np.float32)
        return arr
    raise NotImplementedError(
        f"Got {type(x)}, but numpy array or ember tensor are expected.")


# ----------------------------------------------------------------------- scalars
def scalar(name: str, tensor: Any, collections: Any = None, new_style: bool = False,
           double_precision: bool = False) -> Summary:
    """A summary holding one scalar (any value with exactly one element)."""
    arr = make_np(tensor).squeeze()
    if arr.ndim != 0:
        raise AssertionError(
            f"Tensor should contain one element (0 dimensions). "
            f"Was given size: {arr.size} and {arr.ndim} dimensions.")
    value = float(arr)
    if not new_style:
        return Summary(value=[Summary.Value(tag=name, simple_value=value)])
    if double_precision:
        proto = TensorProto(double_val=[value], dtype="DT_DOUBLE")
    else:
        proto = TensorProto(float_val=[value], dtype="DT_FLOAT")
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    return Summary(value=[Summary.Value(tag=name, tensor=proto, metadata=smd)])


# NumPy dtype kind/size -> (TensorProto dtype, value field). float16/bfloat16 go into
# half_val as their 16-bit patterns, which is what TensorBoard's make_ndarray reads.
_TENSOR_FIELDS = {
    "float16": ("DT_HALF", "half_val"), "bfloat16": ("DT_BFLOAT16", "half_val"),
    "float32": ("DT_FLOAT", "float_val"), "float64": ("DT_DOUBLE", "double_val"),
    "int8": ("DT_INT8", "int_val"), "uint8": ("DT_UINT8", "int_val"),
    "int16": ("DT_INT16", "int_val"), "int32": ("DT_INT32", "int_val"),
    "int64": ("DT_INT64", "int64_val"), "bool": ("DT_BOOL", "bool_val"),
    "complex64": ("DT_COMPLEX64", "scomplex_val"),
    "complex128": ("DT_COMPLEX128", "dcomplex_val"),
}


def tensor_proto(tag: str, tensor: Any) -> Summary:
    """A summary holding a whole tensor (plugin ``tensor``), as ``add_tensor`` writes."""
    if isinstance(tensor, Tensor):
        arr = tensor.detach().cpu().numpy()   # keeps bfloat16, unlike make_np
    else:
        arr = np.asarray(tensor)
    if arr.nbytes >= (1 << 31):
        raise ValueError("tensor is bigger than protocol buffer's hard limit of 2GB in size")
    if arr.dtype.name not in _TENSOR_FIELDS:
        raise ValueError(f"{tag} has unsupported tensor dtype {arr.dtype}")
    dtype, field = _TENSOR_FIELDS[arr.dtype.name]
    flat = arr.reshape(-1)
    if field == "half_val":
        values = flat.view(np.uint16).tolist()
    elif arr.dtype.kind == "c":
        values = np.stack([flat.real, flat.imag], axis=-1).reshape(-1).tolist()
    else:
        values = flat.tolist()
    proto = TensorProto(dtype=dtype, tensor_shape=TensorShapeProto(
        dim=[TensorShapeProto.Dim(size=s) for s in arr.shape]), **{field: values})
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="tensor"))
    return Summary(value=[Summary.Value(tag=tag, metadata=smd, tensor=proto)])


# -------------------------------------------------------------------- histograms
def histogram_raw(name: str, min: float, max: float, num: int, sum: float,
                  sum_squares: float, bucket_limits: Sequence[float],
                  bucket_counts: Sequence[float]) -> Summary:
    """A histogram summary from precomputed statistics and buckets."""
    hist = HistogramProto(min=min, max=max, num=num, sum=sum, sum_squares=sum_squares,
                          bucket_limit=bucket_limits, bucket=bucket_counts)
    return Summary(value=[Summary.Value(tag=name, histo=hist)])


def histogram(name: str, values: Any, bins: Any, max_bins: int | None = None) -> Summary:
    """A histogram summary of ``values`` binned by ``np.histogram(values, bins)``."""
    hist = make_histogram(make_np(values).astype(float), bins, max_bins)
    return Summary(value=[Summary.Value(tag=name, histo=hist)])


def make_histogram(values: np.ndarray, bins: Any, max_bins: int | None = None
                   ) -> HistogramProto:
    """``values`` as a ``HistogramProto``, trimmed to the buckets that hold data."""
    if values.size == 0:
        raise ValueError("The input has no element.")
    values = values.reshape(-1)
    counts, limits = np.histogram(values, bins=bins)
    num_bins = len(counts)
    if max_bins is not None and num_bins > max_bins:
        # Merge runs of `subsampling` neighbouring buckets (zero-padding the last run).
        subsampling = num_bins // max_bins
        remainder = num_bins % subsampling
        if remainder != 0:
            counts = np.pad(counts, pad_width=[[0, subsampling - remainder]],
                            mode="constant", constant_values=0)
        counts = counts.reshape(-1, subsampling).sum(axis=-1)
        new_limits = np.empty((counts.size + 1,), limits.dtype)
        new_limits[:-1] = limits[:-1:subsampling]
        new_limits[-1] = limits[-1]
        limits = new_limits

    # Keep only the span of non-empty buckets. TensorBoard stores right edges only,
    # so one (empty) bucket is kept on the left to carry the leftmost edge.
    cum_counts = np.cumsum(np.greater(counts, 0))
    start, end = np.searchsorted(cum_counts, [0, cum_counts[-1] - 1], side="right")
    start, end = int(start), int(end) + 1
    counts = counts[start - 1:end] if start > 0 else np.concatenate([[0], counts[:end]])
    limits = limits[start:end + 1]
    if counts.size == 0 or limits.size == 0:
        raise ValueError("The histogram is empty, please file a bug report.")
    return HistogramProto(min=values.min(), max=values.max(), num=len(values),
                          sum=values.sum(), sum_squares=values.dot(values),
                          bucket_limit=limits.tolist(), bucket=counts.tolist())


# ------------------------------------------------------------------------ images
def make_grid(images: np.ndarray, ncols: int = 8) -> np.ndarray:
    """Tile an ``N1HW``/``N3HW`` batch into one ``3HW`` image, ``ncols`` per row."""
    if not isinstance(images, np.ndarray):
        raise AssertionError("plugin error, should pass numpy array here")
    if images.shape[1] == 1:
        images = np.concatenate([images, images, images], 1)
    if images.ndim != 4 or images.shape[1] != 3:
        raise AssertionError("Input should be a 4D numpy array with 3 channels")
    n, _, h, w = images.shape
    ncols = min(n, ncols)
    nrows = int(np.ceil(float(n) / ncols))
    canvas = np.zeros((3, h * nrows, w * ncols), dtype=images.dtype)
    for i in range(n):
        y, x = divmod(i, ncols)
        canvas[:, y * h:(y + 1) * h, x * w:(x + 1) * w] = images[i]
    return canvas


def convert_to_HWC(tensor: np.ndarray, input_format: str) -> np.ndarray:  # noqa: N802
    """An image array laid out as ``input_format`` (``NCHW``, ``CHW``, ``HW``...) as HWC."""
    if len(set(input_format)) != len(input_format):
        raise AssertionError(f"You can not use the same dimension shorthand twice. "
                             f"input_format: {input_format}")
    if len(tensor.shape) != len(input_format):
        raise AssertionError(f"size of input tensor and input format are different. "
                             f"tensor shape: {tensor.shape}, input_format: {input_format}")
    input_format = input_format.upper()
    if len(input_format) == 4:
        nchw = tensor.transpose([input_format.find(c) for c in "NCHW"])
        return make_grid(nchw).transpose(1, 2, 0)
    if len(input_format) == 3:
        hwc = tensor.transpose([input_format.find(c) for c in "HWC"])
        if hwc.shape[2] == 1:
            hwc = np.concatenate([hwc, hwc, hwc], 2)
        return hwc
    hw = tensor.transpose([input_format.find(c) for c in "HW"])
    return np.stack([hw, hw, hw], 2)


def _pil_image():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("Writing images to TensorBoard requires the pillow package "
                          "(pip install pillow).") from e
    return Image


def _to_uint8(hwc: np.ndarray) -> np.ndarray:
    # uint8 images are taken as 0..255, anything else as 0..1 (torch's rule).
    scale = 1 if hwc.dtype == np.uint8 else 255
    return (hwc.astype(np.float32) * scale).clip(0, 255).astype(np.uint8)


def _draw_boxes(img: Any, boxes: np.ndarray, labels: Sequence[str] | None) -> Any:
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    for i in range(boxes.shape[0]):
        left, top, right, bottom = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        draw.line([(left, top), (left, bottom), (right, bottom), (right, top), (left, top)],
                  width=2, fill="Red")
        label = None if labels is None else labels[i]
        if label:
            x0, y0, x1, y1 = font.getbbox(label)
            text_w, text_h = x1 - x0, y1 - y0
            margin = np.ceil(0.05 * text_h)
            draw.rectangle([(left, bottom - text_h - 2 * margin), (left + text_w, bottom)],
                           fill="Red")
            draw.text((left + margin, bottom - text_h - margin), label, fill="black",
                      font=font)
    return img


def make_image(tensor: np.ndarray, rescale: float = 1, rois: np.ndarray | None = None,
               labels: Sequence[str] | None = None) -> Summary.Image:
    """A uint8 HWC array as a PNG ``Summary.Image`` (boxes drawn when ``rois`` given)."""
    image_cls = _pil_image()
    height, width, channel = tensor.shape
    img = image_cls.fromarray(tensor)
    if rois is not None:
        img = _draw_boxes(img, rois, labels)
    scaled = (int(width * rescale), int(height * rescale))
    if scaled != img.size:   # PIL's resize to the same size is a copy
        img = img.resize(scaled, image_cls.Resampling.LANCZOS)
    with io.BytesIO() as out:
        img.save(out, format="PNG")
        encoded = out.getvalue()
    # torch records the size before `rescale`; so do we.
    return Summary.Image(height=height, width=width, colorspace=channel,
                         encoded_image_string=encoded)


def image(tag: str, tensor: Any, rescale: float = 1, dataformats: str = "NCHW") -> Summary:
    """An image summary; float images are in [0, 1], uint8 images in [0, 255]."""
    hwc = convert_to_HWC(make_np(tensor), dataformats)
    return Summary(value=[Summary.Value(tag=tag, image=make_image(_to_uint8(hwc), rescale))])


def image_boxes(tag: str, tensor_image: Any, tensor_boxes: Any, rescale: float = 1,
                dataformats: str = "CHW", labels: Sequence[str] | None = None) -> Summary:
    """An image summary with ``[x1, y1, x2, y2]`` boxes drawn in red."""
    hwc = convert_to_HWC(make_np(tensor_image), dataformats)
    img = make_image(_to_uint8(hwc), rescale=rescale, rois=make_np(tensor_boxes),
                     labels=labels)
    return Summary(value=[Summary.Value(tag=tag, image=img)])


def figure_to_image(figures: Any, close: bool = True) -> np.ndarray:
    """Render a matplotlib figure (CHW uint8) or a list of figures (NCHW)."""
    import matplotlib.backends.backend_agg as backend_agg
    import matplotlib.pyplot as plt

    def render(figure: Any) -> np.ndarray:
        canvas = backend_agg.FigureCanvasAgg(figure)
        canvas.draw()
        data = np.frombuffer(canvas.buffer_rgba(), dtype=np.uint8)
        w, h = figure.canvas.get_width_height()
        chw = np.moveaxis(data.reshape([h, w, 4])[:, :, :3], 2, 0)
        if close:
            plt.close(figure)
        return chw

    if isinstance(figures, list):
        return np.stack([render(f) for f in figures])
    return render(figures)


# ---------------------------------------------------------------- text and audio
def text(tag: str, text: str) -> Summary:
    """A text summary (tag ``<tag>/text_summary``, markdown rendered by TensorBoard)."""
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name="text", content=TextPluginData(version=0).SerializeToString()))
    proto = TensorProto(dtype="DT_STRING", string_val=[text.encode(encoding="utf_8")],
                        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    return Summary(value=[Summary.Value(tag=tag + "/text_summary", metadata=smd,
                                        tensor=proto)])


def audio(tag: str, tensor: Any, sample_rate: int = 44100) -> Summary:
    """A mono 16-bit WAV summary of samples in [-1, 1] (clipped beyond)."""
    array = make_np(tensor).squeeze()
    if abs(array).max() > 1:
        print("warning: audio amplitude out of range, auto clipped.")
        array = array.clip(-1, 1)
    if array.ndim != 1:
        raise AssertionError("input tensor should be 1 dimensional.")
    array = (array * np.iinfo(np.int16).max).astype("<i2")
    with io.BytesIO() as fio:
        with wave.open(fio, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(array.data)
        encoded = fio.getvalue()
    snd = Summary.Audio(sample_rate=sample_rate, num_channels=1,
                        length_frames=array.shape[-1], encoded_audio_string=encoded,
                        content_type="audio/wav")
    return Summary(value=[Summary.Value(tag=tag, audio=snd)])


# ----------------------------------------------------------------------- hparams
def _discrete(values: list, field: str) -> struct_pb2.ListValue:
    return struct_pb2.ListValue(values=[struct_pb2.Value(**{field: d}) for d in values])


def hparams(hparam_dict: dict, metric_dict: dict,
            hparam_domain_discrete: dict[str, list] | None = None
            ) -> tuple[Summary, Summary, Summary]:
    """The experiment, session-start and session-end summaries of the hparams plugin."""
    from tensorboard.plugins.hparams.api_pb2 import (DataType, Experiment, HParamInfo,
                                                     MetricInfo, MetricName, Status)
    from tensorboard.plugins.hparams.metadata import (EXPERIMENT_TAG, PLUGIN_DATA_VERSION,
                                                      PLUGIN_NAME, SESSION_END_INFO_TAG,
                                                      SESSION_START_INFO_TAG)
    from tensorboard.plugins.hparams.plugin_data_pb2 import (HParamsPluginData,
                                                             SessionEndInfo,
                                                             SessionStartInfo)

    if not isinstance(hparam_dict, dict):
        raise TypeError("parameter: hparam_dict should be a dictionary, nothing logged.")
    if not isinstance(metric_dict, dict):
        raise TypeError("parameter: metric_dict should be a dictionary, nothing logged.")
    hparam_domain_discrete = hparam_domain_discrete or {}
    if not isinstance(hparam_domain_discrete, dict):
        raise TypeError(
            "parameter: hparam_domain_discrete should be a dictionary, nothing logged.")
    for k, v in hparam_domain_discrete.items():
        if (k not in hparam_dict or not isinstance(v, list)
                or not all(isinstance(d, type(hparam_dict[k])) for d in v)):
            raise TypeError(f"parameter: hparam_domain_discrete[{k}] should be a list of "
                            f"same type as hparam_dict[{k}].")

    def plugin_summary(tag: str, **content: Any) -> Summary:
        data = HParamsPluginData(version=PLUGIN_DATA_VERSION, **content)
        smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=data.SerializeToString()))
        return Summary(value=[Summary.Value(tag=tag, metadata=smd)])

    hps = []
    ssi = SessionStartInfo()
    for k, v in hparam_dict.items():
        if v is None:
            continue
        domain = hparam_domain_discrete.get(k)
        has_domain = k in hparam_domain_discrete
        # Checked in torch's order: bool is an int, so True/False are logged as numbers.
        if isinstance(v, (int, float)):
            ssi.hparams[k].number_value = v
            kind = "DATA_TYPE_FLOAT64"
            disc = _discrete(domain, "number_value") if has_domain else None
        elif isinstance(v, str):
            ssi.hparams[k].string_value = v
            kind = "DATA_TYPE_STRING"
            disc = _discrete(domain, "string_value") if has_domain else None
        elif isinstance(v, Tensor):
            ssi.hparams[k].number_value = make_np(v).reshape(-1)[0]
            kind, disc = "DATA_TYPE_FLOAT64", None
        else:
            raise ValueError("value should be one of int, float, str, bool, or torch.Tensor")
        hps.append(HParamInfo(name=k, type=DataType.Value(kind), domain_discrete=disc))

    mts = [MetricInfo(name=MetricName(tag=k)) for k in metric_dict]
    exp = plugin_summary(EXPERIMENT_TAG,
                         experiment=Experiment(hparam_infos=hps, metric_infos=mts))
    start = plugin_summary(SESSION_START_INFO_TAG, session_start_info=ssi)
    end = plugin_summary(SESSION_END_INFO_TAG, session_end_info=SessionEndInfo(
        status=Status.Value("STATUS_SUCCESS")))
    return exp, start, end


# -------------------------------------------------------------------- pr curves
def _pr_summary(tag: str, data: np.ndarray, num_thresholds: int) -> Summary:
    content = PrCurvePluginData(version=0, num_thresholds=num_thresholds).SerializeToString()
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="pr_curves",
                                                                 content=content))
    proto = TensorProto(dtype="DT_FLOAT", float_val=data.reshape(-1).tolist(),
                        tensor_shape=TensorShapeProto(dim=[
                            TensorShapeProto.Dim(size=data.shape[0]),
                            TensorShapeProto.Dim(size=data.shape[1])]))
    return Summary(value=[Summary.Value(tag=tag, metadata=smd, tensor=proto)])


def pr_curve_raw(tag: str, tp: Any, fp: Any, tn: Any, fn: Any, precision: Any,
                 recall: Any, num_thresholds: int = 127, weights: Any = None) -> Summary:
    """A precision-recall curve summary from precomputed counts."""
    data = np.stack([make_np(a) for a in (tp, fp, tn, fn, precision, recall)])
    # More than 127 thresholds breaks TensorBoard's pr_curves plugin (torch caps it too).
    return _pr_summary(tag, data, min(num_thresholds, 127))


def compute_curve(labels: np.ndarray, predictions: np.ndarray, num_thresholds: int,
                  weights: Any = None) -> np.ndarray:
    """``[tp, fp, tn, fn, precision, recall]`` at ``num_thresholds`` thresholds."""
    minimum_count = 1e-7
    if weights is None:
        weights = 1.0
    bucket_indices = np.int32(np.floor(predictions * (num_thresholds - 1)))
    float_labels = labels.astype(np.float64)
    hist_range = (0, num_thresholds - 1)
    tp_buckets, _ = np.histogram(bucket_indices, bins=num_thresholds, range=hist_range,
                                 weights=float_labels * weights)
    fp_buckets, _ = np.histogram(bucket_indices, bins=num_thresholds, range=hist_range,
                                 weights=(1.0 - float_labels) * weights)
    tp = np.cumsum(tp_buckets[::-1])[::-1]
    fp = np.cumsum(fp_buckets[::-1])[::-1]
    tn = fp[0] - fp
    fn = tp[0] - tp
    precision = tp / np.maximum(minimum_count, tp + fp)
    recall = tp / np.maximum(minimum_count, tp + fn)
    return np.stack((tp, fp, tn, fn, precision, recall))


def pr_curve(tag: str, labels: Any, predictions: Any, num_thresholds: int = 127,
             weights: Any = None) -> Summary:
    """A precision-recall curve summary of binary ``labels`` vs ``predictions``."""
    num_thresholds = min(num_thresholds, 127)
    data = compute_curve(make_np(labels), make_np(predictions), num_thresholds, weights)
    return _pr_summary(tag, data, num_thresholds)


# ------------------------------------------------------------ custom scalars, mesh
def custom_scalars(layout: dict) -> Summary:
    """The layout summary of the custom_scalars plugin (see ``add_custom_scalars``)."""
    categories = []
    for category, charts_spec in layout.items():
        charts = []
        for title, (kind, tags) in charts_spec.items():
            if kind == "Margin":
                if len(tags) != 3:
                    raise AssertionError("len(tags) != 3")
                content = layout_pb2.MarginChartContent(series=[
                    layout_pb2.MarginChartContent.Series(value=tags[0], lower=tags[1],
                                                         upper=tags[2])])
                charts.append(layout_pb2.Chart(title=title, margin=content))
            else:
                charts.append(layout_pb2.Chart(
                    title=title, multiline=layout_pb2.MultilineChartContent(tag=tags)))
        categories.append(layout_pb2.Category(title=category, chart=charts))
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars"))
    proto = TensorProto(dtype="DT_STRING",
                        string_val=[layout_pb2.Layout(category=categories).SerializeToString()],
                        tensor_shape=TensorShapeProto())
    return Summary(value=[Summary.Value(tag="custom_scalars__config__", tensor=proto,
                                        metadata=smd)])


def mesh(tag: str, vertices: Any, colors: Any, faces: Any, config_dict: dict | None,
         display_name: str | None = None, description: str | None = None) -> Summary:
    """A mesh / point-cloud summary; each given part is a ``[B, N, 3]`` array."""
    from tensorboard.plugins.mesh import metadata
    from tensorboard.plugins.mesh.plugin_data_pb2 import MeshPluginData

    json_config = "{}" if config_dict is None else json.dumps(config_dict, sort_keys=True)
    parts = [(make_np(t), kind) for t, kind in ((vertices, MeshPluginData.VERTEX),
                                                 (faces, MeshPluginData.FACE),
                                                 (colors, MeshPluginData.COLOR))
             if t is not None]
    components = metadata.get_components_bitmask([kind for _, kind in parts])
    values = []
    for arr, kind in parts:
        smd = metadata.create_summary_metadata(tag, display_name, kind, components,
                                               arr.shape, description,
                                               json_config=json_config)
        proto = TensorProto(dtype="DT_FLOAT", float_val=arr.reshape(-1).tolist(),
                            tensor_shape=TensorShapeProto(
                                dim=[TensorShapeProto.Dim(size=s) for s in arr.shape[:3]]))
        values.append(Summary.Value(tag=metadata.get_instance_name(tag, kind),
                                    tensor=proto, metadata=smd))
    return Summary(value=values)
