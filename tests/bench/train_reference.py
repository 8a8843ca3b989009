#!/usr/bin/python3
"""The Choi MNIST MLP (784→6×100 ReLU→10, Adam, batch 100) in plain Python PyTorch, on the same
Fashion-MNIST IDX files, for the samples/s comparison in bench_train.sh. Prints one JSON line."""
import gzip, json, sys, time

import numpy as np
import torch

def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)

def main():
    steps, train_size = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(1)
    root = "/usr/share/datasets/fashion-mnist/"
    x = torch.from_numpy(idx(root + "train-images-idx3-ubyte.gz")[:train_size].reshape(train_size, -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(idx(root + "train-labels-idx1-ubyte.gz")[:train_size].astype(np.int64))
    layers, width = [], 784
    for _ in range(6):
        layers += [torch.nn.Linear(width, 100), torch.nn.ReLU()]
        width = 100
    model = torch.nn.Sequential(*layers, torch.nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch, n = 100, train_size
    perm = torch.randperm(n)
    step, start = 0, time.perf_counter()
    while step < steps:
        for b in range(0, n - batch + 1, batch):
            if step == steps:
                break
            if step == 20:  # warm-up excluded, as for repshape (first log window)
                start = time.perf_counter()
            index = perm[b:b + batch]
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"samples_per_s": (steps - 20) * batch / elapsed, "final_loss": loss.item()}))

if __name__ == "__main__":
    main()
