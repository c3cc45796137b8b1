"""TensorBoard logging (``torch.utils.tensorboard``): ``SummaryWriter`` and friends.

Like torch's, this is a thin layer over the ``tensorboard`` package (``pip install
tensorboard``); importing it without that package raises ``ImportError``. ``import
ember`` never imports this module, so ember works without tensorboard.

>>> import ember
>>> from ember.utils.tensorboard import SummaryWriter
>>> writer = SummaryWriter()        # logs to runs/<date>_<host>
>>> writer.add_scalar("loss", ember.tensor(0.25), global_step=0)
>>> writer.close()
"""
_MESSAGE = "TensorBoard logging requires TensorBoard version 1.15 or above"

try:
    import tensorboard
except ImportError as _e:
    # Same message as torch (its pre-2.0 wording for a missing package, its current
    # one for a too-old one); the original error stays attached as the cause.
    raise ImportError(_MESSAGE) from _e

from packaging.version import Version  # a dependency of tensorboard itself

if not hasattr(tensorboard, "__version__") or Version(tensorboard.__version__) < Version("1.15"):
    raise ImportError(_MESSAGE)

del Version, tensorboard

from tensorboard.summary.writer.record_writer import RecordWriter  # noqa: E402

from ember.utils.tensorboard.writer import FileWriter, SummaryWriter  # noqa: E402

__all__ = ["FileWriter", "RecordWriter", "SummaryWriter"]
