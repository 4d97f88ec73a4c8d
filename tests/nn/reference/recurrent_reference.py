#!/usr/bin/python3
"""Reference outputs of PyTorch's nn.LSTM and nn.GRU for tests/nn/recurrent.test.cpp.

Every parameter and input is a closed-form value (fill() below, written the same way in the
test), so only the outputs are copied into the test. Run with Debian's PyTorch
(apt-get install python3-torch): /usr/bin/python3 tests/nn/reference/recurrent_reference.py
"""
import math

import torch

torch.set_default_dtype(torch.float64)


def fill(t, offset):
    """t[k] = 0.5 sin(0.7 k + offset) over the flattened, row-major tensor."""
    flat = torch.tensor([0.5 * math.sin(0.7 * k + offset) for k in range(t.numel())])
    with torch.no_grad():
        t.copy_(flat.reshape(t.shape))


def show(name, t):
    values = ", ".join(f"{v:.17g}" for v in t.detach().reshape(-1).tolist())
    print(f"// {name} {list(t.shape)}\n{{{values}}}")


B, I, H, T, L = 2, 3, 2, 3, 2
for kind in ("LSTM", "GRU"):
    net = getattr(torch.nn, kind)(I, H, num_layers=L, batch_first=True)
    for i, (name, p) in enumerate(net.named_parameters()):
        fill(p, 0.1 * i)
    x = torch.empty(B, T, I)
    fill(x, 1.0)
    h0 = torch.empty(L, B, H)
    fill(h0, 2.0)
    print(f"// ---- {kind}: parameters in order {[n for n, _ in net.named_parameters()]}")
    if kind == "LSTM":
        c0 = torch.empty(L, B, H)
        fill(c0, 3.0)
        out, (hn, cn) = net(x, (h0, c0))
        step, (h1, c1) = net(x[:, :1], (h0, c0))
        show("LSTM one step: output", step)
        show("LSTM sequence: output", out)
        show("LSTM sequence: h_n", hn)
        show("LSTM sequence: c_n", cn)
    else:
        out, hn = net(x, h0)
        step, h1 = net(x[:, :1], h0)
        show("GRU one step: output", step)
        show("GRU sequence: output", out)
        show("GRU sequence: h_n", hn)

# The same parameters as PyTorch saves them (state_dict names of a ModuleList [LSTM, GRU]), in a
# safetensors file written by hand (the format: an 8-byte little-endian header length, a JSON
# header, the raw row-major data): tests/io/data/pytorch_recurrent.safetensors.
import json
import os
import struct

models = torch.nn.ModuleList([torch.nn.LSTM(I, H, num_layers=L, batch_first=True),
                              torch.nn.GRU(I, H, num_layers=L, batch_first=True)])
for m in models:
    for i, (name, p) in enumerate(m.named_parameters()):
        fill(p, 0.1 * i)
header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
for name, t in models.state_dict().items():
    data = t.contiguous().numpy().tobytes()
    header[name] = {"dtype": "F64", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
    chunks.append(data)
    offset += len(data)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "io", "data",
                   "pytorch_recurrent.safetensors")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
print(f"// wrote {os.path.normpath(out)}")

# Outputs of the saved models from zero initial states, for tests/io/recurrent_checkpoint.test.cpp.
x = torch.empty(B, T, I)
fill(x, 1.0)
show("LSTM zero state: output", models[0](x)[0])
show("GRU zero state: output", models[1](x)[0])
