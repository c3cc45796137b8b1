"""ember.utils.tensorboard against torch.utils.tensorboard: same calls, same event data."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorboard")
torch = pytest.importorskip("torch")

# Imported after the skips above, as they need tensorboard.
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader  # noqa
from tensorboard.compat.proto.event_pb2 import Event  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

import ember  # noqa: E402
from ember.utils.tensorboard import SummaryWriter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RNG = np.random.default_rng(0)
X = _RNG.standard_normal(1000).astype(np.float32)
IMG = _RNG.random((3, 8, 10)).astype(np.float32)
IMGS = _RNG.random((5, 3, 4, 6)).astype(np.float32)
EMB = _RNG.standard_normal((4, 3)).astype(np.float32)
LABEL_IMG = _RNG.random((4, 3, 5, 5)).astype(np.float32)
MESH = _RNG.random((1, 4, 3)).astype(np.float32)
SOUND = np.sin(np.linspace(0, 20, 800)).astype(np.float32)[None]


def _log_everything(writer_cls, tensor, log_dir) -> None:
    """The same calls with ember or torch: `tensor` builds that library's tensors."""
    with writer_cls(log_dir) as w:
        for i in range(3):
            w.add_scalar("loss", tensor(float(i) / 3), i)
            w.add_scalar("loss_new", tensor([float(i) * 0.1]), i, new_style=True)
            w.add_scalar("loss_double", 0.1 * i, i, new_style=True, double_precision=True)
        w.add_scalar("np_scalar", np.float32(1.5), 7)
        w.add_histogram("hist", tensor(X), 0)
        w.add_histogram("hist_auto", tensor(X), 1, bins="auto", max_bins=7)
        w.add_histogram("hist_np", X.astype(np.float64) * 3, 2, bins=10)
        w.add_histogram_raw("hist_raw", 0.0, 3.0, 4, 6.0, 14.0, [1.0, 2.0, 3.0],
                            [1, 2, 1], 3)
        w.add_image("image", tensor(IMG), 0)
        w.add_images("images", tensor(IMGS), 0)
        w.add_image("image_u8_hwc", (IMG * 255).astype(np.uint8).transpose(1, 2, 0), 0,
                    dataformats="HWC")
        w.add_image("image_hw", tensor(IMG[0]), 0, dataformats="HW")
        w.add_image_with_boxes("boxes", tensor(IMG),
                               tensor(np.array([[1, 1, 5, 6]], np.float32)), 0,
                               labels=["cat"])
        w.add_text("note", "hello *markdown*", 2)
        w.add_scalars("group", {"a": 1.0, "b": tensor(2.0)}, 5)
        w.add_audio("sound", tensor(SOUND), 0, sample_rate=8000)
        w.add_pr_curve("pr", tensor((X > 0).astype(np.int64)),
                       tensor(1 / (1 + np.exp(-X))), 0, num_thresholds=20)
        w.add_custom_scalars_multilinechart(["loss", "loss_new"])
        w.add_tensor("tensor", tensor(np.arange(6, dtype=np.float32).reshape(2, 3)), 0)
        w.add_mesh("mesh", tensor(MESH), global_step=0)
        w.add_hparams({"lr": 0.1, "bs": 4, "opt": "adam", "flag": True},
                      {"hp/acc": 0.9}, hparam_domain_discrete={"opt": ["adam", "sgd"]},
                      run_name="hp")
        w.add_embedding(tensor(EMB), metadata=list("abcd"), label_img=tensor(LABEL_IMG))


def _accumulator(path: str) -> event_accumulator.EventAccumulator:
    keep_all = {"images": 0, "histograms": 0, "scalars": 0, "tensors": 0, "audio": 0}
    acc = event_accumulator.EventAccumulator(path, size_guidance=keep_all)
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    _log_everything(SummaryWriter, ember.tensor, str(root / "ember"))
    from torch.utils.tensorboard import SummaryWriter as TorchWriter
    _log_everything(TorchWriter, torch.tensor, str(root / "torch"))
    return root / "ember", root / "torch"


@pytest.fixture(scope="module")
def accs(logs):
    return _accumulator(str(logs[0])), _accumulator(str(logs[1]))


def test_same_tags_and_runs(logs, accs):
    e, t = accs
    assert e.Tags() == t.Tags()
    runs = [sorted(d for d in os.listdir(p) if os.path.isdir(p / d)) for p in logs]
    assert runs[0] == runs[1] == ["00000", "group_a", "group_b", "hp"]


def test_scalars(accs):
    e, t = accs
    assert e.Tags()["scalars"] == ["loss", "np_scalar"]
    for tag in e.Tags()["scalars"]:
        assert [(s.step, s.value) for s in e.Scalars(tag)] == \
               [(s.step, s.value) for s in t.Scalars(tag)]
    assert [s.value for s in e.Scalars("loss")] == pytest.approx([0, 1 / 3, 2 / 3])


def test_new_style_scalars_and_tensors(accs):
    e, t = accs
    for tag in e.Tags()["tensors"]:
        assert [(x.step, x.tensor_proto) for x in e.Tensors(tag)] == \
               [(x.step, x.tensor_proto) for x in t.Tensors(tag)], tag
        assert e.SummaryMetadata(tag) == t.SummaryMetadata(tag), tag
    values = [tensor_util.make_ndarray(x.tensor_proto) for x in e.Tensors("loss_new")]
    np.testing.assert_allclose(values, [0.0, 0.1, 0.2], rtol=1e-6)
    assert e.Tensors("loss_double")[1].tensor_proto.double_val == [0.1]
    assert e.Tensors("note/text_summary")[0].tensor_proto.string_val == [b"hello *markdown*"]


def test_histograms(accs):
    e, t = accs
    assert e.Tags()["histograms"] == ["hist", "hist_auto", "hist_np", "hist_raw"]
    for tag in e.Tags()["histograms"]:
        assert [(h.step, h.histogram_value) for h in e.Histograms(tag)] == \
               [(h.step, h.histogram_value) for h in t.Histograms(tag)], tag
    h = e.Histograms("hist")[0].histogram_value
    assert h.num == 1000 and sum(h.bucket) == 1000
    # max_bins merges runs of len(bins) // max_bins neighbouring buckets (as torch).
    auto_bins = len(np.histogram(X.astype(float), bins="auto")[0])
    merged = e.Histograms("hist_auto")[0].histogram_value.bucket
    assert sum(merged) == 1000 and len(merged) < auto_bins


def test_images_and_audio(accs):
    e, t = accs
    for tag in e.Tags()["images"]:
        assert [(i.step, i.width, i.height, i.encoded_image_string) for i in e.Images(tag)] \
            == [(i.step, i.width, i.height, i.encoded_image_string) for i in t.Images(tag)]
    im = e.Images("images")[0]
    assert (im.width, im.height) == (5 * 6, 4)   # 5 images side by side in one row
    assert e.Images("image")[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    assert [a.encoded_audio_string for a in e.Audio("sound")] == \
           [a.encoded_audio_string for a in t.Audio("sound")]


def _events(path) -> list:
    files = sorted(f for f in os.listdir(path) if f.startswith("events."))
    out = []
    for record in RawEventFileLoader(os.path.join(path, files[0])).Load():
        event = Event.FromString(record)
        event.wall_time = 0   # differs between the two runs
        out.append(event)
    return out


def test_scalars_subwriters_and_hparams_runs(logs):
    for run in ("group_a", "group_b", "hp"):
        e, t = _events(logs[0] / run), _events(logs[1] / run)
        assert e == t, run
    assert _events(logs[0] / "group_b")[1].summary.value[0].simple_value == 2.0


def test_embedding_files(logs):
    for name in ("projector_config.pbtxt", "00000/default/tensors.tsv",
                 "00000/default/metadata.tsv", "00000/default/sprite.png"):
        assert (logs[0] / name).read_bytes() == (logs[1] / name).read_bytes(), name


def test_default_logdir_comment_and_reopen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = SummaryWriter(comment="_lr0.1")
    logdir = w.get_logdir()
    assert logdir.startswith("runs" + os.sep) and logdir.endswith("_lr0.1")
    w.add_scalar("a", 1.0, 0)
    w.close()
    w.close()                       # a second close is a no-op
    w.add_scalar("a", 2.0, 1)       # reopens a new event file
    w.flush()
    w.close()
    assert len([f for f in os.listdir(logdir) if f.startswith("events.")]) == 2
    assert [s.value for s in _accumulator(logdir).Scalars("a")] == [1.0, 2.0]


def test_purge_step(tmp_path):
    with SummaryWriter(tmp_path, purge_step=5, filename_suffix=".x") as w:
        w.add_scalar("a", 1.0, 5)
    (name,) = os.listdir(tmp_path)
    assert name.endswith(".x")
    events = _events(tmp_path)
    assert events[1].step == 5 and events[1].file_version == "brain.Event:2"
    assert events[2].session_log.status == events[2].session_log.START


def test_scalar_argument_checks(tmp_path):
    with SummaryWriter(tmp_path) as w:
        w.add_scalar("one", ember.ones(1, 1), np.int64(3))   # any 1-element tensor
        with pytest.raises(AssertionError, match="one element"):
            w.add_scalar("many", ember.ones(2), 0)
        with pytest.raises(NotImplementedError):
            w.add_scalar("list", [1.0], 0)
        with pytest.raises(TypeError):
            w.add_hparams([("lr", 0.1)], {})
    assert [(s.step, s.value) for s in _accumulator(str(tmp_path)).Scalars("one")] == [(3, 1)]


def test_add_tensor_half_round_trips(tmp_path):
    # torch stores float16 bit patterns wrongly; ember stores what make_ndarray reads.
    x = ember.tensor([[0.5, -2.0, 65504.0]], dtype=ember.float16)
    with SummaryWriter(tmp_path) as w:
        w.add_tensor("h", x, 0)
        w.add_tensor("b", ember.tensor([True, False]), 0)
        w.add_tensor("bf", ember.tensor([1.5, -3.0]).to(ember.bfloat16), 0)
    acc = _accumulator(str(tmp_path))
    got = tensor_util.make_ndarray(acc.Tensors("h")[0].tensor_proto)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, x.numpy())
    assert tensor_util.make_ndarray(acc.Tensors("b")[0].tensor_proto).tolist() == [True, False]
    # TensorBoard's NumPy stub cannot build bfloat16 arrays; check the bit patterns.
    bf = acc.Tensors("bf")[0].tensor_proto
    assert (bf.dtype, list(bf.half_val)) == (14, [0x3FC0, 0xC040])   # 14: DT_BFLOAT16


def test_add_image_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with SummaryWriter(tmp_path) as w:
        w.add_scalar("ok", 1.0, 0)   # everything but images works without pillow
        with pytest.raises(ImportError, match="pillow"):
            w.add_image("image", IMG, 0)


def test_add_figure(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1), dpi=50)
    plt.plot([0, 1], [1, 0])
    with SummaryWriter(tmp_path) as w:
        w.add_figure("fig", fig, 0)
    im = _accumulator(str(tmp_path)).Images("fig")[0]
    assert (im.width, im.height) == (100, 50)
    assert not plt.fignum_exists(fig.number)   # close=True closes it


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_import_error_without_tensorboard_and_lazy_import():
    code = (
        "import sys\n"
        "import ember\n"
        "assert 'tensorboard' not in sys.modules, 'import ember imported tensorboard'\n"
        "sys.modules['tensorboard'] = None\n"
        "try:\n"
        "    import ember.utils.tensorboard\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (
        "ImportError: TensorBoard logging requires TensorBoard version 1.15 or above")
