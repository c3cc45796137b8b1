"""``ember.stft`` and ``ember.istft``: the short-time Fourier transform and its inverse,
with PyTorch's arguments, checks, warnings and results (``Tensor.stft``/``Tensor.istft``
too).

Both are built from differentiable ember ops, so audio losses backpropagate through them
and they run inside ``ember.compile``: ``stft`` pads the signal (``center``), frames it
with ``Tensor.unfold``, multiplies by the window and takes ``ember.fft.rfft``/``fft`` of
each frame; ``istft`` inverts each frame (``irfft``/``ifft``), windows it again and
overlap-adds the frames with ``F.fold`` (col2im over a 1 x n_fft kernel), then divides by
the overlap-added squared window (the least-squares inverse of Griffin and Lim).

>>> import ember
>>> x = ember.arange(8.0)
>>> X = ember.stft(x, 4, hop_length=1, window=ember.hann_window(4), return_complex=True)
>>> X.shape
ember.Size([3, 9])
>>> ember.istft(X, 4, hop_length=1, window=ember.hann_window(4), length=8)
tensor([0., 1., 2., 3., 4., 5., 6., 7.])
"""
from __future__ import annotations

import operator
import warnings

import ember.nn.functional as F
from ember import fft as _fft
from ember.complex_numbers import view_as_real
from ember.distributions.distribution import _all_true
from ember.tensor import Tensor, ones

__all__ = ["stft", "istft"]

# torch's TORCH_WARN_ONCE: each of these warnings is given once per process.
_warned: set[str] = set()

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def _tensor_str(t: Tensor | None) -> str:
    return "None" if t is None else f"{t.type()}{list(t.shape)}"


def _window_str(t: Tensor | None) -> str:
    return "None" if t is None else f"{t.type()}{{{list(t.shape)}}}"


def _int(fn: str, name: str, v):
    """An int argument (NumPy integers too), None kept; floats and bools are refused."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise TypeError(f"{fn}(): argument '{name}' must be int, not bool")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{fn}(): argument '{name}' must be int, not "
                        f"{type(v).__name__}") from None


def _opt(v) -> str:
    """An optional bool as torch prints it in these messages: 0, 1 or None."""
    return "None" if v is None else str(int(v))


def stft(input: Tensor, n_fft: int, hop_length: int | None = None,
         win_length: int | None = None, window: Tensor | None = None, center: bool = True,
         pad_mode: str = "reflect", normalized: bool = False, onesided: bool | None = None,
         return_complex: bool | None = None, align_to_window: bool | None = None) -> Tensor:
    """The short-time Fourier transform of a signal ``[L]`` or batch ``[B, L]``: complex
    ``[B?, N, T]`` with ``N = n_fft // 2 + 1`` (onesided) or ``n_fft`` frequencies and
    ``T`` frames, or its ``view_as_real`` form when ``return_complex=False``.

    >>> ember.stft(ember.ones(8), 4, window=ember.ones(4), return_complex=True).shape
    ember.Size([3, 9])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"stft(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")
    n_fft, hop_length, win_length = (_int("stft", "n_fft", n_fft),
                                     _int("stft", "hop_length", hop_length),
                                     _int("stft", "win_length", win_length))
    if center and align_to_window is not None:
        raise RuntimeError("stft align_to_window should only be set when center = false")
    signal_dim = input.ndim
    if center:
        # torch pads a [1, 1, L] (or [1, B, L]) view, so every pad_mode sees a 3-D input.
        if pad_mode not in _PAD_MODES:
            raise NotImplementedError(f"Unrecognised padding mode {pad_mode}")
        pad = n_fft // 2
        extended = input.reshape([1] * (3 - signal_dim) + list(input.shape))
        padded = F.pad(extended, [pad, pad], pad_mode)
        input = padded.reshape(tuple(padded.shape)[-signal_dim:])

    hop = n_fft >> 2 if hop_length is None else hop_length
    win = n_fft if win_length is None else win_length
    if window is None:
        _warn_once("window", "A window was not provided. A rectangular window will be "
                   "applied,which is known to cause spectral leakage. Other windows such as "
                   "torch.hann_window or torch.hamming_window are recommended to reduce "
                   "spectral leakage.To suppress this warning and use a rectangular window, "
                   "explicitly set `window=torch.ones(n_fft, device=<device>)`.")
    complex_window = window is not None and window.is_complex()
    ret_complex = (return_complex if return_complex is not None
                   else input.is_complex() or complex_window)
    repr_ = (f"stft({_tensor_str(input)}, n_fft={n_fft}, hop_length={hop}, win_length={win}, "
             f"window={_window_str(window)}, normalized={int(normalized)}, "
             f"onesided={_opt(onesided)}, return_complex={_opt(return_complex)}, "
             f"align_to_window={_opt(align_to_window)}) ")
    if not ret_complex:
        if return_complex is None:
            raise RuntimeError("stft requires the return_complex parameter be given for real "
                               "inputs, and will further require that return_complex=True in "
                               "a future PyTorch release.")
        _warn_once("return_complex", "stft with return_complex=False is deprecated. In a "
                   "future pytorch release, stft will return complex tensors for all inputs, "
                   "and return_complex=False will raise an error.\nNote: you can still call "
                   "torch.view_as_real on the complex output to recover the old return "
                   "format.")
    if not (input.is_floating_point() or input.is_complex()):
        raise RuntimeError(repr_ + ": expected a tensor of floating point or complex values")
    if input.ndim not in (1, 2):
        raise RuntimeError(repr_ + ": expected a 1D or 2D tensor")
    x = input.unsqueeze(0) if input.ndim == 1 else input
    length = x.shape[1]
    if n_fft <= 0 or n_fft > length:
        # (torch prints win_length as "n_fft" here; the value given is more useful)
        raise RuntimeError(repr_ + f": expected 0 < n_fft < {length}, but got n_fft={n_fft}")
    if hop <= 0:
        raise RuntimeError(repr_ + f": expected hop_length > 0, but got hop_length={hop}")
    if win <= 0 or win > n_fft:
        raise RuntimeError(repr_ + f": expected 0 < win_length <= n_fft, but got "
                           f"win_length={win}")
    if window is not None and (window.ndim != 1 or window.shape[0] != win):
        raise RuntimeError(repr_ + f": expected a 1D window tensor of size equal to "
                           f"win_length={win}, but got window with size {list(window.shape)}")

    left = (n_fft - win) // 2
    if win < n_fft:
        # The window centred in n_fft zeros (a given window keeps its dtype, as torch's:
        # a float64 window makes a float32 signal's result complex128).
        w = window if window is not None else ones(win, dtype=input.dtype,
                                                   device=input.device)
        window = F.pad(w, [left, n_fft - win - left])
    if align_to_window and not center:
        # Frames start where the window's nonzero part starts: torch pads by ``left``
        # and takes the 1 + (length - win_length) // hop frames of win_length that fit
        # the signal (what the window's zero part meets is irrelevant).
        x = F.pad(x, [left, n_fft - win - left])
    frames = x.unfold(-1, n_fft, hop)   # [B, n_frames, n_fft], a view
    if window is not None:
        frames = frames * window

    complex_fft = frames.is_complex()
    sided = onesided if onesided is not None else not complex_fft
    norm = "ortho" if normalized else "backward"
    if complex_fft and sided:
        raise RuntimeError("Cannot have onesided output if window or input is complex")
    out = _fft.rfft(frames, norm=norm) if sided else _fft.fft(frames, norm=norm)
    out = out.transpose(1, 2)
    if signal_dim == 1:
        out = out.squeeze(0)
    return out if ret_complex else view_as_real(out)


def istft(input: Tensor, n_fft: int, hop_length: int | None = None,
          win_length: int | None = None, window: Tensor | None = None, center: bool = True,
          normalized: bool = False, onesided: bool | None = None, length: int | None = None,
          return_complex: bool = False) -> Tensor:
    """The inverse of ``stft``: the signal whose ``stft`` (with the same arguments) is
    ``input``, the least-squares estimate when ``input`` is not a consistent STFT.

    ``input`` is complex ``[B?, N, T]``; the result is ``[B?, L]`` with ``L = length`` when
    given, else ``n_fft + hop_length * (T - 1)`` less ``n_fft // 2`` at each end when
    ``center``. The overlap-added squared window must not vanish anywhere in the result
    (the NOLA condition), or this raises.

    >>> X = ember.stft(ember.ones(8), 4, window=ember.hann_window(4), return_complex=True)
    >>> ember.istft(X, 4, window=ember.hann_window(4))
    tensor([1., 1., 1., 1., 1., 1., 1., 1.])
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"istft(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")
    n_fft, hop_length, win_length, length = (_int("istft", "n_fft", n_fft),
                                             _int("istft", "hop_length", hop_length),
                                             _int("istft", "win_length", win_length),
                                             _int("istft", "length", length))
    hop = n_fft >> 2 if hop_length is None else hop_length
    win = n_fft if win_length is None else win_length
    repr_ = (f"istft({_tensor_str(input)}, n_fft={n_fft}, hop_length={hop}, win_length={win}, "
             f"window={_window_str(window)}, center={int(center)}, "
             f"normalized={int(normalized)}, onesided={_opt(onesided)}, length={length}, "
             f"return_complex={int(return_complex)})")
    if window is None:
        _warn_once("istft window", "A window was not provided. A rectangular window will be "
                   "applied.Please provide the same window used by stft to make the inversion "
                   "lossless.To suppress this warning and use a rectangular window, explicitly "
                   "set `window=torch.ones(n_fft, device=<device>)`.")
    if not input.is_complex():
        raise RuntimeError("istft requires a complex-valued input tensor matching the output "
                           "from stft with return_complex=True.")
    real_dim = input.ndim + 1   # torch counts the dims of view_as_real(input)
    if input.numel() == 0:
        raise RuntimeError(repr_ + ": input tensor cannot be empty.")
    if real_dim not in (3, 4):
        raise RuntimeError(repr_ + f": expected a tensor with 3 or 4 dimensions, but got "
                           f"{real_dim}")
    n_frames, fft_size = input.shape[-1], input.shape[-2]
    expected_len = n_fft + hop * (n_frames - 1)
    sided = onesided if onesided is not None else fft_size != n_fft
    if sided and n_fft // 2 + 1 != fft_size:
        raise RuntimeError(repr_ + ": expected the frequency dimension (3rd to the last) of "
                           "the input tensor to match n_fft / 2 + 1 when onesided=True, but "
                           f"got {fft_size}")
    if not sided and n_fft != fft_size:
        raise RuntimeError(repr_ + ": expected the frequency dimension (3rd to the last) of "
                           "the input tensor to match n_fft when onesided=False, but got "
                           f"{fft_size}")
    if not 0 < hop <= win:
        raise RuntimeError(repr_ + ": expected 0 < hop_length <= win_length")
    if not 0 < win <= n_fft:
        raise RuntimeError(repr_ + ": expected 0 < win_length <= n_fft")
    if window is not None and (window.ndim != 1 or window.shape[0] != win):
        raise RuntimeError(repr_ + ": Invalid window shape. window has to be 1D and length "
                           "of `win_length`")

    real_dtype = input.real.dtype
    w = window if window is not None else ones(win, dtype=real_dtype, device=input.device)
    if win != n_fft:
        left = (n_fft - win) // 2
        w = F.pad(w, [left, n_fft - win - left])

    spec = input.unsqueeze(0) if input.ndim == 2 else input
    spec = spec.transpose(1, 2)   # [B, T, N]: one frame per row
    norm = "ortho" if normalized else "backward"
    if return_complex:
        if sided:
            raise RuntimeError("Cannot have onesided output if window or input is complex")
        frames = _fft.ifft(spec, norm=norm)
    else:
        if window is not None and window.is_complex():
            raise RuntimeError("Complex windows are incompatible with return_complex=False")
        # A two-sided spectrum's upper half mirrors the lower one for a real result:
        # irfft reads bins 0 .. n_fft // 2 only, as torch's c2r does.
        frames = _fft.irfft(spec, n=n_fft, norm=norm)
    frames = frames * w

    y = _overlap_add(frames, expected_len, n_fft, hop)
    envelope = _overlap_add((w * w).expand(1, n_frames, n_fft), expected_len, n_fft, hop)

    start = n_fft // 2 if center else 0
    if length is not None:
        end = start + length
    elif center:
        end = -(n_fft // 2)
    else:
        end = expected_len
    # at::slice: a negative end counts from the end, and both ends are clamped.
    stop = max(end + expected_len, 0) if end < 0 else min(end, expected_len)
    y = y[:, start:stop]
    envelope = envelope[:, start:stop]
    if envelope.numel() == 0:
        raise RuntimeError("min(): Expected reduction dim to be specified for input.numel() "
                           "== 0. Specify the reduction dim with the 'dim' argument.")
    # The NOLA check. Under ember.compile _all_true reads the traced value without a graph
    # break and records a check that each replay repeats (a failing replay reruns eagerly,
    # where this raises).
    if not _all_true(~(envelope.detach().abs().min() < 1e-11)):
        raise RuntimeError(repr_ + " window overlap add min: 1")
    y = y / envelope
    if input.ndim == 2:
        y = y.squeeze(0)
    if end > expected_len:
        _warn_once("istft length", "The length of signal is shorter than the length "
                   "parameter. Result is being padded with zeros in the tail. Please check "
                   "your center and hop_length settings.")
        y = F.pad(y, [0, end - expected_len])
    return y


def _overlap_add(frames: Tensor, total: int, n_fft: int, hop: int) -> Tensor:
    """Frames ``[B, T, n_fft]`` summed into ``[B, total]``, frame t starting at t * hop:
    col2im (``F.fold``) over a one-row image, whose gradient is the framing (unfold)."""
    cols = frames.transpose(1, 2)   # [B, n_fft, T]: one column per frame
    out = F.fold(cols, (1, total), (1, n_fft), stride=(1, hop))
    return out.reshape(frames.shape[0], total)


def _tensor_stft(self: Tensor, n_fft: int, hop_length: int | None = None,
                 win_length: int | None = None, window: Tensor | None = None,
                 center: bool = True, pad_mode: str = "reflect", normalized: bool = False,
                 onesided: bool | None = None, return_complex: bool | None = None,
                 align_to_window: bool | None = None) -> Tensor:
    return stft(self, n_fft, hop_length, win_length, window, center, pad_mode, normalized,
                onesided, return_complex, align_to_window)


def _tensor_istft(self: Tensor, n_fft: int, hop_length: int | None = None,
                  win_length: int | None = None, window: Tensor | None = None,
                  center: bool = True, normalized: bool = False, onesided: bool | None = None,
                  length: int | None = None, return_complex: bool = False) -> Tensor:
    return istft(self, n_fft, hop_length, win_length, window, center, normalized, onesided,
                 length, return_complex)


_tensor_stft.__name__ = _tensor_stft.__qualname__ = "stft"
_tensor_istft.__name__ = _tensor_istft.__qualname__ = "istft"
_tensor_stft.__doc__ = stft.__doc__
_tensor_istft.__doc__ = istft.__doc__
Tensor.stft = _tensor_stft
Tensor.istft = _tensor_istft
