"""Run one of the vendored PyTorch programs on torch or on ember, unchanged.

    python tests/clients/drive.py PROGRAM FRAMEWORK OUTDIR

PROGRAM is ``mnist``, ``wlm_<model>``, ``mingpt`` or ``makemore_<model>``; FRAMEWORK is ``torch`` or
``ember``. With ``ember``, every ``torch`` module name is mapped to the ember module of
the same name before the program is imported, so the program text is exactly PyTorch's.
The data are small and synthetic (nothing can be downloaded) and go through the
programs' own functions.

The torch run writes the model's initial weights to OUTDIR; the ember run loads them, so
both start from the same point. Dropout is off in both (its random masks cannot agree).
Each run writes ``OUTDIR/<program>_<framework>.json``: the losses the program computed,
its final weights' checksums and, for ember, the same training step run compiled
against eager (``compiled``).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import pkgutil
import runpy
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def alias_torch_to_ember() -> None:
    """Make ``import torch.x.y`` give ``ember.x.y`` for every ember module."""
    import ember
    sys.modules["torch"] = ember
    for info in pkgutil.walk_packages(ember.__path__, "ember."):
        if info.name.startswith(("ember.demo", "ember.__main__")):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra (CuPy, mpi4py) that is not installed
            continue
        sys.modules["torch" + info.name[len("ember"):]] = module
    for name, module in list(sys.modules.items()):   # (nn.modules.batchnorm and the like)
        if name.startswith("ember."):
            sys.modules.setdefault("torch" + name[len("ember"):], module)


def fake_torchvision() -> None:
    """mnist imports torchvision for its data set only; the driver feeds its own."""
    tv = types.ModuleType("torchvision")
    tv.datasets = types.ModuleType("torchvision.datasets")
    tv.transforms = types.ModuleType("torchvision.transforms")
    sys.modules.update({"torchvision": tv, "torchvision.datasets": tv.datasets,
                        "torchvision.transforms": tv.transforms})


def state_arrays(model) -> dict[str, np.ndarray]:
    return {k: np.array(v.detach().cpu().numpy()) for k, v in model.state_dict().items()}


def share_weights(torch, model, outdir: str, name: str, framework: str) -> None:
    """The torch run saves the initial weights; the ember run starts from them."""
    path = os.path.join(outdir, f"{name}_weights.npz")
    if framework == "torch":
        np.savez(path, **state_arrays(model))
        return
    saved = np.load(path)
    model.load_state_dict({k: torch.tensor(saved[k]) for k in saved.files})


def no_dropout(torch, model) -> None:
    """Dropout's random masks cannot agree between two libraries: turn it off (nn.Transformer
    keeps its default dropout of 0.1 whatever the program's --dropout says)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        elif isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0


def checksums(model) -> dict[str, list[float]]:
    return {k: [float(v.sum()), float(np.abs(v).sum())] for k, v in state_arrays(model).items()}


def compiled_vs_eager(torch, make_model, step, batches) -> dict:
    """Run the program's training step eagerly and compiled, from the same weights."""
    results = {}
    for mode in ("eager", "compiled"):
        model, opt = make_model()
        fn = step(model, opt)
        if mode == "compiled":
            fn = torch.compile(fn)
        results[mode] = {"losses": [float(fn(*b)) for b in batches],
                         "weights": checksums(model)}
        if mode == "compiled":
            results["fallbacks"] = list(getattr(fn, "fallback_counts", {}).items())
    return results


# --------------------------------------------------------------------------- mnist
def run_mnist(torch, framework: str, outdir: str) -> dict:
    fake_torchvision()
    sys.path.insert(0, os.path.join(HERE, "examples", "mnist"))
    prog = importlib.import_module("main")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = ((rng.random((160, 1, 28, 28)) - 0.1307) / 0.3081).astype(np.float32)
    y = rng.integers(0, 10, 160).astype(np.int64)
    data = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    loader = torch.utils.data.DataLoader(data, batch_size=16)

    def make_model():
        model = prog.Net().to(torch.device("cpu"))
        share_weights(torch, model, outdir, "mnist", framework)
        model.dropout1.p = model.dropout2.p = 0.0
        return model, torch.optim.Adadelta(model.parameters(), lr=1.0)

    model, optimizer = make_model()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    args = argparse.Namespace(log_interval=1, dry_run=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for epoch in (1, 2):
            prog.train(args, model, torch.device("cpu"), loader, optimizer, epoch)
            prog.test(model, torch.device("cpu"), loader)
            scheduler.step()
    text = out.getvalue()
    losses = [float(line.rsplit("Loss:", 1)[1]) for line in text.splitlines() if "Loss:" in line]
    result = {"losses": losses, "weights": checksums(model), "stdout": text[-400:]}
    if framework == "ember":
        def step(model, opt):
            def train_step(data, target):
                opt.zero_grad()
                loss = F.nll_loss(model(data), target)
                loss.backward()
                opt.step()
                return loss
            return train_step
        batches = [(torch.tensor(x[i:i + 16]), torch.tensor(y[i:i + 16])) for i in range(0, 96, 16)]
        result["compiled"] = compiled_vs_eager(torch, make_model, step, batches)
    return result


# -------------------------------------------------------------- word_language_model
def write_corpus(folder: str) -> None:
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(40)]
    os.makedirs(folder, exist_ok=True)
    for name, lines in (("train", 40), ("valid", 12), ("test", 12)):
        with open(os.path.join(folder, f"{name}.txt"), "w", encoding="utf8") as f:
            for _ in range(lines):
                f.write(" ".join(rng.choice(words, rng.integers(3, 9))) + "\n")


def run_word_language_model(torch, framework: str, outdir: str, model_type: str) -> dict:
    folder = os.path.join(HERE, "examples", "word_language_model")
    corpus = os.path.join(outdir, "corpus")
    write_corpus(corpus)
    sys.path.insert(0, folder)
    nn = torch.nn
    losses: list[float] = []
    made: list = []
    loss_forward = nn.NLLLoss.forward
    module_to = nn.Module.to

    def recording_forward(self, *a, **k):
        loss = loss_forward(self, *a, **k)
        losses.append(loss.item())
        return loss

    def sharing_to(self, *a, **k):
        if not made and type(self).__name__ in ("RNNModel", "TransformerModel"):
            share_weights(torch, self, outdir, f"wlm_{model_type}", framework)
            no_dropout(torch, self)
            made.append(self)
        return module_to(self, *a, **k)

    nn.NLLLoss.forward, nn.Module.to = recording_forward, sharing_to
    argv = ["main.py", "--data", corpus, "--model", model_type, "--emsize", "16", "--nhid",
            "16", "--nlayers", "2", "--nhead", "2", "--lr", "5", "--clip", "0.25",
            "--epochs", "2", "--batch_size", "4", "--bptt", "6", "--dropout", "0",
            "--log-interval", "4", "--save", os.path.join(outdir, f"wlm_{model_type}.pt")]
    sys.argv = argv
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            scope = runpy.run_path(os.path.join(folder, "main.py"), run_name="__main__")
    finally:
        nn.NLLLoss.forward, nn.Module.to = loss_forward, module_to
    result = {"losses": losses, "weights": checksums(scope["model"]),
              "stdout": out.getvalue()[-400:]}
    if framework == "ember":
        prog_model = importlib.import_module("model")
        ntokens = len(scope["corpus"].dictionary)
        train_data = scope["train_data"]

        def make_model():
            if model_type == "Transformer":
                m = prog_model.TransformerModel(ntokens, 16, 2, 16, 2, 0.0)
            else:
                m = prog_model.RNNModel(model_type, ntokens, 16, 16, 2, 0.0, False)
            m.load_state_dict(made[0].state_dict())  # the same start as the program
            no_dropout(torch, m)
            m.train()
            return m, None

        def step(model, _opt):
            criterion = nn.NLLLoss()

            def train_step(data, targets):
                model.zero_grad()
                if model_type == "Transformer":
                    output = model(data).view(-1, ntokens)
                else:
                    output, _ = model(data, model.init_hidden(4))
                loss = criterion(output, targets)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                for p in model.parameters():
                    p.data.add_(p.grad, alpha=-5.0)
                return loss
            return train_step

        batches = [scope["get_batch"](train_data, i) for i in range(0, 24, 6)]
        result["compiled"] = compiled_vs_eager(torch, make_model, step, batches)
    return result


# ------------------------------------------------------------------------- minGPT
def run_mingpt(torch, framework: str, outdir: str) -> dict:
    sys.path.insert(0, os.path.join(HERE, "minGPT"))
    from mingpt.model import GPT
    from mingpt.trainer import Trainer

    def config():
        c = GPT.get_default_config()
        c.model_type, c.vocab_size, c.block_size = "gpt-nano", 11, 8
        c.embd_pdrop = c.resid_pdrop = c.attn_pdrop = 0.0
        return c

    def train_config():
        t = Trainer.get_default_config()
        t.learning_rate, t.max_iters, t.batch_size, t.num_workers = 1e-3, 10, 8, 2
        return t

    def make_model():
        model = GPT(config())
        share_weights(torch, model, outdir, "mingpt", framework)
        return model, model.configure_optimizers(train_config())

    rng = np.random.default_rng(2)
    seqs = rng.integers(0, 11, (10, 8, 9))
    batches = [(torch.tensor(s[:, :-1]), torch.tensor(s[:, 1:])) for s in seqs]

    def step(model, opt):
        def train_step(x, y):
            logits, loss = model(x, y)
            model.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss
        return train_step

    model, opt = make_model()
    fn = step(model, opt)
    losses = [float(fn(*b)) for b in batches]
    start = torch.tensor([[1, 2, 3]])
    greedy = model.generate(start, 6, do_sample=False).tolist()
    result = {"losses": losses, "weights": checksums(model), "greedy": greedy}

    # The program's own Trainer, unchanged (RandomSampler, DataLoader, callbacks).
    class Digits(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            s = torch.tensor(np.random.default_rng(i).integers(0, 11, 9))
            return s[:-1], s[1:]

    torch.manual_seed(0)
    trainer = Trainer(train_config(), make_model()[0], Digits())
    seen: list[float] = []
    trainer.set_callback("on_batch_end", lambda t: seen.append(float(t.loss)))
    trainer.run()
    sampled = trainer.model.generate(start, 4, do_sample=True, top_k=5)
    result["trainer"] = {"iters": trainer.iter_num, "losses": seen,
                         "sampled_shape": list(sampled.shape)}
    if framework == "ember":
        result["compiled"] = compiled_vs_eager(torch, make_model, step, batches[:4])
    return result


# ----------------------------------------------------------------------- makemore
def run_makemore(torch, framework: str, outdir: str, model_type: str) -> dict:
    """karpathy/makemore's six models (bigram, mlp, rnn, gru, bow, transformer) on its own
    CharDataset, ModelConfig, AdamW settings, ``evaluate`` and ``generate``. Its
    ``create_datasets`` splits by ``torch.randperm`` and its training loop samples
    batches at random, neither reproducible across libraries: the split and the batches
    are fixed here instead."""
    sys.path.insert(0, os.path.join(HERE, "makemore"))
    prog = importlib.import_module("makemore")   # imports torch.utils.tensorboard
    rng = np.random.default_rng(3)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, rng.integers(2, 8))) for _ in range(120)]
    chars = sorted(set("".join(words)))
    longest = max(len(w) for w in words)
    train = prog.CharDataset(words[:90], chars, longest)
    test = prog.CharDataset(words[90:], chars, longest)
    config = prog.ModelConfig(vocab_size=train.get_vocab_size(),
                              block_size=train.get_output_length(), n_layer=2, n_head=2,
                              n_embd=16, n_embd2=16)
    cells = {"rnn": "rnn", "gru": "gru"}

    def make_model():
        if model_type in cells:
            model = prog.RNN(config, cell_type=cells[model_type])
        else:
            model = {"transformer": prog.Transformer, "bow": prog.BoW, "mlp": prog.MLP,
                     "bigram": prog.Bigram}[model_type](config)
        share_weights(torch, model, outdir, f"makemore_{model_type}", framework)
        # the program's optimizer settings (makemore.py, __main__)
        return model, torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.01,
                                        betas=(0.9, 0.99), eps=1e-8)

    def batch(rows):
        xs, ys = zip(*(train[int(i)] for i in rows))
        return torch.stack(list(xs)), torch.stack(list(ys))

    batches = [batch(rng.integers(0, len(train), 16)) for _ in range(8)]

    def step(model, opt):
        def train_step(x, y):
            logits, loss = model(x, y)
            model.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return train_step

    model, opt = make_model()
    fn = step(model, opt)
    losses = [float(fn(*b)) for b in batches]
    # evaluate() shuffles its batches (and the padding that cross entropy ignores makes
    # each batch's mean depend on its words): the whole test set as one batch gives the
    # same number in any order. It reads the program's global ``args`` (set in __main__).
    prog.args = argparse.Namespace(device="cpu")
    losses.append(float(prog.evaluate(model, test, batch_size=len(test))))
    start = torch.zeros(2, 1, dtype=torch.long)
    greedy = prog.generate(model, start, 6, do_sample=False).tolist()
    result = {"losses": losses, "weights": checksums(model), "greedy": greedy}
    if framework == "ember":
        result["compiled"] = compiled_vs_eager(torch, make_model, step, batches[:4])
    # The key third of c_attn's bias cannot change attention (softmax ignores a shift
    # per query): its gradient is round-off, which AdamW scales up to whole steps, so
    # its values differ between any two runs that round differently. The rest is compared.
    for weights in [result["weights"]] + [result.get("compiled", {}).get(m, {}).get(
            "weights", {}) for m in ("eager", "compiled")]:
        for k in [k for k in weights if k.endswith("attn.c_attn.bias")]:
            del weights[k]
    return result


def main() -> None:
    program, framework, outdir = sys.argv[1:4]
    if framework == "ember":
        alias_torch_to_ember()
    import torch
    torch.manual_seed(0)
    os.makedirs(outdir, exist_ok=True)
    if program == "mnist":
        result = run_mnist(torch, framework, outdir)
    elif program.startswith("wlm_"):
        result = run_word_language_model(torch, framework, outdir, program[4:])
    elif program == "mingpt":
        result = run_mingpt(torch, framework, outdir)
    elif program.startswith("makemore_"):
        result = run_makemore(torch, framework, outdir, program[9:])
    else:
        raise SystemExit(f"unknown program {program!r}")
    with open(os.path.join(outdir, f"{program}_{framework}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
