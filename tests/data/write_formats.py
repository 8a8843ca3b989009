"""Small data files in the exact formats the loaders read, for end-to-end tests of the models that
need them (issue 9): CIFAR-10 binary batches and de Jong's MNIST pen-stroke sequences."""
import os, struct


def write_cifar(root, rng, train_counts=(38, 38, 37, 37, 37), test_count=150):
    """CIFAR-10 binary records (1 label byte + 3072 pixel bytes, planes R, G, B) in data_batch_1..5.bin
    and test_batch.bin; pixels drift with the label so the classes are learnable."""
    os.makedirs(root, exist_ok=True)

    def batch(path, count):
        with open(path, "wb") as f:
            for _ in range(count):
                label = rng.randrange(10)
                f.write(bytes([label]) + bytes(min(255, rng.randrange(200) + 5 * label) for _ in range(3072)))

    for b, count in enumerate(train_counts, start=1):
        batch(os.path.join(root, f"data_batch_{b}.bin"), count)
    batch(os.path.join(root, "test_batch.bin"), test_count)


def write_strokes(root, rng, train_count=187, test_count=150):
    """MNIST IDX label files and one `dx dy eos eod` text file per sample (trainimg-i-inputdata.txt,
    testimg-i-inputdata.txt), 2..11 rows each, the last with eod = 1."""
    os.makedirs(root, exist_ok=True)
    for prefix, idx, count in (("train", "train-labels-idx1-ubyte", train_count),
                               ("test", "t10k-labels-idx1-ubyte", test_count)):
        labels = [rng.randrange(10) for _ in range(count)]
        with open(os.path.join(root, idx), "wb") as f:
            f.write(struct.pack(">II", 2049, count) + bytes(labels))
        for i, label in enumerate(labels):
            rows = [(rng.randrange(-3, 4) + label, rng.randrange(-3, 4) - label // 2, int(rng.random() < 0.2), 0)
                    for _ in range(rng.randrange(2, 12))]
            rows[-1] = rows[-1][:2] + (1, 1)
            with open(os.path.join(root, f"{prefix}img-{i}-inputdata.txt"), "w") as f:
                f.write("".join(f"{a} {b} {c} {d}\n" for a, b, c, d in rows))
